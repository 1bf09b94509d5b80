"""Loaders: from a file's name and bytes to its text in sections, each with its place in the original.

One reader per format (``FORMATS``), chosen by the file's extension: PDF (pages, OCR for scanned
ones), text and Markdown in a detected Japanese encoding, Word, Excel, PowerPoint, HTML, CSV, images
(OCR), and legacy .doc/.xls/.ppt through LibreOffice. Each keeps to ``Limits``: pages, characters,
pixels and ZIP contents are checked before the work they would cost; a file over a limit is refused.
Readers are imported when first used, so a process that reads only text never imports Office libraries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.document import Place, Reading, Section
from ingest.encoding import decode_within
from ingest.errors import EmptyDocumentError, UnsupportedFileError
from ingest.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from ingest.ocr import OcrOptions


@dataclass(frozen=True)
class LoadedFile:
    """A file's text in sections (pages, slides, rows, blocks under headings), before normalisation.

    ``kind``: the format it was read as (``pdf``, ``docx``, …). ``notes``: what the reader wants the
    person to know (pages read by OCR, a conversion), shown beside the file's result.
    """

    source: str
    content_hash: str
    sections: tuple[Section, ...]
    encoding: str | None = None
    kind: str = "text"
    notes: tuple[str, ...] = ()

    @property
    def pages(self) -> int:
        """How many pages (PDF, scanned image) or slides the file has text on; 0 for files without pages."""
        return len({s.place.page or s.place.slide for s in self.sections} - {None})


def content_hash(data: bytes) -> str:
    """The hex SHA-256 of a file's bytes: a document's identity."""
    return hashlib.sha256(data).hexdigest()


def _read_text(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    text, encoding = decode_within(name, data, limits)
    return Reading((Section(text),), encoding)


# An ATX heading (# to ######) and a code fence, which hides headings until it closes.
_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_MD_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_sections(text: str) -> tuple[Section, ...]:
    """Markdown cut at its ``#`` headings, each part under the path of headings above it.

    A heading belongs to its own part (the path ends with it); lines in a fenced code block are never
    headings. Setext headings (a line underlined with === or ---) are read as text.
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fence: str | None = None

    def close() -> None:
        if "".join(lines).strip():
            sections.append(Section("\n".join(lines), Place(heading=tuple(title for _, title in path))))
        lines.clear()

    for line in text.splitlines():
        opened = _MD_FENCE.match(line)
        if opened and (fence is None or opened.group(1) == fence):
            fence = opened.group(1) if fence is None else None
        heading = _MD_HEADING.match(line) if fence is None and not opened else None
        if heading and heading.group(2).strip():
            close()
            level = len(heading.group(1))
            path[:] = [(lv, title) for lv, title in path if lv < level]
            path.append((level, heading.group(2).strip()))
        lines.append(line)
    close()
    return tuple(sections)


