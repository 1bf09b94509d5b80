"""Loaders: PDF (one text per page, page numbers kept) and text files in a detected Japanese encoding.

Both keep to ``Limits``: a PDF's pages are counted before any text is extracted, and characters are
counted as each page is extracted or once a text file is decoded; a file over a limit is refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pypdf
from pypdf.errors import DependencyError, DeprecationError, PyPdfError

from ingest.errors import EmptyDocumentError, EncodingError, PdfError, ResourceLimitError, UnsupportedFileError
from ingest.limits import DEFAULT_LIMITS, Limits, check_chars, check_pages

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = PDF_SUFFIXES + TEXT_SUFFIXES

# Encodings tried on a file without a byte-order mark, after UTF-8.
_CANDIDATES = ("cp932", "euc_jp", "utf-16-le", "utf-16-be")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Below this share of plausible characters a decoding is taken for a wrong guess.
_MIN_PLAUSIBLE = 0.9


@dataclass(frozen=True)
class LoadedFile:
    """A file's text, page by page, before normalisation."""

    source: str
    content_hash: str
    pages: tuple[tuple[int | None, str], ...]
    encoding: str | None = None


def content_hash(data: bytes) -> str:
    """The hex SHA-256 of a file's bytes: a document's identity."""
    return hashlib.sha256(data).hexdigest()


def _plausibility(text: str) -> float:
    """Share of characters that ordinary Japanese or ASCII text is made of; hiragana counts double.

    Wrong guesses decode to half-width katakana (EUC-JP read as CP932), rare CJK blocks or control
    characters (a multibyte encoding read as UTF-16), which all score zero.
    """
    if not text:
        return 0.0
    score = 0.0
    for char in text:
        code = ord(char)
        if 0x3041 <= code <= 0x309F:
            score += 2.0
        elif (
            (0x20 <= code <= 0x7E)
            or char in "\n\r\t"
            or 0x30A0 <= code <= 0x30FF  # katakana
            or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
            or 0x3000 <= code <= 0x303F  # CJK punctuation
            or 0xFF01 <= code <= 0xFF5E  # full-width ASCII
            or 0x2010 <= code <= 0x2312  # general punctuation, arrows, maths
            or 0x2460 <= code <= 0x24FF  # circled numbers
            or 0x2500 <= code <= 0x257F  # box drawing
            or 0x25A0 <= code <= 0x26FF  # shapes and symbols
            or code in (0xA7, 0xA8, 0xB0, 0xB1, 0xB4, 0xB6, 0xD7, 0xF7)
        ):
            score += 1.0
    return min(score / len(text), 1.0)


