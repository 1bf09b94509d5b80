"""Word, Excel and PowerPoint files (.docx/.docm, .xlsx/.xlsm, .pptx/.pptm) read into sections in reading order.

Each reader checks the ZIP container first (``check_zip``: zip bombs, too many parts), opens the bytes
with its library (python-docx, openpyxl, python-pptx), counts the characters of the text it makes
against ``Limits.max_chars``, and turns whatever the library raises on a damaged file into a
``FormatError`` that names the file. Sections are raw text; normalisation comes later.

- Word: paragraphs and table rows in document order under their heading path (``Place.heading``),
  text boxes after the paragraph that anchors them; page headers once at the start, footnotes,
  endnotes and page footers once at the end.
- Excel: every worksheet (hidden ones too), one section per row (``Place(sheet=…, row=…)``); a sheet
  laid out as a table gives ``列名: 値`` lines, a grid (方眼紙) its cells left to right.
- PowerPoint: per slide (``Place(slide=…)``) the title, the other shapes top to bottom and left to
  right (groups, tables and chart titles included), then the speaker notes as 「ノート: …」.
"""

from __future__ import annotations

import bisect
import datetime
import io
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from xml.etree.ElementTree import ParseError

import docx.exceptions
import docx.opc.exceptions
import openpyxl
import openpyxl.utils.exceptions
import pptx
import pptx.exc
from docx.document import Document as WordDocument
from docx.opc.constants import CONTENT_TYPE as WORD_CT
from docx.opc.constants import RELATIONSHIP_TYPE as WORD_RT
from docx.opc.part import PartFactory, XmlPart
from docx.oxml.ns import nsmap
from docx.oxml.parser import parse_xml
from docx.package import Package
from docx.parts.document import DocumentPart
from lxml import etree
from openpyxl.utils.cell import range_boundaries
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape

from ingest.document import Place, Reading, Section
from ingest.errors import FormatError, IngestError, ResourceLimitError
from ingest.limits import Limits, check_chars, check_zip

# What the three libraries raise on a damaged file or one that is not what its extension says: their
# own errors, the XML parsers', zipfile's and zlib's, and the built-in ones they let through from a
# missing part (KeyError), an attribute that does not parse (ValueError, TypeError) or a cut-off part.
_DAMAGE: tuple[type[BaseException], ...] = (
    docx.opc.exceptions.OpcError,
    docx.exceptions.PythonDocxError,
    pptx.exc.PythonPptxError,
    openpyxl.utils.exceptions.InvalidFileException,
    openpyxl.utils.exceptions.CellCoordinatesException,
    openpyxl.utils.exceptions.IllegalCharacterError,
    etree.Error,
    ParseError,  # openpyxl reads worksheets with the standard library's parser
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AttributeError,
    ArithmeticError,
    RecursionError,
    NotImplementedError,
    EOFError,
    OSError,
)


@contextmanager
def _unreadable_as(name: str, what: str, app: str) -> Iterator[None]:
    """Turn a library's error on a damaged file into a ``FormatError``; our own ``IngestError``s pass."""
    try:
        yield
    except IngestError:
        raise
    except _DAMAGE as error:
        raise FormatError(
            f"{name}: {what}として読めません（{type(error).__name__}: {error}）。"
            f"ファイルが壊れているか、拡張子と中身が合っていません。{app} で開いて保存し直してください。"
        ) from error


