"""Loaders: Japanese PDFs page by page, text in every Japanese encoding, and bad files refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.document import Place, Section
from ingest.encoding import decode_text
from ingest.errors import EmptyDocumentError, EncodingError, PdfError, UnsupportedFileError
from ingest.loaders import content_hash, load_bytes, load_file
from testkit.documents import make_blank_pdf, make_pdf

JAPANESE = "吾輩は猫である。名前はまだ無い。\r\nどこで生れたかとんと見当がつかぬ。①㈱～ｶﾀｶﾅ"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (JAPANESE.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + JAPANESE.encode("utf-8"), "utf-8-sig"),
        (JAPANESE.encode("cp932"), "cp932"),
        (JAPANESE.replace("①㈱～", "").encode("shift_jis"), "cp932"),
        (JAPANESE.replace("①㈱～", "").encode("euc_jp"), "euc_jp"),
        (JAPANESE.encode("utf-16"), "utf-16"),  # with BOM
        (JAPANESE.encode("utf-16-le"), "utf-16-le"),
        (JAPANESE.encode("utf-16-be"), "utf-16-be"),
    ],
)
def test_encodings_are_detected(data: bytes, encoding: str) -> None:
    text, detected = decode_text(data, "文書.txt")
    assert detected == encoding
    assert "吾輩は猫である" in text
    assert "どこで生れたか" in text


@pytest.mark.parametrize("codec", ["cp932", "euc_jp", "utf-16-le"])
def test_short_texts_are_detected_too(codec: str) -> None:
    assert decode_text("はい。".encode(codec))[0] == "はい。"
    assert decode_text("東京都".encode(codec))[0] == "東京都"


def test_ascii_text_in_utf16_without_bom() -> None:
    text, encoding = decode_text("Hello, world.\n".encode("utf-16-le"))
    assert (text, encoding) == ("Hello, world.\n", "utf-16-le")


def test_utf8_with_nul_bytes_stays_utf8() -> None:
    text, encoding = decode_text("東京\x00都\x00です。".encode())
    assert encoding == "utf-8"
    assert text == "東京\x00都\x00です。"  # NULs are removed by normalisation, not by decoding


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n" + bytes(range(200, 256)) * 8])
def test_binary_data_is_not_taken_for_text(data: bytes) -> None:
    with pytest.raises(EncodingError, match="文字コードを判別できません"):
        decode_text(data, "画像.txt")


def test_broken_bom_gets_a_clear_message() -> None:
    with pytest.raises(EncodingError, match="BOM"):
        decode_text(b"\xef\xbb\xbf\xff\xfe\xfa", "x.txt")


def test_text_and_markdown_files(tmp_path: Path) -> None:
    (tmp_path / "メモ.md").write_bytes("# 見出し\n本文です。".encode("cp932"))
    loaded = load_file(tmp_path / "メモ.md")
    assert loaded.source == "メモ.md"
    assert loaded.sections == (Section("# 見出し\n本文です。", Place(heading=("見出し",))),)
    assert loaded.encoding == "cp932"
    assert loaded.content_hash == content_hash("# 見出し\n本文です。".encode("cp932"))


def test_pdf_pages_keep_their_numbers() -> None:
    data = make_pdf([["東京は日本の首都であり、政治と経済の中心", "地です。"], [], ["三ページ目の文章です！"]])
    loaded = load_bytes("資料.pdf", data)
    assert [s.place.page for s in loaded.sections] == [1, 2, 3]
    assert "政治と経済の中心\n地です。" in loaded.sections[0].text
    assert loaded.sections[1].text.strip() == ""
    assert "三ページ目の文章です！" in loaded.sections[2].text
    assert loaded.encoding is None


def test_pdf_with_empty_user_password_is_read() -> None:
    data = make_pdf([["暗号化されているが開ける文書です。"]], password="")
    loaded = load_bytes("暗号.pdf", data)
    assert "開ける文書" in loaded.sections[0].text


def test_pdf_with_a_password_is_refused() -> None:
    with pytest.raises(PdfError, match="パスワード"):
        load_bytes("秘密.pdf", make_pdf([["秘密の文書です。"]], password="himitsu"))


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 3,  # a header and garbage
        bytes(range(256)) * 3,  # random bytes named .pdf
    ],
)
def test_broken_pdf_is_refused(data: bytes) -> None:
    with pytest.raises(PdfError, match="PDF を読み取れません"):
        load_bytes("壊れた.pdf", data)


def test_truncated_pdf_is_refused() -> None:
    data = make_pdf([["途中で切れた文書です。"]] * 3)
    with pytest.raises((PdfError, EmptyDocumentError)):
        load_bytes("切れた.pdf", data[: len(data) // 3])


def test_pdf_of_blank_pages_is_refused_as_empty() -> None:
    with pytest.raises(EmptyDocumentError, match=r"白紙\.pdf"):
        load_bytes("白紙.pdf", make_blank_pdf(2))


@pytest.mark.parametrize(("name", "data"), [("空.txt", b""), ("空.pdf", b""), ("空白.md", " \r\n\u3000\n".encode())])
def test_empty_files_are_refused(name: str, data: bytes) -> None:
    with pytest.raises(EmptyDocumentError, match=name):
        load_bytes(name, data)


@pytest.mark.parametrize("name", ["実行.exe", "README", "圧縮.zip"])
def test_unsupported_types_are_refused_before_reading(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsupportedFileError, match="対応していない形式"):
        load_file(tmp_path / name)  # the file does not even exist: it is never opened