def decode_text(data: bytes, name: str = "") -> tuple[str, str]:
    """Decode a Japanese text file, detecting its encoding: UTF-8, Shift_JIS/CP932, EUC-JP or UTF-16.

    A byte-order mark decides; otherwise UTF-8 is taken when the bytes are valid UTF-8 and not
    UTF-16 in disguise, and else the candidate whose decoding looks most like Japanese text.
    Returns ``(text, encoding)``.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as error:
                raise EncodingError(
                    f"{name}: 先頭に {encoding} の印 (BOM) がありますが、その文字コードとして読めません"
                    f"（{error.start} バイト目）。UTF-8 で保存し直してください。"
                ) from error
    decoded: list[tuple[float, str, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        # ASCII in UTF-16 is valid UTF-8 with a NUL every other byte; a few stray NULs are just dirt.
        looks_like_utf16 = text.count("\x00") * 3 >= len(text)
        score = _plausibility(text.replace("\x00", ""))
        if score >= _MIN_PLAUSIBLE and not looks_like_utf16:
            return text, "utf-8"
        decoded.append((score / 2 if looks_like_utf16 else score, text, "utf-8"))
    for encoding in _CANDIDATES:
        if encoding.startswith("utf-16") and len(data) % 2:
            continue
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        decoded.append((_plausibility(text), text, encoding))
    if decoded:
        score, text, encoding = max(decoded, key=lambda item: item[0])
        if score >= _MIN_PLAUSIBLE:
            return text, encoding
    raise EncodingError(
        f"{name}: 文字コードを判別できません（UTF-8、Shift_JIS、EUC-JP、UTF-16 のいずれでもありません）。"
        "テキストファイルでなければ対応形式（PDF、.txt、.md）に変換し、テキストなら UTF-8 で保存し直してください。"
    )


Pages = tuple[tuple[int | None, str], ...]


def _load_text(name: str, data: bytes, limits: Limits) -> tuple[Pages, str]:
    # Every candidate encoding takes at most 4 bytes a character (after a BOM of at most 3), so a file
    # this long is over the limit however it decodes: refused before the slow plausibility scan.
    check_chars(name, (len(data) - 3) // 4, limits, where="少なくとも ")
    text, encoding = decode_text(data, name)
    check_chars(name, len(text), limits)
    return ((None, text),), encoding


def _load_pdf(name: str, data: bytes, limits: Limits) -> tuple[Pages, None]:
    # pypdf logs warnings about every odd object in real-world PDFs; what matters reaches us as errors.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfError(
                f"{name}: パスワードで保護された PDF です。パスワードを外して保存した PDF をアップロードしてください。"
            )
        check_pages(name, len(reader.pages), limits)  # walks the page tree; no page is parsed yet
        pages: list[tuple[int | None, str]] = []
        chars = 0
        for number, page in enumerate(reader.pages, 1):
            text = page.extract_text() or ""
            chars += len(text)
            check_chars(name, chars, limits, where=f"{number:,} ページ目までで ")
            pages.append((number, text))
    except (PdfError, ResourceLimitError):
        raise
    except (
        PyPdfError,
        DependencyError,
        DeprecationError,
        NotImplementedError,
        RecursionError,
        ArithmeticError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
    ) as error:
        # pypdf signals a damaged file with a mix of its own and built-in exceptions. Found by fuzzing
        # (tests/ingest/test_fuzz.py): a damaged filter name raises NotImplementedError, or pypdf's
        # DeprecationError when it reads as a removed alias; arrays nested a thousand deep in a page,
        # RecursionError; a huge character code in a font's widths, OverflowError.
        raise PdfError(
            f"{name}: PDF を読み取れません（{type(error).__name__}: {error}）。"
            "ファイルが壊れているか途中で切れています。元のファイルから PDF を作り直してください。"
        ) from error
    return tuple(pages), None


Loader = Callable[[str, bytes, Limits], tuple[Pages, str | None]]

_LOADERS: dict[str, Loader] = {
    **dict.fromkeys(PDF_SUFFIXES, _load_pdf),
    **dict.fromkeys(TEXT_SUFFIXES, _load_text),
}


def _loader_for(name: str) -> Loader:
    suffix = Path(name).suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        supported = "、".join(SUPPORTED_SUFFIXES)
        raise UnsupportedFileError(
            f"{name}: この形式（{suffix or '拡張子なし'}）には対応していません。対応形式: {supported}"
        )
    return loader


def load_bytes(name: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> LoadedFile:
    """Read a document given as its file name and bytes (an upload, or a file read from disk), within ``limits``."""
    loader = _loader_for(name)
    if not data:
        raise EmptyDocumentError(f"{name}: ファイルが空です（0 バイト）。")
    pages, encoding = loader(name, data, limits)
    if not any(text.strip("\x00 \t\r\n\f\u3000") for _, text in pages):
        if loader is _load_pdf:
            raise EmptyDocumentError(
                f"{name}: PDF に文字データがありません。スキャンした画像だけの PDF と思われます。"
                "OCR には対応していないため、文字を含む PDF かテキストファイルにしてください。"
            )
        raise EmptyDocumentError(f"{name}: 文字がありません（空白だけのファイルです）。")
    return LoadedFile(source=name, content_hash=content_hash(data), pages=pages, encoding=encoding)


def load_file(path: Path, source: str | None = None, limits: Limits = DEFAULT_LIMITS) -> LoadedFile:
    """Read a document from disk within ``limits``; ``source`` is the name it is stored under (the file name by default)."""
    name = source or path.name
    _loader_for(name)  # an unsupported file is refused before it is read
    return load_bytes(name, path.read_bytes(), limits)
