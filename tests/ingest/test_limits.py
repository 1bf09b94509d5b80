"""Limits: too many pages, characters, pixels or ZIP contents are refused, with the figure, the limit and its setting."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pypdf
import pytest

from ingest.document import Section
from ingest.errors import IngestError, ResourceLimitError
from ingest.limits import DEFAULT_LIMITS, Limits, check_pixels, check_zip, guard_pillow
from ingest.loaders import load_bytes, load_file
from testkit.documents import make_pdf

TEXT = "吾輩は猫である。名前はまだ無い。"  # 16 characters


def test_defaults_suit_a_page_open_to_a_whole_company() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert vars(DEFAULT_LIMITS) == {
        "max_pages": 2_000,
        "max_chars": 5_000_000,
        "max_pixels": 89_478_485,
        "max_zip_mb": 200,
        "max_zip_entries": 10_000,
        "max_zip_ratio": 100,
        "max_merged_cells": 1_000_000,
        "seconds_per_file": 300,
        "reader_memory_mb": 4096,
    }


@pytest.mark.parametrize("field", ["max_pages", "max_chars", "max_pixels", "seconds_per_file"])
def test_a_limit_below_one_is_a_mistake(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


# PDF pages


def test_pdf_with_too_many_pages_is_refused_before_any_text_is_extracted(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_pdf([[TEXT]] * 3)

    def never(*args: object, **kwargs: object) -> str:
        raise AssertionError("text extracted from a PDF that was going to be refused")

    monkeypatch.setattr(pypdf.PageObject, "extract_text", never)
    with pytest.raises(ResourceLimitError) as caught:
        load_bytes("厚い資料.pdf", data, Limits(max_pages=2))
    assert str(caught.value) == (
        "厚い資料.pdf: ページ数が多すぎます（3 ページ、上限 2 ページ）。分割するか、上限を RAG_MAX_PAGES で変えてください。"
    )


def test_pdf_at_the_page_limit_is_read() -> None:
    loaded = load_bytes("ちょうど.pdf", make_pdf([[TEXT]] * 3), Limits(max_pages=3))
    assert [s.place.page for s in loaded.sections] == [1, 2, 3]


def test_page_counts_in_messages_have_thousands_separators() -> None:
    with pytest.raises(ResourceLimitError, match="（3 ページ、上限 1 ページ）"):
        load_bytes("a.pdf", make_pdf([[TEXT]] * 3), Limits(max_pages=1))
    from ingest.limits import check_pages

    with pytest.raises(ResourceLimitError, match="（3,000 ページ、上限 2,000 ページ）"):
        check_pages("大きな本.pdf", 3_000, DEFAULT_LIMITS)


# characters


def test_pdf_characters_are_counted_page_by_page_and_reading_stops_at_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = make_pdf([[TEXT]] * 4)  # pypdf extracts 17 characters a page: the text and a line break
    extracted: list[int] = []
    original = pypdf.PageObject.extract_text

    def counting(page: pypdf.PageObject, *args: object, **kwargs: object) -> str:
        extracted.append(1)
        return original(page)

    monkeypatch.setattr(pypdf.PageObject, "extract_text", counting)
    with pytest.raises(ResourceLimitError) as caught:
        load_bytes("長文.pdf", data, Limits(max_chars=20))
    assert str(caught.value) == (
        "長文.pdf: 文字数が多すぎます（2 ページ目までで 34 文字、上限 20 文字）。"
        "分割するか、上限を RAG_MAX_CHARS で変えてください。"
    )
    assert len(extracted) == 2  # pages 3 and 4 were never extracted


@pytest.mark.parametrize("codec", ["utf-8", "cp932", "euc_jp", "utf-16"])
def test_text_over_the_character_limit_is_refused_whatever_its_encoding(codec: str) -> None:
    data = (TEXT * 2).encode(codec)  # 32 characters, 32 to 96 bytes
    with pytest.raises(ResourceLimitError) as caught:
        load_bytes("長い.txt", data, Limits(max_chars=31))
    assert str(caught.value) == (
        "長い.txt: 文字数が多すぎます（32 文字、上限 31 文字）。分割するか、上限を RAG_MAX_CHARS で変えてください。"
    )
    assert load_bytes("長い.txt", data, Limits(max_chars=32)).sections == (Section(TEXT * 2),)


def test_text_far_over_the_limit_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> tuple[str, str]:
        raise AssertionError("decoded a file that no encoding could bring under the limit")

    monkeypatch.setattr("ingest.encoding.decode_text", never)
    with pytest.raises(ResourceLimitError, match="（少なくとも 249 文字、上限 100 文字）"):
        load_bytes("ログ.md", b"a" * 1_000, Limits(max_chars=100))


def test_load_file_keeps_to_the_limits_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "メモ.txt").write_text(TEXT, encoding="utf-8")
    assert load_file(tmp_path / "メモ.txt").sections == (Section(TEXT),)
    with pytest.raises(ResourceLimitError, match="RAG_MAX_CHARS"):
        load_file(tmp_path / "メモ.txt", limits=Limits(max_chars=15))
    (tmp_path / "資料.pdf").write_bytes(make_pdf([[TEXT]] * 2))
    with pytest.raises(ResourceLimitError, match="RAG_MAX_PAGES"):
        load_file(tmp_path / "資料.pdf", "別名.pdf", Limits(max_pages=1))


# pixels


def test_images_over_the_pixel_limit_are_refused() -> None:
    check_pixels("写真.png", 9_459, 9_459, DEFAULT_LIMITS)  # 89,472,681 pixels: just under
    with pytest.raises(ResourceLimitError) as caught:
        check_pixels("写真.png", 20_000, 10_000, DEFAULT_LIMITS)
    assert str(caught.value) == (
        "写真.png: 画像が大きすぎます（20,000×10,000 = 200,000,000 ピクセル、上限 89,478,485 ピクセル）。"
        "解像度を下げるか、上限を RAG_MAX_PIXELS で変えてください。"
    )


def test_pillow_guard_takes_the_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    png = io.BytesIO()
    Image.new("L", (100, 100)).save(png, format="PNG")
    guard_pillow(Limits(max_pixels=1_000))
    assert Image.MAX_IMAGE_PIXELS == 1_000
    with pytest.raises(Image.DecompressionBombError):  # 10,000 pixels: above twice the limit, refused on opening
        Image.open(io.BytesIO(png.getvalue()))
    guard_pillow(DEFAULT_LIMITS)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


# ZIP-based files (DOCX, XLSX, PPTX)


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """300 MB of zeros in 1.3 MB, written a megabyte at a time."""
    buffer = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as entry,
    ):
        for _ in range(300):
            entry.write(block)
    return buffer.getvalue()


def test_an_ordinary_office_file_passes() -> None:
    data = make_zip(
        {
            "[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
            "word/document.xml": f"<w:document><w:t>{TEXT * 100}</w:t></w:document>".encode(),
        }
    )
    infos = check_zip("報告書.docx", data, DEFAULT_LIMITS)
    assert [info.filename for info in infos] == ["[Content_Types].xml", "word/document.xml"]


def test_zip_bomb_is_refused_by_its_ratio(bomb: bytes) -> None:
    with pytest.raises(ResourceLimitError) as caught:
        check_zip("爆弾.docx", bomb, DEFAULT_LIMITS)
    message = str(caught.value)
    assert message.startswith("爆弾.docx: 中のファイル「word/document.xml」の圧縮率が高すぎます（300.0 MB に展開、")
    assert message.endswith(
        "倍、上限 100 倍）。zip 爆弾の疑いがあります。元のアプリで保存し直すか、上限を RAG_MAX_ZIP_RATIO で変えてください。"
    )


def test_zip_bomb_is_refused_by_its_size_when_the_ratio_is_allowed(bomb: bytes) -> None:
    with pytest.raises(ResourceLimitError) as caught:
        check_zip("爆弾.docx", bomb, Limits(max_zip_ratio=100_000))
    assert str(caught.value) == (
        "爆弾.docx: 展開後のサイズが大きすぎます（300.0 MB、上限 200 MB）。分割するか、上限を RAG_MAX_ZIP_MB で変えてください。"
    )


def test_uncompressed_total_counts_every_entry() -> None:
    data = make_zip({"xl/worksheets/sheet1.xml": bytes(range(256)) * 2_400, "xl/media/image1.png": b"\x89" * 700_000})
    check_zip("表.xlsx", data, Limits(max_zip_mb=2))
    with pytest.raises(ResourceLimitError, match=r"（1\.3 MB、上限 1 MB）"):
        check_zip("表.xlsx", data, Limits(max_zip_mb=1))


def test_forged_sizes_are_refused_from_the_central_directory_alone() -> None:
    data = bytearray(make_zip({"ppt/slides/slide1.xml": b"<p:sld/>"}))
    entry = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, entry + 24, 0xFFFF_FFFE)  # uncompressed size: claims 4 GB
    with pytest.raises(ResourceLimitError) as caught:
        check_zip("偽装.pptx", bytes(data), DEFAULT_LIMITS)
    assert "「ppt/slides/slide1.xml」の圧縮率が高すぎます（4,096.0 MB に展開、" in str(caught.value)


def test_too_many_entries_are_refused_before_the_directory_is_parsed() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for number in range(10_001):
            archive.writestr(f"customXml/item{number}.xml", b"")
    with pytest.raises(ResourceLimitError) as caught:
        check_zip("部品だらけ.docx", buffer.getvalue(), DEFAULT_LIMITS)
    assert str(caught.value) == (
        "部品だらけ.docx: ZIP の中のファイルが多すぎます（10,001 個、上限 10,000 個）。"
        "分割するか、上限を RAG_MAX_ZIP_ENTRIES で変えてください。"
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x03\x04" + bytes(64), TEXT.encode(), make_zip({"word/document.xml": b"<w:document/>"})[:-30]],
    ids=["空", "頭だけ", "テキスト", "途中まで"],
)
def test_a_file_that_is_not_a_zip_is_refused_clearly(data: bytes) -> None:
    with pytest.raises(IngestError) as caught:
        check_zip("壊れた.docx", data, DEFAULT_LIMITS)
    assert not isinstance(caught.value, ResourceLimitError)
    assert str(caught.value).startswith("壊れた.docx: ZIP 形式のファイルとして読めません（BadZipFile: ")
    assert str(caught.value).endswith("元のアプリで保存し直してください。")
