"""A passage shown where it stands in its original file: marked PDF pages, and the text, rows and slide around it."""

from __future__ import annotations

import datetime
import io
import math
import unicodedata

import numpy as np
import pytest
from PIL import Image

from ingest.chunking import chunk_text
from ingest.document import Place
from ingest.loaders import load_bytes
from ingest.normalize import join_sections
from pipelines.search.page_view import render_page
from pipelines.search.spans import passage_spans
from pipelines.search.text_views import document_view, rows_view, slide_view
from pipelines.search.viewer import view_for
from testkit.documents import make_pdf
from testkit.office import make_docx, make_pptx, make_xlsx
from testkit.scans import requires_ocr, scan_image, scanned_pdf
from testkit.web import make_csv

BIWA = "琵琶湖は滋賀県にある日本最大の湖である。"
LAKES = [["日本の湖について述べる。"], [BIWA]]
PNG = b"\x89PNG\r\n\x1a\n"


def span_of(name: str, data: bytes, passage: str) -> tuple[int, int]:
    """``char_start``/``char_end`` of ``passage``, as the indexer stores them."""
    text = join_sections(load_bytes(name, data).sections).text
    start = text.index(passage)
    return start, start + len(passage)


def yellow_box(png: bytes) -> tuple[int, int, int, int] | None:
    """The bounding box (left, top, right, bottom) of the marked pixels of a drawn page: yellow over white."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rows, columns = np.nonzero((red > 240) & (green > 200) & (blue > 100) & (blue < 200))
    if rows.size == 0:
        return None
    return int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1


def char_boxes(data: bytes, page: int, text: str, dpi: int = 150) -> tuple[float, float, float, float]:
    """Where pdfium draws ``text`` on ``page``, in pixels at ``dpi``: left, top, right, bottom."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    pdf_page = document[page - 1]
    textpage = pdf_page.get_textpage()
    whole = textpage.get_text_range(0, textpage.count_chars())
    start = whole.index(text)
    boxes = [textpage.get_charbox(i) for i in range(start, start + len(text))]
    height = pdf_page.get_height()
    scale = dpi / 72
    document.close()
    return (
        min(b[0] for b in boxes) * scale,
        (height - max(b[3] for b in boxes)) * scale,
        max(b[2] for b in boxes) * scale,
        (height - min(b[1] for b in boxes)) * scale,
    )


@pytest.mark.parametrize(
    ("kind", "view"),
    [("pdf", "page"), ("image", "page"), ("xlsx", "rows"), ("csv", "rows"), ("pptx", "slide")]
    + [(kind, "text") for kind in ("text", "markdown", "docx", "html", "unknown")],
)
def test_view_for(kind: str, view: str) -> None:
    assert view_for(kind) == view


@pytest.mark.parametrize(
    ("page", "passage", "found"),
    [
        ("琵琶湖は滋賀県にある日本最大の湖である。", BIWA, ["琵琶湖は滋賀県にある日本最大の湖である。"]),
        # white space, line ends and full-width forms do not matter
        ("琵琶湖は 滋賀県に\r\nある。", "琵琶湖は滋賀県にある。", ["琵琶湖は滋賀県にある。"]),
        ("ＧＰＵサーバーは３階にある。", "GPUサーバーは3階にある。", ["GPUサーバーは3階にある。"]),
        # a passage over a page break: its sentences on this page, and the head of the one cut off
        (
            "前置き。日本の湖について述べる。琵琶湖は滋賀県",
            "日本の湖について述べる。\n\n" + BIWA,
            ["日本の湖について述べる。", "琵琶湖は滋賀県"],
        ),
        # the tail of a sentence begun on the page before
        ("にある日本最大の湖である。次の話。", BIWA, ["にある日本最大の湖である。"]),
        # a piece too short to tell from any other place is not marked, nor one inside the page
        ("ある。別の文。", BIWA, []),
        ("この行は別の話であり、その先も長く続いている。これは別の湖である。最後の一文。", BIWA, []),
        # a page number after the cut sentence does not hide it
        ("前置き。琵琶湖は滋賀県-1-", BIWA, ["琵琶湖は滋賀県"]),
        ("関係のない頁。", BIWA, []),
        ("", BIWA, []),
        ("何か書いてある。", "", []),
    ],
)
def test_passage_spans(page: str, passage: str, found: list[str]) -> None:
    compact = "".join(unicodedata.normalize("NFKC", page).split())
    assert [compact[a:b] for a, b in passage_spans(compact, passage)] == found