class _Sections:
    """The sections of one file as they are read, their characters counted against ``limits.max_chars``."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.chars = 0
        self.sections: list[Section] = []

    def add(self, text: str, place: Place, where: str = "") -> None:
        """Keep a section unless it is blank, refusing the file once its text passes the limit."""
        if not text.strip():
            return
        self.chars += len(text)
        check_chars(self.name, self.chars, self.limits, where)
        self.sections.append(Section(text, place))

    def reading(self, notes: Sequence[str] = ()) -> Reading:
        return Reading(tuple(self.sections), notes=tuple(notes))


def _table_texts(rows: Sequence[Sequence[tuple[int, str]]]) -> Iterator[str]:
    """A table's rows as texts, given each row's cells as ``(column, text)`` without empty or repeated cells.

    The first row is the header: each later row becomes lines ``列名: 値`` (a cell under an empty
    header cell is its value alone). A table of one row, or with an empty header, gives each row's
    cells joined with `` | ``.
    """
    header = {column: " ".join(text.split()) for column, text in rows[0] if text.strip()} if rows else {}
    if len(rows) < 2 or not header:
        for row in rows:
            yield " | ".join(text for _, text in row if text.strip())
        return
    for row in rows[1:]:
        yield _record(header, row)


def _record(header: dict[int, str], cells: Iterable[tuple[int, str]]) -> str:
    """A row of a table with a header: one line ``列名: 値`` a cell, empty cells left out."""
    lines = []
    for column, text in cells:
        if text.strip():
            label = header.get(column)
            lines.append(f"{label}: {text}" if label else text)
    return "\n".join(lines)


# Word


def _w(tag: str) -> str:
    return f"{{{nsmap['w']}}}{tag}"


_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_W_P, _W_TBL, _W_SDT, _W_TXBX = _w("p"), _w("tbl"), _w("sdt"), _w("txbxContent")
_W_VAL, _W_TYPE = _w("val"), _w("type")
# Elements under a paragraph that hold no text of the final document, or text read elsewhere: its
# properties (tab stops, a section break), deleted and moved-away runs, field codes, and the VML copy
# of a text box that Word writes after the DrawingML one for old readers.
_NOT_TEXT = frozenset({_w("pPr"), _w("rPr"), _w("del"), _w("moveFrom"), _w("instrText"), _MC_FALLBACK})
_CHARS = {_w("tab"): "\t", _w("ptab"): "\t", _w("br"): "\n", _w("cr"): "\n", _w("noBreakHyphen"): "-"}
# Block-level wrappers whose content is read as if it stood in their place.
_WRAPPERS = frozenset({_w("sdtContent"), _w("customXml"), _w("ins"), _w("moveTo"), _w("smartTag")})


def _path(expression: str) -> etree.XPath:
    # Compiled with its namespace: python-docx's own element.xpath() knows it, but not every element
    # (a content control, a footnote) is one of python-docx's classes.
    return etree.XPath(expression, namespaces={"w": nsmap["w"]})


_OUTLINE_LEVEL = _path("string(w:pPr/w:outlineLvl/@w:val)")
_PARAGRAPH_STYLE = _path("string(w:pPr/w:pStyle/@w:val)")
_STYLE_NAME = _path("string(w:name/@w:val)")
_BASED_ON = _path("string(w:basedOn/@w:val)")
_DEFAULT_STYLE = _path("w:style[@w:type='paragraph' and @w:default='1']")
_CONTENTS = _path("w:sdtPr/w:docPartObj/w:docPartGallery[@w:val='Table of Contents']")
_ROWS = _path("w:tr | w:sdt/w:sdtContent/w:tr | w:customXml/w:tr")
_CELLS = _path("w:tc | w:sdt/w:sdtContent/w:tc | w:customXml/w:tc")
_GRID_BEFORE = _path("string(w:trPr/w:gridBefore/@w:val)")
_GRID_SPAN = _path("string(w:tcPr/w:gridSpan/@w:val)")
_VERTICAL_MERGE = _path("w:tcPr/w:vMerge")
_SECTION_PROPERTIES = _path(".//w:sectPr[not(ancestor::w:sectPrChange)]")
_HEADERS = _path("w:headerReference")
_FOOTERS = _path("w:footerReference")
_HEADING_STYLE = re.compile(r"(?:heading|見出し)\s*([1-9])", re.IGNORECASE)
_TITLE_STYLES = frozenset({"title", "表題"})
# python-docx opens only .docx; a macro-enabled .docm holds the same document part under this type.
_DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"
_WORD_MAIN = frozenset({WORD_CT.WML_DOCUMENT_MAIN, _DOCM_MAIN})


def _decimal(value: str | None, default: int) -> int:
    return int(value) if value and value.isdecimal() and len(value) < 10 else default


def _outline_level(element: Any) -> int | None:
    """The outline level under ``w:pPr`` as a heading level (1 for level 0); None if unset or body text (9)."""
    value = _OUTLINE_LEVEL(element)
    level = _decimal(value, 9)
    return level + 1 if level < 9 else None


def _style_levels(styles: Any) -> tuple[dict[str, int | None], int | None]:
    """The heading level of each paragraph style by id (0 for a title), and that of the default style.

    A style is a heading by its name (Heading 1, 見出し 1, Title, 表題) or its outline level, or
    because the style it is based on is one.
    """
    by_id = {
        style.get(_w("styleId")): style
        for style in styles.iterchildren(_w("style"))
        if style.get(_w("type"), "paragraph") == "paragraph"
    }

    def level(style: Any, seen: set[str]) -> int | None:
        name = " ".join(_STYLE_NAME(style).split())
        heading = _HEADING_STYLE.fullmatch(name)
        if heading:
            return int(heading[1])
        if name.lower() in _TITLE_STYLES:
            return 0
        own = _outline_level(style)
        if own is not None:
            return own
        base = _BASED_ON(style)
        if base in by_id and base not in seen:  # a style based on itself, directly or not, ends here
            return level(by_id[base], seen | {base})
        return None

    levels = {style_id: level(style, {style_id}) for style_id, style in by_id.items()}
    defaults = _DEFAULT_STYLE(styles)
    return levels, level(defaults[0], set()) if defaults else None


class _WordReader:
    """Blocks of a Word document's stories (body, header, footnote) as text, with heading levels."""

    def __init__(self, styles: Any) -> None:
        self.levels, self.default_level = _style_levels(styles)

    def heading_level(self, paragraph: Any) -> int | None:
        """0 for a title, 1 for 見出し 1 and so on; None for a paragraph that is not a heading.

        A paragraph's own outline level comes first (9, body text, makes any style's paragraph text),
        then its style's.
        """
        own = _OUTLINE_LEVEL(paragraph)
        if own:
            return _outline_level(paragraph)
        style = _PARAGRAPH_STYLE(paragraph)
        return self.levels.get(style) if style else self.default_level

    def blocks(self, container: Any) -> Iterator[tuple[str, int | None]]:
        """The text of each paragraph and table row under ``container`` in order, with its heading level.

        A text box's paragraphs follow the paragraph that anchors it; a table of contents is left out,
        as it repeats the headings.
        """
        for child in container.iterchildren():
            if child.tag == _W_P:
                boxes: list[Any] = []
                text = "".join(_paragraph_text(child, boxes))
                yield text, self.heading_level(child) if text.strip() else None
                for box in boxes:
                    yield from self.blocks(box)
            elif child.tag == _W_TBL:
                yield from ((text, None) for text in _table_texts(self.table_rows(child)))
            elif child.tag == _W_SDT:
                if _CONTENTS(child):
                    continue
                yield from self.blocks(child)
            elif child.tag in _WRAPPERS:
                yield from self.blocks(child)

    def text(self, container: Any) -> str:
        """All the text under ``container`` (a table cell, a footnote), its blocks on separate lines."""
        return "\n".join(text for text, _ in self.blocks(container) if text.strip())

    def table_rows(self, table: Any) -> list[list[tuple[int, str]]]:
        """A table's rows as ``(grid column, text)`` cells: a cell spanning columns once, a cell merged
        down from the row above repeated in each row it covers (as Word shows it in each)."""
        rows = []
        started: dict[int, str] = {}  # grid column -> text of the cell a vertical merge starts with
        for row in _ROWS(table):
            column = _decimal(_GRID_BEFORE(row), 0)
            cells = []
            for cell in _CELLS(row):
                merge = _VERTICAL_MERGE(cell)
                if merge and merge[0].get(_W_VAL, "continue") == "continue":
                    text = started.get(column, "")
                else:
                    text = started[column] = self.text(cell)
                cells.append((column, text))
                column += max(_decimal(_GRID_SPAN(cell), 1), 1)
            rows.append(cells)
        return rows


