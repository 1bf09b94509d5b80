"""OCR (ingest/ocr.py): Tesseract on drawn Japanese pages, 横書き and 縦書き, and the checks around it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ingest.document import Place
from ingest.errors import FormatError, MissingToolError, ResourceLimitError, UnsupportedFileError
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.ocr import OcrOptions, close_japanese_spaces, garbled, read_image, recognise, tesseract
from testkit.scans import char_accuracy, requires_ocr, scan_image

LINES = ("琵琶湖は滋賀県にある。", "日本で一番大きい湖で、面積は約六七〇平方キロメートルです。")
SMALL = (1000, 700)  # small pages with large text keep each OCR run under a second


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@requires_ocr
@pytest.mark.parametrize("vertical", [False, True], ids=["横書き", "縦書き"])
def test_recognise_reads_japanese_either_way(vertical: bool) -> None:
    text = recognise("湖.png", scan_image(LINES, vertical=vertical, size=SMALL), OcrOptions())
    assert "琵琶湖は滋賀県にある" in "".join(text.split())
    assert char_accuracy("".join(LINES), text) >= 0.9


@requires_ocr
def test_image_file_is_read_frame_by_frame() -> None:
    frames = [
        scan_image(["一枚目は琵琶湖の話です。"], size=SMALL),
        scan_image(["二枚目は富士山の話です。"], size=SMALL),
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    reading = read_image("二枚.tiff", buffer.getvalue(), DEFAULT_LIMITS, OcrOptions())
    assert [section.place for section in reading.sections] == [Place(page=1, ocr=True), Place(page=2, ocr=True)]
    assert "琵琶湖" in reading.sections[0].text
    assert "富士山" in reading.sections[1].text
    assert all(section.flows for section in reading.sections)
    assert reading.notes == ("2 ページを OCR で読み取りました",)


def test_image_is_refused_when_ocr_is_off() -> None:
    with pytest.raises(UnsupportedFileError, match=r"写真\.png: .*RAG_OCR=off"):
        read_image("写真.png", png(scan_image(LINES, size=SMALL)), DEFAULT_LIMITS, OcrOptions(mode="off"))


@requires_ocr
@pytest.mark.parametrize(
    "data",
    [b"not an image at all", png(Image.new("L", (40, 40), 255))[:60]],
    ids=["not-an-image", "truncated"],
)
def test_unreadable_image_is_a_format_error(data: bytes) -> None:
    with pytest.raises(FormatError, match=r"壊れ\.png: 画像として読めません"):
        read_image("壊れ.png", data, DEFAULT_LIMITS, OcrOptions())


@requires_ocr
def test_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(ResourceLimitError, match="RAG_MAX_PIXELS"):
        read_image("大きい.png", png(Image.new("L", (400, 300), 255)), Limits(max_pixels=100_000), OcrOptions())


def test_missing_tesseract_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError, match="tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert"):
        tesseract("jpn+jpn_vert+eng")
    with pytest.raises(MissingToolError, match=r"^写真\.png: .*apt-get install"):
        read_image("写真.png", png(scan_image(LINES, size=SMALL)), DEFAULT_LIMITS, OcrOptions())


@requires_ocr
def test_missing_language_data_names_its_package() -> None:
    with pytest.raises(MissingToolError, match=r"xyz_vert.*tesseract-ocr-xyz-vert.*RAG_OCR_LANGS"):
        tesseract("jpn+xyz_vert")


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"mode": "sometimes"}, "mode"), ({"langs": "jpn; rm -rf /"}, "langs"), ({"dpi": 20}, "dpi")],
)
def test_options_are_checked(options: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OcrOptions(**options)  # type: ignore[arg-type]


GARBLED = [
    "\ue000\ue001\ue002\ue003 \ue004\ue005\ue006",  # a font's private-use codes
    "(cid:12)(cid:345)(cid:67)(cid:8)\n(cid:910)(cid:11)",  # pdfminer-style unmapped glyphs
    "会議\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd資料",  # replacement characters
    "ÃÂ¤Ã£ÂÂÃ¯Â¼ÂÃ¦ÂÂ±Ã¤ÂºÂ¬Ã£ÂÂ",  # UTF-8 read as Latin-1
    "\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f",  # glyph indices as control characters
]
NOT_GARBLED = [
    "東京は日本の首都であり、政治と経済の中心地です。",
    "第3章　2024年度の売上は前年比112.5%（約3,400万円）でした。",
    "会議の資料はPDFで配布し、議事録は https://example.co.jp/minutes に置きます。",
    "品番　ABC-1234　数量　12　単価　¥1,980\n品番　XYZ-0007　数量　3　単価　¥15,000",
    "① 申請書を提出する。② 承認を待つ。※ 期限は３月３１日です。→ 詳細は別紙参照。",
    "The quarterly report is attached. Please review it by Friday.",
    "2024/04/01  10:00-12:00  第1会議室\n2024/04/02  13:00-15:00  第2会議室",
    "ｶﾀｶﾅの半角が少し混じった文です。ﾃｽﾄ用の行ですが本文は普通の日本語です。",
    "",
]


@pytest.mark.parametrize("text", GARBLED)
def test_garbled_text_layers(text: str) -> None:
    assert garbled(text)


@pytest.mark.parametrize("text", NOT_GARBLED)
def test_ordinary_pages_are_not_garbled(text: str) -> None:
    assert not garbled(text)


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ("琵 琶 湖 は 滋 賀 県 に あ る 。", "琵琶湖は滋賀県にある。"),
        ("コーヒー (珈琲) を「二杯」 飲んだ、 と言った。", "コーヒー(珈琲)を「二杯」飲んだ、と言った。"),
        ("Windows 11 の 設定", "Windows 11 の設定"),
        ("hello world", "hello world"),
        ("１ ２ 月", "１２月"),
        ("行 1\n行 2", "行 1\n行 2"),
    ],
)
def test_spaces_between_japanese_characters_are_closed(text: str, closed: str) -> None:
    assert close_japanese_spaces(text) == closed


COLUMNS = (
    "梅雨は、北海道と小笠原諸島を除く日本、朝鮮半島南部、中国の南部から長江流域にかけての沿海部、"
    "および台湾など、東アジアの広範囲においてみられる特有の気象現象で、五月から七月にかけて毎年巡ってくる。",
    "性質の違う二つの空気がぶつかる所は大気の状態が不安定になり、前線が発生する。",
    "梅雨前線を構成する気団はいずれも勢力が拮抗しているため、ほぼ同じ地域を南北にゆっくりと移動する停滞前線となる。",
)


@requires_ocr
def test_vertical_columns_are_read_right_to_left() -> None:
    # each paragraph wraps into several columns: they must come out in order, not block by block
    text = recognise("梅雨.png", scan_image(COLUMNS, vertical=True, size=(1000, 1000)), OcrOptions())
    assert char_accuracy("".join(COLUMNS), text) >= 0.95
    compact = "".join(text.split())
    assert compact.index("梅雨は") < compact.index("性質の違う") < compact.index("梅雨前線を構成")
    assert len(text.splitlines()) == len(COLUMNS)  # a paragraph's columns join, paragraphs do not
