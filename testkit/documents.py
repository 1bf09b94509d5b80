"""Test documents made on the spot: Japanese PDFs drawn with reportlab's built-in CID font."""

from __future__ import annotations

import io
from collections.abc import Sequence

SENTENCES = (
    "東京は日本の首都であり、政治と経済の中心地です。",
    "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
    "富士山は日本で最も高い山で、標高は三七七六メートルです。",
    "吾輩は猫である。名前はまだ無い。",
    "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。",
    "雨が降ったので、試合は翌週に延期されました。",
)
"""Distinct Japanese sentences for test corpora."""


def make_pdf(pages: Sequence[Sequence[str]], password: str | None = None, vertical: bool = False) -> bytes:
    """A PDF whose page ``i`` shows the lines ``pages[i]`` in HeiseiKakuGo-W5; pypdf reads the text back.

    ``vertical``: the lines are set top to bottom in columns from the right (縦書き), in HeiseiMin-W3.
    """
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    font = "HeiseiMin-W3" if vertical else "HeiseiKakuGo-W5"
    pdfmetrics.registerFont(UnicodeCIDFont(font, isVertical=vertical))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    for lines in pages:
        pdf.setFont(font, 11)
        for number, line in enumerate(lines):
            if vertical:
                pdf.drawString(520 - 18 * number, 780, line)
            else:
                pdf.drawString(56, 780 - 16 * number, line)
        pdf.showPage()
    pdf.save()
    if password is None:
        return buffer.getvalue()
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(buffer.getvalue())))
    writer.encrypt(user_password=password, owner_password="owner-" + password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_blank_pdf(pages: int = 1) -> bytes:
    """A PDF with pages and no text layer, like a scan."""
    import pypdf

    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
