"""Scanned documents made on the spot: Japanese text drawn as an image (横書き or 縦書き) and image-only PDFs."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from PIL import Image

FONT = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"
"""IPA Gothic (Debian ``fonts-ipafont-gothic``): a monospaced Japanese font for the drawn pages."""

# Glyphs that vertical typesetting turns a quarter (the long-vowel mark, dashes, brackets) and the
# small punctuation it sets in the top-right corner of the character's cell.
_TURNED = "ー－―‐—〜～…‥（）「」『』【】〔〕［］｛｝〈〉《》()[]{}<>-=＝"
_CORNERED = "、。，．,."


def scan_image(
    lines: Sequence[str],
    vertical: bool = False,
    size: tuple[int, int] = (1240, 1754),
    font_px: int = 40,
) -> Image.Image:
    """A greyscale page showing ``lines`` in IPA Gothic on white, like a scan at 150 dpi of A4 (300 dpi of A5).

    横書き: lines from the top left, wrapped at the right margin. ``vertical`` (縦書き): each line is a
    column of characters top to bottom, columns from right to left, wrapped at the bottom margin;
    brackets and the long-vowel mark are turned and 、。 sit in the top-right of their cell, as printed.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, font_px)
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    width, height = size
    margin = font_px * 2
    step = font_px  # IPA Gothic is monospaced: every full-width character is one em wide
    line_gap = font_px * 2 // 3
    if not vertical:
        per_line = max((width - 2 * margin) // step, 1)
        y = margin
        for line in lines:
            for start in range(0, max(len(line), 1), per_line):
                draw.text((margin, y), line[start : start + per_line], font=font, fill=0)
                y += step + line_gap
        return page
    per_column = max((height - 2 * margin) // step, 1)
    x = width - margin - step
    for line in lines:
        for start in range(0, max(len(line), 1), per_column):
            for row, char in enumerate(line[start : start + per_column]):
                _draw_upright(page, char, (x, margin + row * step), font, step)
            x -= step + line_gap
    return page


def _draw_upright(page: Image.Image, char: str, cell: tuple[int, int], font: object, step: int) -> None:
    """Draw one character of a vertical line into its square cell, turned or cornered as printed."""
    from PIL import Image, ImageDraw, ImageFont

    assert isinstance(font, ImageFont.FreeTypeFont)
    x, y = cell
    if char in _TURNED:
        glyph = Image.new("L", (step, step), 255)
        ImageDraw.Draw(glyph).text((step // 2, step // 2), char, font=font, fill=0, anchor="mm")
        page.paste(glyph.rotate(-90), (x, y))
    elif char in _CORNERED:
        ImageDraw.Draw(page).text((x + step * 3 // 5, y - step * 2 // 5), char, font=font, fill=0)
    else:
        ImageDraw.Draw(page).text((x + step // 2, y + step // 2), char, font=font, fill=0, anchor="mm")


@functools.cache
def missing_ocr_tools() -> str:
    """What the OCR tests lack here (Tesseract with jpn and jpn_vert, the IPA font), or "" when nothing is."""
    import shutil

    from ingest.errors import MissingToolError
    from ingest.ocr import tesseract

    if not Path(FONT).exists():
        return f"the font {FONT} is missing: apt-get install fonts-ipafont-gothic"
    if shutil.which("tesseract") is None:
        return "Tesseract is missing: apt-get install tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert"
    try:
        tesseract("jpn+jpn_vert+eng")
    except MissingToolError as error:
        return str(error)
    return ""


Test = TypeVar("Test", bound=Callable[..., object])


def requires_ocr(test: Test) -> Test:
    """Mark a test ``ocr``; where the OCR tools are missing it is skipped, saying what to install, except under CI."""
    import pytest  # testkit is imported by benchmarks too, which do not need pytest

    missing = missing_ocr_tools()
    skip = pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=missing or "OCR tools present")
    return pytest.mark.ocr(skip(test))


def scanned_pdf(images: Sequence[Image.Image], dpi: int = 150) -> bytes:
    """An image-only PDF, one page per image at ``dpi`` (as a scanner makes it): no text layer at all."""
    buffer = io.BytesIO()
    first, *rest = [image.convert("RGB") for image in images]
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=float(dpi))
    return buffer.getvalue()


def char_accuracy(reference: str, text: str) -> float:
    """1 − edit distance / length of ``reference``, both NFKC-normalised (as the index sees them) without whitespace.

    1.0 is a perfect reading; a reading of nothing scores 0.0, and one of much more than the reference
    can score below 0.
    """
    import unicodedata

    def compact(value: str) -> str:
        return "".join(unicodedata.normalize("NFKC", value).split())

    want, got = compact(reference), compact(text)
    if not want:
        return 1.0 if not got else 0.0
    previous = list(range(len(got) + 1))
    for row, wanted in enumerate(want, 1):
        current = [row]
        for column, found in enumerate(got, 1):
            current.append(min(previous[column] + 1, current[column - 1] + 1, previous[column - 1] + (wanted != found)))
        previous = current
    return 1 - previous[-1] / len(want)


def make_pdf_with_running_lines(pages: Sequence[tuple[Sequence[str], Sequence[str]]]) -> bytes:
    """A two-column A4 PDF as an office prints it: 「社外秘」 at the top of every page and ``- N -`` at the bottom.

    ``pages[i]`` is the lines of the left column and of the right column of page ``i + 1``, in
    HeiseiKakuGo-W5; pypdf reads the header, the left column, the right column, then the page number.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    font = "HeiseiKakuGo-W5"
    pdfmetrics.registerFont(UnicodeCIDFont(font))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    width, height = A4
    for number, columns in enumerate(pages, 1):
        pdf.setFont(font, 9)
        pdf.drawRightString(width - 56, height - 40, "社外秘")
        pdf.setFont(font, 10.5)
        for left, column in zip((56, width / 2 + 10), columns, strict=True):
            for row, line in enumerate(column):
                pdf.drawString(left, height - 90 - 16 * row, line)
        pdf.setFont(font, 9)
        pdf.drawCentredString(width / 2, 30, f"- {number} -")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def scan_with_text_layer(image: Image.Image, text: str, dpi: int = 150) -> bytes:
    """A one-page PDF showing ``image`` with ``text`` as an invisible text layer over it (a scan, OCR'd badly or not).

    ``text`` is set in Helvetica, so keep it ASCII: ``(cid:12)`` sequences stand for a font without a map to Unicode.
    """
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    width, height = image.width * 72 / dpi, image.height * 72 / dpi
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(width, height))
    pdf.drawImage(ImageReader(image.convert("RGB")), 0, 0, width, height)
    layer = pdf.beginText(20, height - 20)
    layer.setTextRenderMode(3)  # invisible, as OCR layers are
    layer.setFont("Helvetica", 8)
    layer.textLine(text)
    pdf.drawText(layer)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
