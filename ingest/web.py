"""HTML pages (.html, .htm): the main text in blocks under their headings, tables row by row, in the declared or detected encoding.

The charset comes from a byte-order mark, else from the page's own declaration (``<meta charset>``,
``<meta http-equiv="Content-Type">`` or an XHTML ``<?xml encoding?>`` in the first 4096 bytes), else
from ``ingest.encoding.decode_text``, which also reads a page whose declaration does not fit its
bytes and a Japanese page that a template labels iso-8859-1. The page is parsed by lxml; navigation,
scripts, forms and other chrome are dropped, and when the page marks its main content (``<main>``,
``role="main"``, ``<article>``) only that is read. Every block (paragraph, list item, quotation, preformatted text, a
``div``'s own text) becomes a ``Section`` under the path of ``h1``–``h6`` headings above it.

The ``<title>`` stands in for a missing ``h1``: when the content read has no ``h1``, the title is the
outermost heading of every section (pages often carry their site name there, so a page with its own
``h1`` does not need it); it is never a section of its own.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field

import lxml.html
from lxml import etree

from ingest.document import Place, Reading, Section
from ingest.encoding import check_encoded_size, decode_text
from ingest.errors import EncodingError, FormatError
from ingest.limits import Limits, check_chars

HTML_SUFFIXES = (".html", ".htm")

# The declaration is looked for where a browser looks for it (the HTML standard's prescan reads 1024
# bytes; pages with long comments or scripts in <head> push it further, so a little more is read).
_PRESCAN = 4096
_DECLARED = re.compile(
    rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)"""
    rb"""|<\?xml\b[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""",
    re.IGNORECASE,
)
_ALIASES = {
    **dict.fromkeys(
        ("shift_jis", "shift-jis", "sjis", "x-sjis", "windows-31j", "ms932", "ms_kanji", "csshiftjis", "cp932"),
        "cp932",
    ),
    **dict.fromkeys(("euc-jp", "euc_jp", "eucjp", "x-euc-jp", "cseucpkdfmtjapanese"), "euc_jp"),
    **dict.fromkeys(("utf-8", "utf8", "unicode-1-1-utf-8"), "utf-8"),
    # A declaration readable as ASCII is not UTF-16; the HTML standard reads such a page as UTF-8.
    **dict.fromkeys(("utf-16", "utf-16le", "utf-16be", "utf16"), "utf-8"),
}
# Labels that templates put on pages whatever they hold: Japanese text declared as one of these is
# taken for Japanese (decode_text refuses text that is not), and only other text for what it says.
_WESTERN = frozenset(("iso-8859-1", "iso8859-1", "latin1", "latin-1", "us-ascii", "ascii", "windows-1252", "cp1252"))
# Python codecs that no browser knows, some of which read bytes as escapes (and warn) or as names of
# hosts: a page declaring one is decoded as if it declared a charset that does not exist.
_NOT_WEB = frozenset(("unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode", "utf-7"))
# A byte-order mark outweighs any declaration (as in browsers); decode_text reads it.
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")

# Chrome around the text, and the reading aids of ruby (振り仮名 in <rt>, its parentheses in <rp>).
_DROPPED_TAGS = frozenset(
    [
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "math",
        "nav",
        "aside",
        "button",
        "select",
        "textarea",
        "iframe",
        "frameset",
        "noframes",
        "object",
        "embed",
        "canvas",
        "audio",
        "video",
        "rt",
        "rp",
        "head",
        "title",
    ]
)
_DROPPED_ROLES = frozenset(("navigation", "banner", "contentinfo", "search"))
# <header> and <footer> are the page's banner and footer only outside these (ARIA's mapping); inside
# an article they hold its heading and byline.
_SECTIONING = frozenset(("article", "aside", "main", "nav", "section"))
_INVISIBLE_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# A form that holds the page's text is kept: ASP.NET wraps a whole page's body in one.
_CONTENT = ".//p | .//table | .//article | .//main | .//h1 | .//h2 | .//h3"

_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_PREFORMATTED = frozenset(("pre", "listing", "xmp", "plaintext"))
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "header",
        "hgroup",
        "hr",
        "html",
        "legend",
        "li",
        "listing",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "plaintext",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "xmp",
    ]
)
_CELLS = ("td", "th")
# The HTML standard's ceilings on colspan and rowspan.
_MAX_COLSPAN = 1000
_MAX_ROWSPAN = 65534

_SPACE_RUN = re.compile(r"[ \t\n\r\f]+")
# Characters XML forbids: lxml's parser keeps them in the tree, but refuses them when text is moved
# (dropping an element joins its tail to the text before it), so they go before parsing; a form feed
# is whitespace in HTML.
_NOT_XML = dict.fromkeys([*range(0x09), 0x0B, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]) | {0x0C: " "}


