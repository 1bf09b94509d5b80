"""PDF reading (ingest/pdf.py): text layers, scanned pages read by OCR, running headers and page numbers."""

from __future__ import annotations

import io

import pypdf
import pytest

from ingest.document import Place
from ingest.errors import EmptyDocumentError, MissingToolError, PdfError, ResourceLimitError
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.ocr import OcrOptions
from ingest.pdf import read_pdf, strip_running_lines
from testkit.documents import make_blank_pdf, make_pdf
from testkit.scans import (
    char_accuracy,
    make_pdf_with_running_lines,
    requires_ocr,
    scan_image,
    scan_with_text_layer,
    scanned_pdf,
)

LAKE = ("琵琶湖は滋賀県にある。", "日本で一番大きい湖です。")
MOUNTAIN = ("富士山は静岡県と山梨県にまたがる。",)
SMALL = (1000, 600)
FAST = OcrOptions(dpi=150)  # the drawn pages are 150 dpi scans; drawing them at 300 dpi only costs time


def joined(*pdfs: bytes) -> bytes:
    writer = pypdf.PdfWriter()
    for data in pdfs:
        writer.append(pypdf.PdfReader(io.BytesIO(data)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def compact(text: str) -> str:
    return "".join(text.split())


# --- running headers, footers and page numbers -------------------------------------------------------

# Body lines differ from page to page (not only in their numbers), as in any real document.
BODY = [
    "東京は日本の首都であり、政治と経済の中心地です。",
    "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
    "富士山は日本で最も高い山です。",
    "吾輩は猫である。名前はまだ無い。",
    "会議の資料はPDFで配布します。",
    "雨が降ったので、試合は翌週に延期されました。",
    "琵琶湖は滋賀県にある。",
    "議事録はテキストファイルで保存してください。",
]


def body(page: int) -> tuple[str, str]:
    return BODY[(2 * page) % 8], BODY[(2 * page + 1) % 8]


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        (  # a header and - N - on every page
            [f"社外秘\n{body(n)[0]}\n{body(n)[1]}\n- {n} -" for n in range(1, 5)],
            [f"{body(n)[0]}\n{body(n)[1]}\n" for n in range(1, 5)],
        ),
        (  # a title with the page number in it, and n / 4 in full-width digits
            [f"2024年度 事業報告 {n}\n{body(n)[0]}\n{'０１２３４'[n]} / ４" for n in range(1, 5)],
            [f"{body(n)[0]}\n" for n in range(1, 5)],
        ),
        (  # p. N at the top, bare numbers at the bottom, Windows line endings kept in the body
            [f"p. {n}\r\n{body(n)[0]}\r\n{body(n)[1]}\r\n{n}" for n in range(1, 4)],
            [f"{body(n)[0]}\r\n{body(n)[1]}\r\n" for n in range(1, 4)],
        ),
        (  # two pages: page numbers go, a line on both does not (3 pages at least for that)
            ["社外秘\n本文です。\n（1）", "社外秘\n続きです。\n（2）"],
            ["社外秘\n本文です。\n", "社外秘\n続きです。\n"],
        ),
        (  # a line repeated on one page only stays
            ["注意\n注意\n" + body(1)[0], *(f"{body(n)[0]}\n{body(n)[1]}" for n in (2, 3))],
            ["注意\n注意\n" + body(1)[0], *(f"{body(n)[0]}\n{body(n)[1]}" for n in (2, 3))],
        ),
        (  # a header on fewer than half of the pages stays
            [f"社外秘\n{body(n)[0]}" if n < 2 else body(n)[1] for n in range(5)],
            [f"社外秘\n{body(n)[0]}" if n < 2 else body(n)[1] for n in range(5)],
        ),
        (  # a running line in the middle of a page is body text there
            [
                f"{body(n)[0]}\n{body(n)[1]}\n社外秘\n{body(n + 1)[0]}\n{body(n + 1)[1]}"
                if n == 1
                else f"社外秘\n{body(n)[0]}"
                for n in range(1, 5)
            ],
            [
                f"{body(n)[0]}\n{body(n)[1]}\n社外秘\n{body(n + 1)[0]}\n{body(n + 1)[1]}" if n == 1 else body(n)[0]
                for n in range(1, 5)
            ],
        ),
        ([], []),
        (["", "  \n", "本文"], ["", "  \n", "本文"]),
    ],
    ids=[
        "header-footer",
        "numbered-title",
        "crlf",
        "two-pages",
        "one-page-repeat",
        "minority",
        "mid-page",
        "none",
        "blank",
    ],
)
def test_strip_running_lines(pages: list[str], expected: list[str]) -> None:
    assert strip_running_lines(pages) == expected