def test_render_page_marks_the_passage_where_it_is_drawn() -> None:
    data = make_pdf(LAKES)
    text = join_sections(load_bytes("湖.pdf", data).sections).text
    image = render_page("湖.pdf", data, page=2, passage=text)
    assert image.png.startswith(PNG)
    assert Image.open(io.BytesIO(image.png)).size == (math.ceil(595.2756 * 150 / 72), math.ceil(841.8898 * 150 / 72))
    assert (image.page, image.pages, image.boxes, image.ocr) == (2, 2, 1, False)
    assert image.alt == "湖.pdf の 2 ページ（全 2 ページ）、該当箇所に印"
    marked = yellow_box(image.png)
    assert marked is not None
    left, top, _, bottom = char_boxes(data, 2, "琵琶湖")
    assert abs(marked[0] - left) < 6
    assert marked[1] <= top
    assert bottom <= marked[3] < bottom + (bottom - top)
    assert marked[2] >= char_boxes(data, 2, "である。")[2] - 6


def test_render_page_marks_only_the_sentence_on_the_page() -> None:
    data = make_pdf([["日本の湖について述べる。", "この行は別の話である。"], [BIWA]])
    passage = "日本の湖について述べる。\n\n" + BIWA
    image = render_page("湖.pdf", data, page=1, passage=passage)
    assert image.boxes == 1
    marked = yellow_box(image.png)
    assert marked is not None
    first = char_boxes(data, 1, "日本の湖について述べる。")
    second = char_boxes(data, 1, "この行は別の話である。")
    assert marked[1] <= first[1]
    assert first[3] <= marked[3] < second[1]


def test_render_page_marks_a_sentence_on_both_sides_of_a_page_break() -> None:
    data = make_pdf([["琵琶湖は滋賀県にある"], ["日本最大の湖である。"]])
    assert join_sections(load_bytes("湖.pdf", data).sections).text == BIWA
    assert render_page("湖.pdf", data, 1, BIWA).boxes == 1
    assert render_page("湖.pdf", data, 2, BIWA).boxes == 1


def test_render_page_without_the_passage_draws_no_mark() -> None:
    image = render_page("湖.pdf", make_pdf(LAKES), page=1, passage=BIWA)
    assert (image.boxes, image.ocr) == (0, False)
    assert image.alt == "湖.pdf の 1 ページ（全 2 ページ）"
    assert yellow_box(image.png) is None


@pytest.mark.parametrize("page", [0, 3, -1])
def test_render_page_out_of_range(page: int) -> None:
    with pytest.raises(ValueError, match=r"湖\.pdf: .* ページはありません（全 2 ページ）"):
        render_page("湖.pdf", make_pdf(LAKES), page=page, passage=BIWA)


@requires_ocr
def test_render_page_marks_a_scanned_page_from_ocr() -> None:
    image_page = scan_image(["日本の湖について述べる。", BIWA])
    data = scanned_pdf([image_page])
    image = render_page("スキャン.pdf", data, page=1, passage=BIWA)
    assert image.ocr is True
    assert image.boxes >= 1
    marked = yellow_box(image.png)
    assert marked is not None
    # scan_image draws 40 px lines from y = 80 with 26 px between them: the second line is at 146–186
    assert marked[1] > 126
    assert marked[3] < 210


def test_document_view_markdown() -> None:
    data = "# 湖\n\n日本の湖について述べる。\n\n## 琵琶湖\n\n琵琶湖は滋賀県にある日本最大の湖である。面積は約670平方キロメートル。\n".encode()
    start, end = span_of("湖.md", data, BIWA)
    view = document_view("湖.md", data, start, end, expected=BIWA)
    assert view.passage == BIWA
    assert view.before.endswith("## 琵琶湖\n\n")
    assert view.before.startswith("# 湖")
    assert view.after == "面積は約670平方キロメートル。"
    assert view.place == Place(heading=("湖", "琵琶湖"))