def _read_markdown(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    text, encoding = decode_within(name, data, limits)
    return Reading(markdown_sections(text), encoding)


def _read_pdf(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.pdf import read_pdf

    return read_pdf(name, data, limits, options)


def _read_image(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.ocr import read_image

    return read_image(name, data, limits, options)


def _read_docx(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.office import read_docx

    return read_docx(name, data, limits)


def _read_xlsx(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.office import read_xlsx

    return read_xlsx(name, data, limits)


def _read_pptx(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.office import read_pptx

    return read_pptx(name, data, limits)


def _read_html(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.web import read_html

    return read_html(name, data, limits)


def _read_csv(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    from ingest.tables import read_csv

    return read_csv(name, data, limits)


Read = Callable[[str, bytes, Limits, "OcrOptions"], Reading]


@dataclass(frozen=True)
class Format:
    """A kind of file the loaders read: its suffixes, its reader, and what it is called on the page."""

    kind: str
    label: str
    suffixes: tuple[str, ...]
    read: Read


FORMATS = (
    Format("pdf", "PDF", (".pdf",), _read_pdf),
    Format("text", "テキスト", (".txt", ".text"), _read_text),
    Format("markdown", "Markdown", (".md", ".markdown"), _read_markdown),
    Format("docx", "Word", (".docx", ".docm"), _read_docx),
    Format("xlsx", "Excel", (".xlsx", ".xlsm"), _read_xlsx),
    Format("pptx", "PowerPoint", (".pptx", ".pptm"), _read_pptx),
    Format("html", "HTML", (".html", ".htm"), _read_html),
    Format("csv", "CSV", (".csv", ".tsv"), _read_csv),
    Format("image", "画像（OCR）", (".png", ".jpg", ".jpeg", ".tif", ".tiff"), _read_image),
)
# Formats whose line breaks are all meant, never wraps in the middle of a sentence (Section.wrapped).
_LINES_MEANT = frozenset({"docx", "xlsx", "pptx", "html", "csv"})
# Legacy Office files, converted by LibreOffice to the format after the arrow, then read as it.
LEGACY = {".doc": ".docx", ".xls": ".xlsx", ".ppt": ".pptx"}
_BY_SUFFIX = {suffix: f for f in FORMATS for suffix in f.suffixes}
SUPPORTED_SUFFIXES = (*_BY_SUFFIX, *LEGACY)


def supported(name: str) -> bool:
    """Whether a file of this name is one the loaders read (by its extension)."""
    return Path(name).suffix.lower() in SUPPORTED_SUFFIXES


def unsupported_reason(name: str) -> str:
    """Why a file is not read, for a folder walk's スキップ line and an upload's 失敗."""
    suffix = Path(name).suffix.lower()
    return f"対応していない形式（{suffix or '拡張子なし'}）"


def _lookup(name: str) -> Format | None:
    suffix = Path(name).suffix.lower()
    return _BY_SUFFIX.get(LEGACY.get(suffix, suffix))


def kind_of(name: str) -> str:
    """The kind of file a name says it is (``pdf``, ``docx``, …; legacy ``.doc`` is ``docx``), by its
    extension; ``text`` for a name no reader takes."""
    found = _lookup(name)
    return found.kind if found else "text"


def _format_for(name: str) -> Format:
    found = _lookup(name)
    if found is None:
        supported = "、".join(SUPPORTED_SUFFIXES)
        raise UnsupportedFileError(f"{name}: {unsupported_reason(name)}のため読めません。対応形式: {supported}")
    return found


def load_bytes(name: str, data: bytes, limits: Limits = DEFAULT_LIMITS, ocr: OcrOptions | None = None) -> LoadedFile:
    """Read a document given as its file name and bytes (an upload, or a file read from disk), within ``limits``.

    ``ocr``: whether and how scanned pages and images are recognised (``ingest.ocr.OcrOptions``).
    """
    fmt = _format_for(name)
    if not data:
        raise EmptyDocumentError(f"{name}: ファイルが空です（0 バイト）。")
    if ocr is None:
        from ingest.ocr import OcrOptions

        ocr = OcrOptions()
    notes: tuple[str, ...] = ()
    read_name, read_data = name, data
    suffix = Path(name).suffix.lower()
    if suffix in LEGACY:
        from ingest.legacy import convert_legacy

        read_name, read_data = convert_legacy(name, data, limits)
        notes = (f"LibreOffice で {LEGACY[suffix]} に変換して読みました",)
    reading = fmt.read(read_name, read_data, limits, ocr)
    if fmt.kind in _LINES_MEANT:
        sections = tuple(dataclasses.replace(s, wrapped=False) for s in reading.sections)
        reading = dataclasses.replace(reading, sections=sections)
    if not any(s.text.strip("\x00 \t\r\n\f\u3000") for s in reading.sections):
        raise EmptyDocumentError(f"{name}: 文字がありません（空白だけのファイルです）。")
    return LoadedFile(
        source=name,
        content_hash=content_hash(data),
        sections=reading.sections,
        encoding=reading.encoding,
        kind=fmt.kind,
        notes=notes + reading.notes,
    )


def load_file(
    path: Path, source: str | None = None, limits: Limits = DEFAULT_LIMITS, ocr: OcrOptions | None = None
) -> LoadedFile:
    """Read a document from disk within ``limits``; ``source`` is the name it is stored under (the file name by default)."""
    name = source or path.name
    _format_for(name)  # an unsupported file is refused before it is read
    return load_bytes(name, path.read_bytes(), limits, ocr)