def test_body_lines_between_running_lines_are_untouched() -> None:
    # page numbers are at the bottom: the "1" of a list under the header on page 1 stays
    pages = [f"社外秘\n{'1' if n == 1 else body(n)[1]}\n{body(n)[0]}\n- {n} -" for n in range(1, 4)]
    assert strip_running_lines(pages) == [f"{'1' if n == 1 else body(n)[1]}\n{body(n)[0]}\n" for n in range(1, 4)]


def test_two_column_pdf_loses_its_header_and_page_numbers() -> None:
    pages = [([body(n)[0], body(n + 1)[0]], [body(n)[1], body(n + 1)[1]]) for n in range(1, 4)]
    reading = read_pdf("報告.pdf", make_pdf_with_running_lines(pages), DEFAULT_LIMITS, FAST)
    texts = [section.text for section in reading.sections]
    assert not any("社外秘" in text or "- 2 -" in text for text in texts)
    assert [compact(text) for text in texts] == [compact("".join(left + right)) for left, right in pages]
    assert [section.place for section in reading.sections] == [Place(page=n) for n in (1, 2, 3)]
    assert all(section.flows for section in reading.sections)
    assert reading.notes == ()


# --- OCR ---------------------------------------------------------------------------------------------


@requires_ocr
def test_scanned_pdf_is_read_by_ocr() -> None:
    data = scanned_pdf([scan_image(LAKE, size=SMALL), scan_image(MOUNTAIN, vertical=True, size=SMALL)])
    reading = read_pdf("スキャン.pdf", data, DEFAULT_LIMITS, FAST)
    assert [section.place for section in reading.sections] == [Place(page=1, ocr=True), Place(page=2, ocr=True)]
    assert "琵琶湖は滋賀県にある" in compact(reading.sections[0].text)
    assert char_accuracy("".join(MOUNTAIN), reading.sections[1].text) >= 0.9
    assert reading.notes == ("2 ページを OCR で読み取りました",)


@requires_ocr
def test_mixed_pdf_reads_only_its_scanned_page_by_ocr() -> None:
    data = joined(make_pdf([["東京は日本の首都です。"]]), scanned_pdf([scan_image(LAKE, size=SMALL)]))
    reading = read_pdf("混在.pdf", data, DEFAULT_LIMITS, FAST)
    assert [section.place for section in reading.sections] == [Place(page=1), Place(page=2, ocr=True)]
    assert reading.sections[0].text.strip() == "東京は日本の首都です。"
    assert "琵琶湖は滋賀県にある" in compact(reading.sections[1].text)
    assert reading.notes == ("1 ページを OCR で読み取りました",)


@requires_ocr
def test_garbled_text_layer_is_replaced_by_ocr() -> None:
    data = scan_with_text_layer(scan_image(LAKE, size=SMALL), "(cid:12)(cid:345)(cid:67)(cid:8)(cid:910)")
    reading = read_pdf("文字化け.pdf", data, DEFAULT_LIMITS, FAST)
    assert reading.sections[0].place == Place(page=1, ocr=True)
    assert "cid" not in reading.sections[0].text
    assert "琵琶湖は滋賀県にある" in compact(reading.sections[0].text)


@requires_ocr
def test_force_reads_text_pages_by_ocr_too() -> None:
    data = joined(make_pdf([["東京は日本の首都です。"]]), scanned_pdf([scan_image(LAKE, size=SMALL)]))
    reading = read_pdf("全部.pdf", data, DEFAULT_LIMITS, OcrOptions(mode="force", dpi=300))
    assert [section.place.ocr for section in reading.sections] == [True, True]
    assert "東京は日本の首都です" in compact(reading.sections[0].text)
    assert reading.notes == ("2 ページを OCR で読み取りました",)