def _paragraph_text(element: Any, boxes: list[Any]) -> Iterator[str]:
    """The pieces of a paragraph's text; the text boxes found in it are added to ``boxes``, not read."""
    for child in element.iterchildren():
        tag = child.tag
        if not isinstance(tag, str) or tag in _NOT_TEXT:  # comments and processing instructions too
            continue
        if tag == _w("t"):
            yield child.text or ""
        elif tag in _CHARS:
            yield _CHARS[tag]
        elif tag == _W_TXBX:
            boxes.append(child)
        else:
            yield from _paragraph_text(child, boxes)


def _open_word(name: str, data: bytes) -> WordDocument:
    # The .docm content type is mapped to python-docx's document part (once for the process; python-docx
    # maps its own types the same way when imported) and the package opened as docx.Document opens it.
    PartFactory.part_type_for.setdefault(_DOCM_MAIN, DocumentPart)
    part = Package.open(io.BytesIO(data)).main_document_part
    if part.content_type not in _WORD_MAIN or not isinstance(part, DocumentPart):
        raise FormatError(
            f"{name}: Word 文書ではありません（本文の種類: {part.content_type}）。"
            "拡張子と中身が合っていません。Word で開いて .docx として保存し直してください。"
        )
    return part.document


# An OLE2 compound file: what Office writes for a password-protected file (the encrypted package inside),
# and what a legacy .doc/.xls/.ppt is.
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _check_package(name: str, data: bytes, limits: Limits) -> None:
    """``check_zip``, after a clearer refusal for the one kind of non-ZIP file Office itself writes."""
    if data.startswith(_OLE2):
        raise FormatError(
            f"{name}: パスワードで保護された Office ファイルか、古い形式（.doc / .xls / .ppt）のファイルです。"
            "パスワードを外して保存し直すか、古い形式なら拡張子を .doc / .xls / .ppt にしてください。"
        )
    check_zip(name, data, limits)


