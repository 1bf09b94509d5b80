"""A passage where it stands in its original file: a PDF page drawn with the passage marked, or the text, rows or slide around it.

The page's dialog 「原文を開く」 asks ``view_for(kind)`` which view suits a file, then calls one of
``render_page`` (PDF and image pages, PNG bytes), ``document_view`` (text, Markdown, Word, HTML),
``rows_view`` (Excel, CSV) or ``slide_view`` (PowerPoint). Each reads the original file again, as the
indexer read it, so that a chunk's ``char_start``/``char_end`` point into the same text. Everything
returned is data: text, numbers and PNG bytes made here, never HTML.
"""

from __future__ import annotations

import bisect
import ctypes
import io
import math
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ingest.document import Place, Section
from ingest.errors import FormatError, PdfError
from ingest.limits import DEFAULT_LIMITS, Limits, check_pixels, guard_pillow
from ingest.loaders import load_bytes
from ingest.normalize import PagedText, join_sections, normalize_text
from ingest.ocr import DEFAULT_OCR, IMAGE_SUFFIXES, OcrOptions, close_japanese_spaces, garbled, run_tesseract, tesseract

if TYPE_CHECKING:
    import pypdfium2
    from PIL import Image

View = Literal["page", "rows", "slide", "text"]
"""How the dialog shows a passage: a drawn page, spreadsheet rows, a slide's lines, or the text around it."""

_VIEWS: dict[str, View] = {"pdf": "page", "image": "page", "xlsx": "rows", "csv": "rows", "pptx": "slide"}

# The marks: semi-transparent yellow over the drawn page, a little larger than the characters.
_MARK = (255, 214, 0, 110)
_PAD = 2
# A page whose text layer has fewer non-space characters than this, or a garbled one, is read by OCR
# here as the PDF reader reads it (ingest/pdf.py).
_SCANT = 10
# A sentence of the passage cut by a page break: the longest head or tail of it on the page is marked
# when at least this long; a shorter piece would match anywhere.
_MIN_PIECE = 4
# Characters at either end of a page that such a piece may leave beyond it: a running header or footer.
_EDGE = 20
# Where a passage is cut into pieces that are looked for on the page.
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|\n")
# Characters of context shown before and after a passage in ``document_view``.
CONTEXT_CHARS = 1_500
# Lines (paragraphs, headings) of context shown before a passage in ``document_view``: the view opens at
# its top, so a passage after more lines than these would be out of sight until scrolled to.
LINES_BEFORE = 3
# Where context is best cut: after a sentence's end or a line break.
_BOUNDARY = re.compile(r"[。！？!?]\s*|\n+")


def view_for(kind: str) -> View:
    """The view for a file of ``kind`` (``LoadedFile.kind``): "page" (pdf, image), "rows" (xlsx, csv),
    "slide" (pptx), "text" (any other)."""
    return _VIEWS.get(kind, "text")


# --- a page drawn with the passage marked ------------------------------------------------------------

Box = tuple[float, float, float, float]
"""A rectangle on the drawn page in pixels: left, top, right, bottom."""


@dataclass(frozen=True)
class PageImage:
    """One page of a file drawn as a PNG, the passage marked on it.

    ``page``: its number (1-based) of ``pages``. ``alt``: a Japanese description for screen readers.
    ``boxes``: how many marks were drawn (0 when the passage was not found on the page). ``ocr``: the
    marks come from Tesseract's reading of the image, the page having no usable text of its own.
    """

    png: bytes
    page: int
    pages: int
    alt: str
    boxes: int
    ocr: bool


def _compact(text: str) -> str:
    """``text`` as the marks compare it: NFKC, without white space."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _sentences(passage: str) -> list[str]:
    """The passage's sentences and lines, compacted, the empty ones left out."""
    pieces = (_compact(piece) for piece in _SENTENCE_END.split(passage))
    return [piece for piece in pieces if piece]