def _declared_charset(data: bytes) -> str | None:
    """The charset the page declares in its first bytes, as a Python codec name; None if none or unknown."""
    match = _DECLARED.search(data[:_PRESCAN])
    if match is None:
        return None
    label = (match.group(1) or match.group(2)).decode("ascii").lower()
    return _ALIASES.get(label, label)


def _decode(name: str, data: bytes) -> tuple[str, str, tuple[str, ...]]:
    """The page's text, the codec it was decoded with, and a note when its declaration was wrong."""
    declared = None if data.startswith(_BOMS) else _declared_charset(data)
    if declared in _WESTERN and not data.isascii():
        try:
            text, codec = decode_text(data, name)
        except EncodingError:
            pass
        else:
            note = f"{name}: 宣言された文字コードは {declared} ですが、日本語の {codec} と判定して読みました。"
            return text, codec, (note,)
    if declared is not None:
        try:
            if codecs.lookup(declared).name in _NOT_WEB:
                raise LookupError(declared)
            return data.decode(declared), declared, ()
        except (UnicodeError, LookupError):
            text, codec = decode_text(data, name)
            note = f"{name}: 宣言された文字コード {declared} では読めないため、{codec} と判定して読みました。"
            return text, codec, (note,)
    text, codec = decode_text(data, name)
    return text, codec, ()


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _collapse(text: str) -> str:
    """Source whitespace as a browser shows it: a run is one space, or nothing where a line break falls between two Japanese characters."""

    def space(match: re.Match[str]) -> str:
        before, after = match.start() - 1, match.end()
        if (
            ("\n" in match.group() or "\r" in match.group())
            and before >= 0
            and after < len(text)
            and _wide(text[before])
            and _wide(text[after])
        ):
            return ""
        return " "

    return _SPACE_RUN.sub(space, text)


@dataclass
class _Lines:
    """Text gathered for one block: runs of flowing text, and literal text (preformatted text, ``<br>``)."""

    pieces: list[tuple[str, bool]] = field(default_factory=list)
    preformatted: bool = False

    def add(self, text: str | None, literal: bool = False) -> None:
        if text:
            self.pieces.append((text, literal))

    def take(self) -> str:
        """The gathered text, its lines trimmed (indentation kept in preformatted text); empties the buffer."""
        parts: list[str] = []
        flowing: list[str] = []
        for text, literal in self.pieces:
            if literal:
                parts.append(_collapse("".join(flowing)))
                flowing.clear()
                parts.append(text)
            else:
                flowing.append(text)
        parts.append(_collapse("".join(flowing)))
        lines = "".join(parts).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if self.preformatted:
            text = "\n".join(line.rstrip() for line in lines).strip("\n")
        else:
            text = "\n".join(stripped for line in lines if (stripped := line.strip(" ")))
        self.pieces.clear()
        self.preformatted = False
        return text


def _attribute(element: lxml.html.HtmlElement, name: str) -> str:
    return (element.get(name) or "").strip().lower()


def _is_chrome(element: lxml.html.HtmlElement) -> bool:
    """Whether an element is navigation, script, decoration or hidden, rather than the page's text."""
    tag = element.tag
    if tag in _DROPPED_TAGS or _attribute(element, "role") in _DROPPED_ROLES:
        return True
    if element.get("hidden") is not None or _attribute(element, "aria-hidden") == "true":
        return True
    if _INVISIBLE_STYLE.search(element.get("style") or ""):
        return True
    if tag in ("header", "footer"):
        return not any(ancestor.tag in _SECTIONING for ancestor in element.iterancestors())
    if tag == "form":
        return not element.xpath(_CONTENT)
    return False


def _drop_chrome(root: lxml.html.HtmlElement) -> None:
    # Collected first: dropping while iterating would skip the element after each dropped one.
    chrome = [element for element in root.iter() if isinstance(element.tag, str) and _is_chrome(element)]
    for element in chrome:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows the element