def read_docx(name: str, data: bytes, limits: Limits) -> Reading:
    """Read a Word document (.docx, .docm): its blocks in order, each under its path of headings.

    A heading (style 見出し N / Heading N, 表題 / Title, or an outline level) is a section of its own
    whose path ends with it; a level-N heading replaces the path's entries of level N and deeper.
    A table's first row is its header and each later row a section of ``列名: 値`` lines. After the
    body come the footnotes and endnotes, under 「脚注」 / 「文末脚注」, then the page headers and
    footers, each distinct text once (page numbers left out), under 「ヘッダー」 / 「フッター」: at the
    end, so that the first passage is placed under the body's first headings, not under the header.
    """
    _check_package(name, data, limits)
    out = _Sections(name, limits)
    with _unreadable_as(name, "Word 文書", "Word"):
        document = _open_word(name, data)
        part = document.part
        reader = _WordReader(document.styles.element)
        body = document.element.body
        headers, footers = _page_margins(part, body, reader)
        path: list[tuple[int, str]] = []
        for text, level in reader.blocks(body):
            if level is not None and text.strip():
                path[:] = [(lv, title) for lv, title in path if lv < level]
                path.append((level, " ".join(text.split())))
            out.add(text, Place(heading=tuple(title for _, title in path)))
        for reltype, label, tag in (
            (WORD_RT.FOOTNOTES, "脚注", _w("footnote")),
            (WORD_RT.ENDNOTES, "文末脚注", _w("endnote")),
        ):
            for rel in part.rels.values():
                if rel.reltype == reltype and not rel.is_external:
                    notes = parse_xml(rel.target_part.blob)
                    for note in notes.iterchildren(tag):
                        if note.get(_W_TYPE, "normal") == "normal":  # not the separator lines
                            out.add(reader.text(note), Place(heading=(label,)))
        for text in headers:
            out.add(text, Place(heading=("ヘッダー",)))
        for text in footers:
            out.add(text, Place(heading=("フッター",)))
    return out.reading()