def _cut_piece(haystack: str, piece: str, head: bool) -> tuple[int, int] | None:
    """Where the longest head of ``piece`` ends the page (or its longest tail starts it), at least
    ``_MIN_PIECE`` characters long: the part of a sentence that a page break cut, on this page.

    Up to ``_EDGE`` characters may lie beyond it (a running header or footer, a page number, which the
    PDF reader removes from the text but the page still shows).
    """
    for length in range(len(piece) - 1, _MIN_PIECE - 1, -1):
        if head:
            start = haystack.rfind(piece[:length])
            if start >= 0 and start + length >= len(haystack) - _EDGE:
                return start, start + length
        else:
            start = haystack.find(piece[-length:])
            if 0 <= start <= _EDGE:
                return start, start + length
    return None


def _find_run(haystack: str, pieces: Sequence[str], first: int, cursor: int) -> tuple[int, int]:
    """The most pieces from ``first`` on that stand together in ``haystack`` (after ``cursor`` where they can),
    and where they start; (0, -1) when not even ``pieces[first]`` is there."""
    found = (0, -1)
    run = ""
    for count, piece in enumerate(pieces[first:], 1):
        run += piece
        start = haystack.find(run, cursor)
        if start < 0:
            start = haystack.find(run)
        if start < 0:
            break
        found = (count, start)
    return found


def passage_spans(haystack: str, passage: str) -> list[tuple[int, int]]:
    """Spans of ``haystack`` (a page's characters, compacted: NFKC, no white space) that hold the passage.

    The passage's sentences (and lines) are looked for in order, as many at a time as stand together
    on the page, so that a sentence the page repeats is marked where its neighbours are; a lone
    sentence of one character is not marked. A page break may cut the sentence just before the first
    one found (or the passage's last, when none is) and the one just after the last found (or the
    passage's first): of those, the longest tail that starts the page and head that ends it are marked
    too (``_cut_piece``). A passage that runs over a page break thus marks its part on each page, and
    a sentence of the page that merely ends like one of the passage's is not marked.
    """
    pieces = _sentences(passage)
    found: dict[int, tuple[int, int]] = {}
    index = cursor = 0
    while index < len(pieces):
        count, start = _find_run(haystack, pieces, index, cursor)
        run = "".join(pieces[index : index + count])
        if count and (count > 1 or len(run) > 1):
            for offset in range(count):
                end = start + len(pieces[index + offset])
                found[index + offset] = (start, end)
                start = end
            cursor = start
        index += max(count, 1)
    if pieces:
        first, last = (min(found), max(found)) if found else (len(pieces), -1)
        for index, head in ((first - 1, False), (last + 1, True)):
            if 0 <= index < len(pieces) and index not in found:
                cut = _cut_piece(haystack, pieces[index], head)
                if cut:
                    found[index] = cut
    return sorted(found.values())


