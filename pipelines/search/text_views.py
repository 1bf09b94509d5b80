"""A passage in the text, rows or slide around it, its file read again as the indexer read it."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.document import Place, Section
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.loaders import load_bytes
from ingest.normalize import PagedText, join_sections, normalize_text
from ingest.ocr import OcrOptions

# Characters of context shown before and after a passage in ``document_view``.
CONTEXT_CHARS = 1_500
# Lines (paragraphs, headings) of context shown before a passage in ``document_view``: the view opens at
# its top, so a passage after more lines than these would be out of sight until scrolled to.
LINES_BEFORE = 3
# Where context is best cut: after a sentence's end or a line break.
_BOUNDARY = re.compile(r"[。！？!?]\s*|\n+")


@dataclass(frozen=True)
class TextView:
    """A passage in its document's text: up to ``CONTEXT_CHARS`` before and after it, and where it is."""

    before: str
    passage: str
    after: str
    place: Place


@dataclass(frozen=True)
class SheetRows:
    """The rows of one sheet (or of a CSV file, ``sheet`` None) around a passage.

    ``rows``: ``(row number, the row's text with its 列名: 値 lines joined by " ／ ", whether the row is
    part of the passage)``, in order.
    """

    sheet: str | None
    rows: list[tuple[int, str, bool]]


@dataclass(frozen=True)
class RowsView:
    """The rows around a passage, sheet by sheet: one sheet, or each that a passage running over several covers, in order."""

    sheets: list[SheetRows]


@dataclass(frozen=True)
class SlideView:
    """The slide a passage is on (the first, when it runs over several): each text line and whether it is in the passage."""

    slide: int
    lines: list[tuple[str, bool]]


@dataclass(frozen=True)
class _Reread:
    """A file read again as the indexer read it: its sections that have text, and its normalised text."""

    sections: tuple[Section, ...]
    paged: PagedText

    def span(self, index: int) -> tuple[int, int]:
        """The span of section ``index`` in the normalised text, the blank line after it left out."""
        start = self.paged.starts[index]
        end = self.paged.starts[index + 1] if index + 1 < len(self.sections) else len(self.paged.text)
        return start, start + len(self.paged.text[start:end].rstrip())

    def touched(self, char_start: int, char_end: int) -> list[int]:
        """The sections that hold any of ``char_start:char_end``; a span of only the blank line between two
        sections touches the one before it."""
        spans = [self.span(index) for index in range(len(self.sections))]
        touched = [index for index, (start, end) in enumerate(spans) if start < char_end and char_start < end]
        return touched or [max(bisect.bisect_right(self.paged.starts, char_start) - 1, 0)]


def _reread(
    name: str,
    data: bytes,
    char_start: int,
    char_end: int,
    limits: Limits,
    ocr: OcrOptions | None,
    expected: str | None,
) -> _Reread:
    """The file read again, checked to hold the passage at ``char_start:char_end`` (``expected``, when given)."""
    sections = load_bytes(name, data, limits, ocr).sections
    # join_sections leaves out the sections with no text once normalised; the rest line up with its places
    kept = tuple(section for section in sections if normalize_text(section.text))
    paged = join_sections(kept)
    if not 0 <= char_start < char_end <= len(paged.text):
        raise ValueError(
            f"{name}: 箇所 {char_start}–{char_end} は文書の外です（文書は {len(paged.text):,} 文字）。"
            "索引を作った後にファイルが変わったおそれがあります。索引を作り直してください。"
        )
    if expected is not None and paged.text[char_start:char_end] != expected:
        raise ValueError(
            f"{name}: 箇所 {char_start}–{char_end} の文字が索引の本文と一致しません。"
            "索引を作った後にファイルか読み取り方が変わったおそれがあります。索引を作り直してください。"
        )
    return _Reread(kept, paged)


def _cut_before(text: str) -> str:
    """``text`` from just after its first sentence end or line break, when it has one before its last character."""
    found = _BOUNDARY.search(text)
    return text[found.end() :] if found and found.end() < len(text) else text


def _last_lines(text: str, count: int) -> str:
    """``text`` from the start of its last ``count`` lines that hold text (blank lines between them kept)."""
    starts = [found.start() for found in re.finditer(r"^[^\n]", text, re.M)]
    if len(starts) <= count:
        return text
    return text[starts[-count] :] if count else ""