def test_document_view_cuts_long_context_at_sentences() -> None:
    filler = "これは前置きの文です。" * 40  # 440 characters
    data = (filler + BIWA + filler).encode()
    start, end = span_of("湖.txt", data, BIWA)
    view = document_view("湖.txt", data, start, end, context=100)
    assert view.passage == BIWA
    assert view.before == "これは前置きの文です。" * 9
    assert view.after == "これは前置きの文です。" * 9
    assert view.place == Place()


def test_document_view_docx() -> None:
    data = make_docx()
    passage = "申請書は総務課に提出してください。"
    start, end = span_of("手引き.docx", data, passage)
    view = document_view("手引き.docx", data, start, end, expected=passage)
    assert view.passage == passage
    assert "2.1 手続き" in view.before
    assert view.after.startswith("\n\n項目: 交通費")
    assert view.place.heading == ("経費の手引き", "第2章 申請", "2.1 手続き")


def test_document_view_of_a_word_file_starts_a_few_lines_before_the_passage() -> None:
    """The page's view opens at its top: twenty short articles before the passage would hide it."""
    import docx

    document = docx.Document()
    document.add_heading("旅費規程", 0)
    for number in range(1, 21):
        document.add_paragraph(f"第{number}条　この条は前置きです。")
    document.add_heading("宿泊", 1)
    document.add_paragraph("宿泊費は一泊一万二千円を上限とする。領収書を添付すること。")
    buffer = io.BytesIO()
    document.save(buffer)
    data = buffer.getvalue()
    passage = "宿泊費は一泊一万二千円を上限とする。"
    start, end = span_of("旅費規程.docx", data, passage)
    view = document_view("旅費規程.docx", data, start, end, expected=passage, context=400)
    assert view.before == "第19条 この条は前置きです。\n\n第20条 この条は前置きです。\n\n宿泊\n\n"
    assert view.after == "領収書を添付すること。"
    assert view.place.heading == ("旅費規程", "宿泊")
    # a passage that starts mid-line: its line's start is one of the lines
    middle = "領収書を添付すること。"
    start, end = span_of("旅費規程.docx", data, middle)
    view = document_view("旅費規程.docx", data, start, end, lines_before=2)
    assert view.before == "宿泊\n\n宿泊費は一泊一万二千円を上限とする。"
    assert document_view("旅費規程.docx", data, start, end, lines_before=0).before == ""


def test_document_view_refuses_a_passage_that_is_not_there() -> None:
    data = ("日本の湖について述べる。" + BIWA).encode()
    start, end = span_of("湖.txt", data, BIWA)
    with pytest.raises(ValueError, match="一致しません"):
        document_view("湖.txt", data, start, end, expected="琵琶湖は京都府にある。")
    with pytest.raises(ValueError, match="文書の外"):
        document_view("湖.txt", data, start, end + 100)


def test_rows_view_xlsx_marks_the_rows_and_keeps_to_the_sheet() -> None:
    data = make_xlsx()
    passage = "日付: 2024-04-02 09:30\n商品: みかん\n金額: 80\n確認: FALSE"  # a row: its lines kept
    start, end = span_of("売上.xlsx", data, passage)
    view = rows_view("売上.xlsx", data, start, end, around=1, expected=passage)
    assert [sheet.sheet for sheet in view.sheets] == ["売上"]
    assert view.sheets[0].rows == [
        (2, "日付: 2024-04-01 ／ 商品: りんご ／ 金額: 120 ／ 確認: TRUE", False),
        (3, "日付: 2024-04-02 09:30 ／ 商品: みかん ／ 金額: 80 ／ 確認: FALSE", True),
        (5, "日付: 2024-04-03 ／ 商品: ぶどう ／ 金額: 350.5 ／ 確認: TRUE", False),
    ]
    wide = rows_view("売上.xlsx", data, start, end)
    assert [row for row, _, _ in wide.sheets[0].rows] == [2, 3, 5, 6]  # 申請書's rows are another sheet