def _page_margins(part: Any, body: Any, reader: _WordReader) -> tuple[list[str], list[str]]:
    """The distinct texts of the page headers and footers of every section, in order.

    Blocks without a letter (a page number, 「- 1 -」) are left out: what a field showed when the file
    was saved, not content.
    """
    headers: dict[str, None] = {}
    footers: dict[str, None] = {}
    for properties in _SECTION_PROPERTIES(body):
        for references, texts in ((_HEADERS, headers), (_FOOTERS, footers)):
            for reference in references(properties):
                story = part.related_parts.get(reference.get(f"{{{nsmap['r']}}}id"))
                if isinstance(story, XmlPart):
                    for text, _ in reader.blocks(story.element):
                        if any(char.isalpha() for char in text):
                            texts.setdefault(text)
    return list(headers), list(footers)


# Excel

# A sheet is a table when its header row is among its first few non-empty rows, has at least this many
# cells, and this share of them are text; when this share of the cells below lie under the header;
# and when at most this share of its data rows have a merge across columns.
_HEADER_SEARCH = 3
_MIN_COLUMNS = 3
_TEXT_SHARE = 0.8
_UNDER_HEADER_SHARE = 0.8
_WIDE_MERGE_SHARE = 0.1
# Columns at most this wide (in characters) are a grid's squares (方眼紙); half the used ones make a grid.
_NARROW_WIDTH = 4.0
_EXCEL_ROWS, _EXCEL_COLUMNS = 1_048_576, 16_384

_Row = dict[int, tuple[str, bool]]  # column -> (text, whether the value was a string)