def _marked_owners(owners: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """The owners (PDF characters, OCR words) of the compacted characters in ``spans``, in order, once each."""
    return sorted({owners[i] for start, end in spans for i in range(start, end)})


def _merged(boxes: Sequence[Box]) -> list[Box]:
    """Boxes of characters or words, in reading order, merged into one per run on a line (or 縦書き column):
    a box joins the run when it goes on from the box before it."""
    merged: list[Box] = []
    previous: Box | None = None
    for box in boxes:
        if merged and previous is not None and _goes_on(previous, box):
            last = merged[-1]
            merged[-1] = (min(last[0], box[0]), min(last[1], box[1]), max(last[2], box[2]), max(last[3], box[3]))
        else:
            merged.append(box)
        previous = box
    return merged


def _goes_on(a: Box, b: Box) -> bool:
    """Whether ``b`` follows ``a`` on its line (beside it, overlapping it vertically by half) or in its column."""
    height = max(min(a[3] - a[1], b[3] - b[1]), 1.0)
    width = max(min(a[2] - a[0], b[2] - b[0]), 1.0)
    if min(a[3], b[3]) - max(a[1], b[1]) >= height / 2:
        return -height / 2 <= b[0] - a[2] <= 2 * height
    if min(a[2], b[2]) - max(a[0], b[0]) >= width / 2:
        return -width / 2 <= b[1] - a[3] <= 2 * width
    return False


def _draw_marks(image: Image.Image, boxes: Sequence[Box]) -> bytes:
    """``image`` with semi-transparent yellow over ``boxes``, as PNG bytes."""
    from PIL import Image, ImageDraw

    page = image.convert("RGBA")
    if boxes:
        overlay = Image.new("RGBA", page.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for left, top, right, bottom in boxes:
            draw.rectangle((left - _PAD, top - _PAD, right + _PAD, bottom + _PAD), fill=_MARK)
        page = Image.alpha_composite(page, overlay)
    buffer = io.BytesIO()
    page.convert("RGB").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _alt(name: str, page: int, pages: int, boxes: int) -> str:
    return f"{name} の {page} ページ（全 {pages} ページ）" + ("、該当箇所に印" if boxes else "")


def _check_page(name: str, page: int, pages: int) -> None:
    if not 1 <= page <= pages:
        raise ValueError(f"{name}: {page} ページはありません（全 {pages} ページ）。")


def render_page(
    name: str,
    data: bytes,
    page: int,
    passage: str,
    *,
    dpi: int = 150,
    limits: Limits = DEFAULT_LIMITS,
    ocr: OcrOptions = DEFAULT_OCR,
) -> PageImage:
    """Page ``page`` (1-based) of a PDF or an image file, drawn at ``dpi``, with ``passage`` marked on it.

    Only that page is drawn, after its size is checked against ``limits.max_pixels``. The marks come
    from the PDF's own characters (pdfium's text page); a page without usable text (a scan), every
    page with ``ocr.mode`` "force", and image files are read by Tesseract in ``ocr.langs`` and the
    words of the passage marked (``ocr=True``); with ``ocr.mode`` "off" a scan is drawn unmarked.
    ``passage``: a chunk's text, as stored (normalised); how it is found: ``passage_spans``.

    Raises ``ValueError`` for a page out of range, ``PdfError`` for a PDF pdfium cannot open,
    ``ResourceLimitError`` for a page too large to draw, ``MissingToolError`` when OCR is needed and
    Tesseract is missing.
    """
    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
        return _render_image(name, data, page, passage, limits, ocr)
    import pypdfium2

    guard_pillow(limits)  # Pillow's guard is process-wide: the page is drawn within these limits, checked below

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as error:
        raise PdfError(
            f"{name}: PDF を開けません（{error}）。ファイルが壊れているか、パスワードで保護されています。"
        ) from error
    try:
        pages = len(document)
        _check_page(name, page, pages)
        pdf_page = document[page - 1]
        try:
            width, height = pdf_page.get_size()
            check_pixels(name, math.ceil(width * dpi / 72), math.ceil(height * dpi / 72), limits)
            bitmap = pdf_page.render(scale=dpi / 72)
            image = bitmap.to_pil().copy()  # the bitmap's memory is pdfium's, freed with it
            bitmap.close()
            text, boxes = _text_layer_marks(pdf_page, image.size, passage)
            read_by_ocr = ocr.mode == "force" or (ocr.mode == "auto" and not boxes and _unusable(text))
            if read_by_ocr:
                boxes = _ocr_marks(name, image, passage, ocr, dpi)
        finally:
            pdf_page.close()
    finally:
        document.close()
    return PageImage(
        _draw_marks(image, boxes), page, pages, _alt(name, page, pages, len(boxes)), len(boxes), read_by_ocr
    )


def _unusable(text: str) -> bool:
    """Whether a page's text layer is too little or too garbled to be what the index holds."""
    return len(_compact(text)) < _SCANT or garbled(text)


def _text_layer_marks(page: pypdfium2.PdfPage, size: tuple[int, int], passage: str) -> tuple[str, list[Box]]:
    """The page's text layer, and the boxes (in pixels of a drawing of ``size``) of the passage's characters in it."""
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        text = textpage.get_text_range(0, count) if count else ""
        compact: list[str] = []
        owners: list[int] = []
        for index in range(count):
            code = pdfium_c.FPDFText_GetUnicode(textpage.raw, index)
            for char in unicodedata.normalize("NFKC", chr(code)) if 0 < code < 0x110000 else "":
                if not char.isspace():
                    compact.append(char)
                    owners.append(index)
        spans = passage_spans("".join(compact), passage)
        boxes = []
        for index in _marked_owners(owners, spans):
            left, bottom, right, top = textpage.get_charbox(index, loose=True)
            if right > left and top > bottom:
                boxes.append(_to_device(page, size, left, bottom, right, top))
    finally:
        textpage.close()
    return text, _merged(boxes)


def _to_device(
    page: pypdfium2.PdfPage, size: tuple[int, int], left: float, bottom: float, right: float, top: float
) -> Box:
    """A rectangle in PDF page space in pixels of the page drawn at ``size``, as pdfium draws it (crop box, rotation)."""
    import pypdfium2.raw as pdfium_c

    corners = []
    for x, y in ((left, bottom), (right, top)):
        device_x, device_y = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, size[0], size[1], 0, x, y, device_x, device_y)
        corners.append((device_x.value, device_y.value))
    (x0, y0), (x1, y1) = corners
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _render_image(name: str, data: bytes, page: int, passage: str, limits: Limits, ocr: OcrOptions) -> PageImage:
    """Frame ``page`` of an image file, its passage marked from Tesseract's words."""
    from PIL import Image, UnidentifiedImageError

    guard_pillow(limits)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            pages = getattr(opened, "n_frames", 1)
            _check_page(name, page, pages)
            opened.seek(page - 1)
            check_pixels(name, opened.width, opened.height, limits)
            image = opened.copy()
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError) as error:
        raise FormatError(
            f"{name}: 画像として読めません（{type(error).__name__}）。PNG か JPEG で保存し直してください。"
        ) from error
    boxes = _ocr_marks(name, image, passage, ocr, None) if ocr.mode != "off" else []
    return PageImage(
        _draw_marks(image, boxes), page, pages, _alt(name, page, pages, len(boxes)), len(boxes), ocr.mode != "off"
    )