def test_off_reads_text_layers_only() -> None:
    data = joined(make_pdf([["東京は日本の首都です。"]]), scanned_pdf([scan_image(LAKE, size=SMALL)]))
    reading = read_pdf("混在.pdf", data, DEFAULT_LIMITS, OcrOptions(mode="off"))
    assert [(section.place, section.text.strip()) for section in reading.sections] == [
        (Place(page=1), "東京は日本の首都です。"),
        (Place(page=2), ""),
    ]
    assert reading.notes == ()


def test_scanned_pdf_with_ocr_off_says_so() -> None:
    with pytest.raises(EmptyDocumentError, match=r"スキャン\.pdf: .*RAG_OCR=off"):
        read_pdf("スキャン.pdf", scanned_pdf([scan_image(LAKE, size=SMALL)]), DEFAULT_LIMITS, OcrOptions(mode="off"))


def test_blank_pdf_is_empty_without_running_ocr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # nothing is drawn on its pages: there is nothing to OCR
    with pytest.raises(EmptyDocumentError, match=r"白紙\.pdf: PDF から文字を読み取れません"):
        read_pdf("白紙.pdf", make_blank_pdf(2), DEFAULT_LIMITS, FAST)


def test_scanned_pdf_without_tesseract_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(
        MissingToolError, match=r"^スキャン\.pdf: .*tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert"
    ):
        read_pdf("スキャン.pdf", scanned_pdf([scan_image(LAKE, size=SMALL)]), DEFAULT_LIMITS, FAST)


def test_mixed_pdf_without_tesseract_keeps_its_text_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    data = joined(
        make_pdf([["東京は日本の首都です。"]]),
        scanned_pdf([scan_image(LAKE, size=SMALL)]),
        make_pdf([["京都には古い寺が多い。"]]),
        scanned_pdf([scan_image(LAKE, size=SMALL)]),
    )
    reading = read_pdf("混在.pdf", data, DEFAULT_LIMITS, FAST)
    assert [section.text.strip() for section in reading.sections] == [
        "東京は日本の首都です。",
        "",
        "京都には古い寺が多い。",
        "",
    ]
    assert not any(section.place.ocr for section in reading.sections)
    (note,) = reading.notes
    assert note.startswith("2、4 ページは")
    assert "tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert" in note


@requires_ocr
def test_ocr_text_counts_toward_the_character_limit() -> None:
    with pytest.raises(ResourceLimitError, match=r"OCR で 1 ページ目までで .*RAG_MAX_CHARS"):
        read_pdf("スキャン.pdf", scanned_pdf([scan_image(LAKE, size=SMALL)]), Limits(max_chars=5), FAST)


@requires_ocr
def test_page_too_large_to_draw_is_refused() -> None:
    # an A4 page at 300 dpi is 8.7 million pixels; 400,000 would leave it at 63 dpi, too few to read
    with pytest.raises(ResourceLimitError, match="RAG_MAX_PIXELS"):
        read_pdf("大判.pdf", scanned_pdf([scan_image(LAKE)]), Limits(max_pixels=400_000), OcrOptions())


@requires_ocr
def test_large_page_is_drawn_at_a_lower_resolution() -> None:
    # 150 dpi of this 1000x600 scan is 900,000 pixels; 500,000 draws it at 111 dpi, still readable
    reading = read_pdf("大判.pdf", scanned_pdf([scan_image(LAKE, size=SMALL)]), Limits(max_pixels=500_000), FAST)
    assert "琵琶湖" in reading.sections[0].text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (make_pdf([["秘密の文書です。"]], password="secret"), "パスワード"),
        (b"%PDF-1.7\n" + b"\x00" * 64, "PDF を読み取れません"),
    ],
    ids=["password", "damaged"],
)
def test_unreadable_pdfs_keep_their_messages(data: bytes, message: str) -> None:
    with pytest.raises(PdfError, match=message):
        read_pdf("文書.pdf", data, DEFAULT_LIMITS)


def test_a_line_that_is_all_its_page_holds_is_content_not_a_running_header() -> None:
    pages = ["有給休暇は十日です。\n", "有給休暇は十日です。\n", "有給休暇は十日です。\n"]
    assert strip_running_lines(pages) == pages
    with_header = ["社外秘\n本文一。\n", "社外秘\n本文二。\n", "社外秘\n"]
    assert strip_running_lines(with_header) == ["本文一。\n", "本文二。\n", "社外秘\n"]