def _cut_after(text: str) -> str:
    """``text`` up to its last sentence end or line break, when it has one."""
    ends = [found.end() for found in _BOUNDARY.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else text


def document_view(
    name: str,
    data: bytes,
    char_start: int,
    char_end: int,
    *,
    limits: Limits = DEFAULT_LIMITS,
    ocr: OcrOptions | None = None,
    expected: str | None = None,
    context: int = CONTEXT_CHARS,
    lines_before: int = LINES_BEFORE,
) -> TextView:
    """The passage ``char_start:char_end`` of a file's normalised text, with up to ``context`` characters either side.

    The file is read again (``load_bytes``, ``join_sections``) as the indexer read it. Context cut short
    starts after a sentence end or line break and stops at one, where it holds one, so that it shows
    whole sentences; the start and end of the document are shown as they are. Before the passage come
    at most ``lines_before`` lines (the line the passage starts in counted when it starts mid-line), so
    that a view opened at its top shows the passage without scrolling. ``expected``: the stored chunk
    text; a passage that differs raises ``ValueError``, as does a span outside the text.
    """
    if lines_before < 0:
        raise ValueError(f"lines_before must be 0 or more, got {lines_before}")
    paged = _reread(name, data, char_start, char_end, limits, ocr, expected).paged
    text = paged.text
    head = text[max(char_start - context, 0) : char_start]
    tail = text[char_end : char_end + context]
    before = _last_lines(head if char_start <= context else _cut_before(head), lines_before)
    after = tail if char_end + context >= len(text) else _cut_after(tail)
    return TextView(before, text[char_start:char_end], after, paged.place_of(char_start, char_end))


def _lines(section: Section, start: int) -> Iterator[tuple[str, int, int]]:
    """Each line of ``section`` normalised, and its span in the document's text, where the section's
    normalised text starts at ``start``. ``normalize_text`` may join a section's lines into one, so the
    lines are found in it in order; a line not found (normalised differently alone) gets an empty span."""
    whole = normalize_text(section.text)
    cursor = 0
    for raw in section.text.splitlines():
        line = normalize_text(raw)
        if not line:
            continue
        found = whole.find(line, cursor)
        if found < 0:
            yield line, start + cursor, start + cursor
            continue
        cursor = found + len(line)
        yield line, start + found, start + cursor


def rows_view(
    name: str,
    data: bytes,
    char_start: int,
    char_end: int,
    *,
    around: int = 5,
    limits: Limits = DEFAULT_LIMITS,
    expected: str | None = None,
) -> RowsView:
    """The rows of an Excel workbook or CSV file that hold the passage ``char_start:char_end``, with up to
    ``around`` rows before and after them in their sheet: for each sheet the passage covers, in order.

    Rows are those with text (an empty row is not read, so it is not counted); a row is marked when
    any of its text is in the passage. ``expected``: as ``document_view``.
    """
    if around < 0:
        raise ValueError(f"around must be 0 or more, got {around}")
    read = _reread(name, data, char_start, char_end, limits, None, expected)
    touched = read.touched(char_start, char_end)
    sheets = []
    for sheet in dict.fromkeys(read.sections[index].place.sheet for index in touched):
        same = [index for index, section in enumerate(read.sections) if section.place.sheet == sheet]
        marked = [same.index(index) for index in touched if index in same]
        shown = same[max(marked[0] - around, 0) : marked[-1] + around + 1]
        rows = []
        for index in shown:
            section = read.sections[index]
            text = " ／ ".join(line for line, _, _ in _lines(section, read.paged.starts[index]))
            rows.append((section.place.row or 0, text, index in touched))
        sheets.append(SheetRows(sheet, rows))
    return RowsView(sheets)


def slide_view(
    name: str,
    data: bytes,
    char_start: int,
    char_end: int,
    *,
    limits: Limits = DEFAULT_LIMITS,
    expected: str | None = None,
    slide: int | None = None,
) -> SlideView:
    """A slide of a PowerPoint file that the passage ``char_start:char_end`` is on: each of its text lines
    (the notes last, as 「ノート: …」) and whether the line is in the passage.

    ``slide``: which of the passage's slides (the one its sentence closest to the question is on); the
    slide it starts on when None or not one of them. ``expected``: as ``document_view``.
    """
    read = _reread(name, data, char_start, char_end, limits, None, expected)
    slides = [read.sections[index].place.slide for index in read.touched(char_start, char_end)]
    slide = slide if slide in slides else slides[0]
    if slide is None:
        raise ValueError(f"{name}: スライドのあるファイルではありません。")
    lines = []
    for index, section in enumerate(read.sections):
        if section.place.slide == slide:
            for line, start, end in _lines(section, read.paged.starts[index]):
                lines.append((line, start < char_end and char_start < end))
    return SlideView(slide, lines)