def _main_content(body: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    """The first ``<main>`` (or ``role="main"``), else every outermost ``<article>``, else the whole body."""
    main = body.xpath(".//main | .//*[@role='main']")
    if main:
        return [main[0]]
    articles = body.xpath(".//article[not(ancestor::article)]")
    return list(articles) or [body]


def _gather(element: lxml.html.HtmlElement, lines: _Lines, preformatted: bool = False) -> None:
    """Add the text of an element and everything in it to ``lines``, blocks on lines of their own."""
    tag = element.tag
    if not isinstance(tag, str):  # a comment or processing instruction the parser kept
        return
    preformatted = preformatted or tag in _PREFORMATTED
    block = tag in _BLOCKS or tag in _HEADINGS
    if tag == "br":
        lines.add("\n", literal=True)
    if block:
        lines.add("\n", literal=True)
    lines.add(element.text, literal=preformatted)
    for child in element:
        _gather(child, lines, preformatted)
        lines.add(child.tail, literal=preformatted)
    if block:
        lines.add("\n", literal=True)


def _inline_text(element: lxml.html.HtmlElement, separator: str = "\n") -> str:
    """An element's text, its blocks and ``<br>`` on lines of their own joined by ``separator``."""
    if len(element) == 0:  # most table cells: no markup inside, one run of flowing text
        return _collapse(element.text or "").strip(" ")
    lines = _Lines()
    _gather(element, lines)
    return lines.take().replace("\n", separator)


def _span(element: lxml.html.HtmlElement, name: str, ceiling: int, rest: int) -> int:
    """A cell's ``colspan`` or ``rowspan`` as the HTML standard reads it: 1 if missing or bad, 0 (rowspan) to the end."""
    value = element.get(name)
    if value is None:
        return 1
    try:
        number = int(value.strip())
    except ValueError:
        return 1
    if number == 0 and name == "rowspan":
        return rest
    return max(1, min(number, ceiling, rest))


@dataclass(frozen=True)
class _Cell:
    column: int
    width: int
    text: str
    header: bool
    last_row: int  # the index of the last row a rowspan carries it to


def _rows(table: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    """The table's own rows, in order, not those of tables inside its cells."""
    return list(table.xpath("./tr | ./thead/tr | ./tbody/tr | ./tfoot/tr"))


def _column(cell: _Cell) -> int:
    return cell.column


def _grid(rows: list[lxml.html.HtmlElement], name: str, limits: Limits) -> list[list[_Cell]]:
    """Each row's cells at the columns they stand in, with the cells that a ``rowspan`` above carries down.

    A carried cell is written again on every row it spans, so the table is checked against the
    character limit as it is expanded: a few bytes of ``rowspan`` cannot make millions of cells.
    """
    grid: list[list[_Cell]] = []
    carried: list[_Cell] = []  # in column order
    expanded = 0
    for index, row in enumerate(rows):
        cells = list(carried)
        passed = 0
        column = 0
        for element in row:
            if element.tag not in _CELLS:
                continue
            # columns only grow along a row, so the carried cells are passed once, in order
            while passed < len(carried) and carried[passed].column <= column:
                column = max(column, carried[passed].column + carried[passed].width)
                passed += 1
            width = _span(element, "colspan", _MAX_COLSPAN, _MAX_COLSPAN)
            down = _span(element, "rowspan", _MAX_ROWSPAN, len(rows) - index)
            cells.append(_Cell(column, width, _inline_text(element), element.tag == "th", index + down - 1))
            column += width
        expanded += sum(len(cell.text) + 1 for cell in cells)
        check_chars(name, expanded, limits, where="表を展開して少なくとも ")
        if carried:
            cells.sort(key=_column)
        carried = [cell for cell in cells if cell.last_row > index]
        grid.append(cells)
    return grid


def _header_name(header: list[_Cell], cell: _Cell) -> str:
    """The names of the header cells above ``cell``'s columns, each once; ``列{n}`` where there is none."""
    names: list[str] = []
    for above in header:
        if above.column < cell.column + cell.width and cell.column < above.column + above.width:
            label = above.text.replace("\n", " ")
            if label and label not in names:
                names.append(label)
    return "・".join(names) or f"列{cell.column + 1}"


def _is_layout(table: lxml.html.HtmlElement) -> bool:
    """A table that lays out a page (old sites put the whole page in one) rather than holding data."""
    if table.xpath("./thead | ./caption | ./tr/th | ./*/tr/th"):
        return False
    return bool(table.xpath(".//table | .//h1 | .//h2 | .//h3 | .//h4 | .//h5 | .//h6"))


def _row_text(cells: list[_Cell], header: list[_Cell]) -> str:
    if header:
        return "\n".join(f"{_header_name(header, cell)}: {cell.text}" for cell in cells if cell.text)
    values = [cell.text for cell in cells if cell.text]
    if len(cells) > 1 and cells[0].header and cells[0].text and not any(cell.header for cell in cells[1:]):
        # a row that names itself in its first cell: 「所在地: 東京都千代田区」
        return f"{values[0]}: {' | '.join(values[1:])}" if len(values) > 1 else values[0]
    return " | ".join(values)


def _table_texts(table: lxml.html.HtmlElement, name: str, limits: Limits) -> list[str]:
    """The text of each row of a data table: ``列名: 値`` lines under its header rows, else cells joined by " | ".

    The header rows are those of ``<thead>``, else the leading rows made only of ``<th>`` cells; a cell
    under several header cells (rows of headers, or a ``colspan``) is named by all of them.
    """
    rows = _rows(table)
    grid = _grid(rows, name, limits)
    in_head = [row.getparent().tag == "thead" for row in rows]
    if any(in_head):
        heads = [index for index, head in enumerate(in_head) if head]
    else:
        heads = []
        for index, cells in enumerate(grid):
            if not cells or not all(cell.header for cell in cells):
                break
            heads.append(index)
    header = [cell for index in heads for cell in grid[index]]
    skipped = set(heads)
    body = [cells for index, cells in enumerate(grid) if index not in skipped]
    if not body:
        # a table of nothing but headers: they are its text
        return [" | ".join(cell.text for cell in grid[index] if cell.text) for index in heads]
    return [_row_text(cells, header) for cells in body]


@dataclass
class _Reader:
    """Walks the content in document order, turning blocks into sections under their headings."""

    name: str
    limits: Limits
    title: str | None
    sections: list[Section] = field(default_factory=list)
    path: list[tuple[int, str]] = field(default_factory=list)
    lines: _Lines = field(default_factory=_Lines)
    chars: int = 0

    def heading(self) -> tuple[str, ...]:
        outer = (self.title,) if self.title else ()
        return outer + tuple(text for _, text in self.path)

    def emit(self, text: str) -> None:
        if not text:
            return
        self.chars += len(text)
        check_chars(self.name, self.chars, self.limits)
        self.sections.append(Section(text, Place(heading=self.heading())))

    def flush(self) -> None:
        self.emit(self.lines.take())

    def walk(self, element: lxml.html.HtmlElement) -> None:
        tag = element.tag
        if not isinstance(tag, str):
            return
        if tag in _HEADINGS:
            self.flush()
            level = _HEADINGS[tag]
            text = _inline_text(element, separator=" ")
            if text:
                while self.path and self.path[-1][0] >= level:
                    self.path.pop()
                self.path.append((level, text))
                self.emit(text)
            return
        if tag == "table" and not _is_layout(element):
            self.flush()
            caption = element.find("caption")
            if caption is not None:
                self.emit(_inline_text(caption))
            for text in _table_texts(element, self.name, self.limits):
                self.emit(text)
            return
        if tag in _PREFORMATTED:
            self.flush()
            self.lines.preformatted = True
            _gather(element, self.lines)
            self.flush()
            return
        if tag == "br":
            self.lines.add("\n", literal=True)
            return
        block = tag in _BLOCKS
        if block:
            self.flush()
        self.lines.add(element.text)
        for child in element:
            self.walk(child)
            self.lines.add(child.tail)
        if block:
            self.flush()


def _parse(name: str, text: str) -> lxml.html.HtmlElement | None:
    """The page's document tree; None for a page with no elements at all (empty, or only comments)."""
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True)
    try:
        # Parsed from UTF-8 bytes with the encoding given, so that the page's own declaration (which
        # may be wrong) is not applied a second time.
        return lxml.html.document_fromstring(text.translate(_NOT_XML).encode("utf-8"), parser=parser)
    except etree.ParserError as error:
        if "empty" in str(error).lower():
            return None
        raise FormatError(
            f"{name}: HTML として読み取れません（{error}）。ブラウザで開いて保存し直すか、PDF にしてからアップロードしてください。"
        ) from error
    except (etree.LxmlError, ValueError) as error:
        raise FormatError(
            f"{name}: HTML として読み取れません（{type(error).__name__}: {error}）。"
            "ブラウザで開いて保存し直すか、PDF にしてからアップロードしてください。"
        ) from error


def read_html(name: str, data: bytes, limits: Limits) -> Reading:
    """Read an HTML page's main text into sections under its headings, tables row by row.

    Returns no sections for a page without text (the caller reports it empty); the encoding used is
    ``Reading.encoding``, and a declared charset that did not fit the bytes is said in a note.
    """
    if not data:
        return Reading(sections=())
    check_encoded_size(name, data, limits)  # every encoding read here is one decode_text reads too
    text, encoding, notes = _decode(name, data)
    check_chars(name, len(text), limits)
    root = _parse(name, text)
    if root is None:
        return Reading(sections=(), encoding=encoding, notes=notes)
    title_element = root.find(".//title")
    title = _inline_text(title_element, separator=" ") if title_element is not None else ""
    body = root.find("body")
    if body is None:
        body = root
    _drop_chrome(body)
    content = _main_content(body)
    has_h1 = any(element.tag == "h1" or element.xpath(".//h1") for element in content)
    reader = _Reader(name, limits, title=None if has_h1 else title or None)
    for element in content:
        reader.walk(element)
        reader.flush()
    return Reading(sections=tuple(reader.sections), encoding=encoding, notes=notes)