def _cell_text(value: object) -> str:
    """A cell's value as Excel shows it by default: dates as YYYY-MM-DD (HH:MM), whole numbers without
    ``.0``, others to 15 significant digits, TRUE/FALSE."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return value.isoformat(timespec="seconds" if value.second else "minutes")
    if isinstance(value, datetime.timedelta):
        minutes = round(value.total_seconds() / 60)
        return f"{minutes // 60}:{minutes % 60:02d}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.15g}"
    return str(value).strip()


def _count_merged_cells(data: bytes) -> int:
    """The cells covered by the merges (``<mergeCell ref=…>``) in all the XML parts of a workbook."""
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if not info.filename.lower().endswith(".xml"):
                continue
            with archive.open(info) as stream:
                try:
                    for _, element in etree.iterparse(
                        stream, tag="{*}mergeCell", resolve_entities=False, no_network=True
                    ):
                        first_column, first_row, last_column, last_row = range_boundaries(element.get("ref", ""))
                        rows = (last_row or _EXCEL_ROWS) - (first_row or 1) + 1
                        total += rows * ((last_column or _EXCEL_COLUMNS) - (first_column or 1) + 1)
                        element.clear()
                except etree.XMLSyntaxError:
                    continue  # a damaged part is for openpyxl to report
    return total


def _sheet_rows(sheet: Any) -> dict[int, _Row]:
    """The non-empty cells of a sheet, row by row, left to right (a merge's value is in its first cell)."""
    rows: dict[int, _Row] = {}
    # The worksheet's own cells, not iter_rows: iter_rows walks (and creates) every position up to
    # max_row × max_column, which one stray formatted cell at XFD1048576 makes 17 billion.
    for (row, column), cell in sorted(sheet._cells.items()):
        text = _cell_text(cell.value)
        if text:
            rows.setdefault(row, {})[column] = (text, isinstance(cell.value, str))
    return rows


def _narrow_columns(sheet: Any) -> set[int]:
    narrow: set[int] = set()
    for dimension in sheet.column_dimensions.values():
        if dimension.width and dimension.width <= _NARROW_WIDTH and dimension.min and dimension.max:
            narrow.update(range(dimension.min, min(dimension.max, _EXCEL_COLUMNS) + 1))
    return narrow


def _table_header(rows: dict[int, _Row], merges: Sequence[Any], narrow: set[int]) -> int | None:
    """The number of a sheet's header row if the sheet is laid out as a table, None if it is a grid.

    A table has a header: among the first ``_HEADER_SEARCH`` non-empty rows, the first with at least
    ``_MIN_COLUMNS`` cells, mostly text (``_TEXT_SHARE``); rows below it, their cells mostly under the
    header's columns (``_UNDER_HEADER_SHARE``); few merges across columns from the header down
    (``_WIDE_MERGE_SHARE`` of the data rows, at least one allowed); and fewer than half its used
    columns narrow. Anything else is a grid: a form on squared paper (方眼紙) whose text sits in merged
    cells over many narrow columns, cells scattered across columns, or a list of two columns, where a
    label and its value on one line read better than 「ラベル: 値」 under a first row taken for a header.
    """
    numbers = sorted(rows)
    header = next((n for n in numbers[:_HEADER_SEARCH] if len(rows[n]) >= _MIN_COLUMNS), None)
    if header is None:
        return None
    cells = rows[header]
    if sum(is_text for _, is_text in cells.values()) < _TEXT_SHARE * len(cells):
        return None
    below = [rows[n] for n in numbers if n > header]
    placed = sum(len(row) for row in below)
    if not below or sum(column in cells for row in below for column in row) < _UNDER_HEADER_SHARE * placed:
        return None
    wide = sum(1 for merge in merges if merge.max_col > merge.min_col and merge.max_row >= header)
    if wide > max(1, _WIDE_MERGE_SHARE * len(below)):
        return None
    used = {column for row in rows.values() for column in row}
    if 2 * len(used & narrow) >= len(used):
        return None
    return header


def _fill_down(rows: dict[int, _Row], merges: Sequence[Any], header: int) -> None:
    """In a table, give a cell merged down over several rows to each of those rows that has other values."""
    numbers = sorted(rows)
    for merge in merges:
        value = rows.get(merge.min_row, {}).get(merge.min_col)
        if merge.max_row == merge.min_row or merge.min_row <= header or value is None:
            continue
        start = bisect.bisect_right(numbers, merge.min_row)
        for number in numbers[start : bisect.bisect_right(numbers, merge.max_row)]:
            if merge.min_col not in rows[number]:
                rows[number] = dict(sorted({**rows[number], merge.min_col: value}.items()))


def read_xlsx(name: str, data: bytes, limits: Limits) -> Reading:
    """Read an Excel workbook (.xlsx, .xlsm): every worksheet in order, one section per non-empty row.

    Values are what Excel last calculated (a formula's cached value; a workbook saved by a program
    that does not calculate, such as openpyxl, has none, and its formulas are left out, never shown
    as ``=SUM(…)``). Hidden sheets are read too, as they hold content (lists, past data), and a note
    names them; chart sheets, shapes and comments are not read. Each sheet is a table or a grid (see
    ``_table_header``): a table's data rows become ``列名: 値`` lines (a cell merged down is repeated
    in each row), rows above its header and a grid's rows the row's values left to right, joined
    with spaces. Every section has ``Place(sheet=name, row=number)``.
    """
    _check_package(name, data, limits)
    out = _Sections(name, limits)
    hidden: list[str] = []
    with _unreadable_as(name, "Excel ブック", "Excel"):
        merged = _count_merged_cells(data)
        # openpyxl makes an object for every cell a merge covers when it loads the sheet
        if merged > limits.max_merged_cells:
            raise ResourceLimitError(
                f"{name}: 結合されたセルが多すぎます（{merged:,} セル、上限 {limits.max_merged_cells:,} セル）。"
                "行全体や列全体の結合を解除して保存し直すか、上限を RAG_MAX_MERGED_CELLS で変えてください。"
            )
        with warnings.catch_warnings():
            # openpyxl warns of every extension it drops (data validation, conditional formats, …)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\.|$)")
            book = openpyxl.load_workbook(
                io.BytesIO(data), data_only=True, keep_vba=False, rich_text=False, keep_links=False
            )
        for sheet in book.worksheets:
            rows = _sheet_rows(sheet)
            if rows and sheet.sheet_state != "visible":
                hidden.append(sheet.title)
            merges = list(sheet.merged_cells.ranges)
            header = _table_header(rows, merges, _narrow_columns(sheet))
            if header is not None:
                _fill_down(rows, merges, header)
            names = {} if header is None else {c: " ".join(text.split()) for c, (text, _) in rows[header].items()}
            for number, row in rows.items():
                place = Place(sheet=sheet.title, row=number)
                where = f"シート {sheet.title} の {number:,} 行目までで "
                cells = [(column, text) for column, (text, _) in row.items()]
                if header is None or number < header:
                    out.add(" ".join(text for _, text in cells), place, where)
                elif number > header and {c: " ".join(text.split()) for c, text in cells} != names:
                    out.add(_record(names, cells), place, where)  # a header repeated for print is left out
    notes = [f"非表示のシート（{'、'.join(hidden)}）も読み込みました。"] if hidden else []
    return out.reading(notes)


# PowerPoint


def _slide_text(text: str) -> str:
    return text.replace("\v", "\n")  # python-pptx gives a line break inside a paragraph as a vertical tab


def _position(shape: BaseShape) -> tuple[bool, int, int]:
    top, left = shape.top, shape.left
    return (top is None or left is None, top or 0, left or 0)


def _shape_texts(shapes: Iterable[BaseShape]) -> Iterator[str]:
    """The text of each shape, top to bottom then left to right (shapes without a position last),
    a group's shapes in its place, a table's rows as in Word, a chart by its title."""
    for shape in sorted(shapes, key=_position):
        if isinstance(shape, GroupShape):
            yield from _shape_texts(shape.shapes)
        elif isinstance(shape, GraphicFrame) and shape.has_table:
            rows = [
                [(column, _slide_text(cell.text)) for column, cell in enumerate(row.cells) if not cell.is_spanned]
                for row in shape.table.rows
            ]
            yield from _table_texts(rows)
        elif isinstance(shape, GraphicFrame) and shape.has_chart:
            chart = shape.chart
            if chart.has_title and chart.chart_title.has_text_frame:
                yield _slide_text(chart.chart_title.text_frame.text)
        elif isinstance(shape, Shape) and shape.has_text_frame:
            yield _slide_text(shape.text_frame.text)


def read_pptx(name: str, data: bytes, limits: Limits) -> Reading:
    """Read a PowerPoint presentation (.pptx, .pptm): per slide, numbered from 1, its title, the text of
    its other shapes in reading order (``_shape_texts``), then its speaker notes as 「ノート: …」.

    Each is a section with ``Place(slide=number)``, with the slide's title as its heading when it has
    one; a table gives a section per row. Hidden slides are read too (they are numbered as PowerPoint
    numbers them); SmartArt and pictures' text are not read.
    """
    _check_package(name, data, limits)
    out = _Sections(name, limits)
    with _unreadable_as(name, "PowerPoint プレゼンテーション", "PowerPoint"):
        presentation = pptx.Presentation(io.BytesIO(data))
        for number, slide in enumerate(presentation.slides, 1):
            where = f"スライド {number:,} 枚目までで "
            title = slide.shapes.title
            heading = _slide_text(title.text_frame.text) if title is not None else ""
            place = Place(slide=number, heading=(" ".join(heading.split()),) if heading.strip() else ())
            if title is not None:
                out.add(heading, place, where)
            for text in _shape_texts(shape for shape in slide.shapes if shape != title):
                out.add(text, place, where)
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    out.add("ノート: " + _slide_text(notes.text), place, where)
    return out.reading()