def _ocr_marks(name: str, image: Image.Image, passage: str, ocr: OcrOptions, dpi: int | None) -> list[Box]:
    """The boxes of the words of ``passage`` that Tesseract reads in ``image``: horizontal languages first,
    then every language in ``ocr.langs`` (縦書き) when those find none of the passage."""
    program = tesseract(ocr.langs, name)
    every = ocr.langs.split("+")
    horizontal = "+".join(lang for lang in every if not lang.endswith("_vert"))
    tries = [horizontal, ocr.langs] if horizontal and horizontal != ocr.langs else [ocr.langs]
    with tempfile.TemporaryDirectory(prefix="rag-view-") as folder:
        png = Path(folder) / "page.png"
        image.convert("L").save(png, format="PNG", compress_level=1, **({"dpi": (dpi, dpi)} if dpi else {}))
        for langs in tries:
            words = _ocr_words(program, name, png, langs)
            compact: list[str] = []
            owners: list[int] = []
            for index, (word, _) in enumerate(words):
                for char in _compact(close_japanese_spaces(word)):
                    compact.append(char)
                    owners.append(index)
            marked = _marked_owners(owners, passage_spans("".join(compact), passage))
            if marked:
                return _merged([words[index][1] for index in marked])
    return []


def _ocr_words(program: str, name: str, png: Path, langs: str) -> list[tuple[str, Box]]:
    """The words Tesseract reads in ``png`` (its ``tsv`` output, level 5), with their boxes, in reading order."""
    out = png.with_name(f"words-{langs.replace('+', '_')}")
    run_tesseract(program, name, png, out, langs, ("tsv",))
    words = []
    for row in out.with_suffix(".tsv").read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = row.split("\t", 11)
        if len(fields) == 12 and fields[0] == "5" and fields[11].strip():
            left, top, width, height = (float(value) for value in fields[6:10])
            words.append((fields[11].strip(), (left, top, left + width, top + height)))
    return words


# --- the text, rows or slide around a passage ----------------------------------------------------------


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