def test_rows_view_shows_every_sheet_a_passage_runs_over_each_named() -> None:
    import openpyxl

    book = openpyxl.Workbook()
    april = book.active
    assert april is not None
    april.title = "4月"
    may = book.create_sheet("5月")
    for sheet, month, fruit in ((april, 4, "りんご"), (may, 5, "みかん")):
        sheet.append(["日付", "品目", "数量"])
        for day in range(1, 9):
            sheet.append([datetime.date(2024, month, day), fruit, month * 10 + day])
    buffer = io.BytesIO()
    book.save(buffer)
    data = buffer.getvalue()
    paged = join_sections(load_bytes("出荷.xlsx", data).sections)
    chunks = chunk_text(paged, lambda text: len(text) + 2, 100)  # a row is about 30 characters
    chunk = next(c for c in chunks if "2024-04-08" in c.text and "2024-05-01" in c.text)
    view = rows_view("出荷.xlsx", data, chunk.start, chunk.end, around=1, expected=chunk.text)
    assert [sheet.sheet for sheet in view.sheets] == ["4月", "5月"]
    april_rows, may_rows = view.sheets[0].rows, view.sheets[1].rows
    assert april_rows[-1] == (9, "日付: 2024-04-08 ／ 品目: りんご ／ 数量: 48", True)
    assert may_rows[0] == (2, "日付: 2024-05-01 ／ 品目: みかん ／ 数量: 51", True)
    assert (april_rows[0][2], may_rows[-1][2]) == (False, False)  # one row either side of the passage


def test_rows_view_csv_passage_over_two_rows() -> None:
    rows = [["氏名", "部署"]] + [[f"社員{n}", "総務"] for n in range(1, 13)]
    data = make_csv(rows)
    text = join_sections(load_bytes("名簿.csv", data).sections).text
    start = text.index("氏名: 社員6")
    end = text.index("氏名: 社員8")
    view = rows_view("名簿.csv", data, start, end, expected=text[start:end])
    assert [sheet.sheet for sheet in view.sheets] == [None]
    shown = view.sheets[0].rows
    assert [(row, marked) for row, _, marked in shown] == [(n, n in (7, 8)) for n in range(2, 14)]
    assert shown[5][1] == "氏名: 社員6 ／ 部署: 総務"


def test_slide_view_marks_the_lines_of_the_passage() -> None:
    data = make_pptx()
    passage = "地域: 東日本\n売上: 1,200\n\n地域: 西日本\n売上: 900"
    start, end = span_of("報告.pptx", data, passage)
    view = slide_view("報告.pptx", data, start, end, expected=passage)
    assert view.slide == 2
    assert view.lines == [
        ("売上の概要", False),
        ("東日本が好調", False),
        ("地域: 東日本", True),
        ("売上: 1,200", True),
        ("地域: 西日本", True),
        ("売上: 900", True),
        ("前年比で増加しました。", False),
        ("注: 速報値", False),
        ("ノート: 口頭で補足する", False),
    ]


def test_passage_spans_mark_a_repeated_sentence_where_its_neighbours_are() -> None:
    page = "吾輩は猫である。(1)吾輩は猫である。(2)"
    assert passage_spans(page, "吾輩は猫である。\n(2)") == [(11, 19), (19, 22)]


def test_render_page_marks_a_vertical_column() -> None:
    data = make_pdf([["日本の湖について述べる。", BIWA, "この行は別の話である。"]], vertical=True)
    image = render_page("縦書き.pdf", data, page=1, passage=BIWA)
    assert image.boxes == 1
    marked = yellow_box(image.png)
    assert marked is not None
    left, top, right, bottom = char_boxes(data, 1, BIWA)
    assert marked[0] <= left
    assert right <= marked[2] < right + (right - left)
    assert marked[1] <= top
    assert marked[3] >= bottom
