"""Japanese text normalisation: NFKC, control characters, and lines a PDF broke mid-sentence."""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from ingest.document import NOWHERE, Place, Section

# A line that starts like this begins a new item, so the line before it is not continued.
_BLOCK_START = re.compile(
    r"""^(?:
        [・•●○◆◇■□▪▶►※*\-+>#|]          # bullets, quotes, markdown headings and tables
      | \d{1,3}[.)、]                      # 1. 2) 3、
      | [(（]\d{1,3}[)）]                   # (1)
      | 第[0-9一二三四五六七八九十百]+[章節条項編部]  # 第3章
    )""",
    re.VERBOSE,
)
# Lines of these kinds are complete on their own: markdown headings, table rows, chapter headings.
_STANDALONE_LINE = re.compile(r"^(?:#{1,6}\s|\||第[0-9一二三四五六七八九十百]+[章節編部](?:\s|$))")
# Everything in Cc and Cf except tab and newline is dropped: NUL, form feeds, zero-width spaces,
# byte-order marks and bidi controls carry no text and confuse the tokenizer.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")
# An indented line starts a new paragraph, as Japanese writing marks one with a full-width space.
_INDENTED_LINE = re.compile(r"\n[ \t]+(?=\S)")


# A title or heading line without a full stop: at most this many characters.
_HEADING_CHARS = 20
# Characters after which a line is still mid-sentence (besides hiragana: particles and verb endings).
_OPEN_END = "、，,・（(「『【〔［[〈《"
# Characters a line cannot start a sentence with (besides hiragana: particles and verb endings).
_CONTINUATION_START = "、。，．,.)）」』】〕］]〉》ー"


def _is_hiragana(char: str) -> bool:
    return "\u3041" <= char <= "\u309f"


def _heading_before(prev: str, nxt: str) -> bool:
    """Whether ``prev`` is a title or heading line without a full stop (社内規程, 第1条（目的）), so that
    the sentence on line ``nxt`` starts anew instead of continuing it.

    Such a line is short, holds no comma, ends in a noun rather than hiragana (a particle or a
    verb's ending, where lines broken mid-sentence usually end), and the line after it is at least
    twice as long and starts as a sentence starts. A line a PDF broke mid-sentence is as long as its
    neighbours, so it does not look like this.
    """
    head = prev.strip()
    first = nxt.lstrip()[: 2 * _HEADING_CHARS + 1].split("\n", 1)[0].strip()
    if not head or not first or len(head) > _HEADING_CHARS or len(first) < 2 * len(head):
        return False
    if "、" in head or "," in head or _is_ascii_word_char(head[-1]):
        return False
    if _is_hiragana(head[-1]) or head[-1] in _OPEN_END:
        return False
    return not (_is_hiragana(first[0]) or first[0] in _CONTINUATION_START)


def _is_ascii_word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _joiner(prev: str, nxt: str) -> str:
    """What goes between two pieces of one sentence: a space only between two Latin words."""
    if _is_ascii_word_char(prev[-1]) and _is_ascii_word_char(nxt[0]):
        return " "
    return ""


def continues(prev: str, nxt: str) -> bool:
    """Whether line ``nxt`` continues the sentence that line ``prev`` left open.

    Both are lines of normalised text, or ``nxt`` is the start of the next page. Only the first and
    last ``_VIEW`` characters of ``prev`` are looked at, so a line of any length costs the same.
    """
    prev = _ends_of(prev)
    end = len(prev)
    while end and prev[end - 1].isspace():
        end -= 1
    if not end or not nxt.strip():
        return False
    if _ends_sentence(prev, end) or _STANDALONE_LINE.match(prev.lstrip()):
        return False
    return not _BLOCK_START.match(nxt) and not _heading_before(prev, nxt)


# How much of each end of a line decides whether it continues: a heading is at most 20 characters,
# and a run of closing brackets after a full stop is never this long in real text.
_VIEW = 256
_CLOSERS = frozenset("」』）)】〕〉》\"'’”]")
_ENDERS = frozenset("。.!?:;…")


def _ends_of(line: str) -> str:
    """The line itself when short, else its first and last ``_VIEW`` characters (all ``continues`` reads)."""
    return line if len(line) <= 2 * _VIEW else line[:_VIEW] + line[-_VIEW:]


def _ends_sentence(line: str, end: int) -> bool:
    """Whether ``line[:end]`` ends a sentence: 。.!?:;… followed only by closing brackets and quotes."""
    while end and line[end - 1] in _CLOSERS:
        end -= 1
    return bool(end) and line[end - 1] in _ENDERS


class _Line:
    """An output line built from pieces, joined once at the end (adding to one string would copy it each time)."""

    def __init__(self, first: str) -> None:
        self.pieces = [first]
        self.head = first[:_VIEW]
        self.tail = first[-_VIEW:]
        self.length = len(first)

    def view(self) -> str:
        """What ``continues`` needs of the line so far: all of it when short, else its two ends."""
        if self.length <= 2 * _VIEW:
            return "".join(self.pieces)
        return self.head + self.tail

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        self.length += len(piece)
        if len(self.head) < _VIEW:
            self.head = (self.head + piece)[:_VIEW]
        self.tail = (self.tail + piece)[-_VIEW:]

    def text(self) -> str:
        return "".join(self.pieces)


def _unwrap(paragraph: str, rejoin: bool = True) -> str:
    # Spaces are collapsed before any line is judged, so that a second pass judges the same lines
    # (a heading is measured by its length: "ア  あ" and "ア あ" must get the same answer).
    lines = [_SPACES.sub(" ", line).strip() for line in paragraph.split("\n")]
    out = [_Line(lines[0])]
    for line in lines[1:]:
        if rejoin and continues(out[-1].view(), line):
            out[-1].add(_joiner(out[-1].tail, line) + line)
        else:
            out.append(_Line(line))
    return "\n".join(text for text in (line.text() for line in out) if text)


def normalize_text(text: str, rejoin: bool = True) -> str:
    """Normalise one page of Japanese text for indexing and display.

    NFKC (full-width ASCII to half-width, half-width katakana to full-width), no control or
    zero-width characters, ``\\n`` line ends, lines broken mid-sentence re-joined without a space
    between Japanese characters, runs of spaces collapsed, and paragraphs (blank lines, or an
    indented line) kept as one blank line. Normalising twice changes nothing.

    ``rejoin``: False for text whose line breaks are all meant (a table row's ``列名: 値`` lines, a
    slide's lines, a Word paragraph's breaks): its lines are kept as they are.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = _INDENTED_LINE.sub("\n\n", text)
    paragraphs = _BLANK_LINES.split(text)
    unwrapped = (_unwrap(p, rejoin) for p in paragraphs)
    return "\n\n".join(p for p in unwrapped if p)


@dataclass(frozen=True)
class PagedText:
    """A document's normalised text, and where each of its sections starts in it and is in the original."""

    text: str
    starts: tuple[int, ...]
    places: tuple[Place, ...]
    titles: tuple[bool, ...] = ()
    """Per section: whether it is only its own heading's title (a heading paragraph of a Word file)."""

    @classmethod
    def plain(cls, text: str) -> PagedText:
        """A text with no place: one section."""
        return cls(text, (0,), (NOWHERE,))

    def place_at(self, offset: int) -> Place:
        """The place of the section that holds character ``offset``."""
        index = bisect.bisect_right(self.starts, offset) - 1
        return self.places[max(index, 0)] if self.places else NOWHERE

    def place_of(self, start: int, end: int) -> Place:
        """Where the span ``start:end`` begins, past headings that only lead into it: a chunk that starts
        with 「第2章 出張」 and 「2.1 旅費」 and goes on under them is at 第2章 出張 > 2.1 旅費."""
        if not self.places:
            return NOWHERE
        index = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while (
            index + 1 < len(self.places)
            and index < len(self.titles)
            and self.titles[index]
            and self.starts[index + 1] < end
        ):
            index += 1
        return self.places[index]

    def breaks_in(self, start: int, end: int) -> tuple[tuple[int, Place], ...]:
        """The sections that start inside ``start:end`` (not at ``start``): ``(offset from start, place)``."""
        first = bisect.bisect_right(self.starts, start)
        last = bisect.bisect_left(self.starts, end)
        return tuple((self.starts[i] - start, self.places[i]) for i in range(first, last))

    def page_at(self, offset: int) -> int | None:
        """The number of the page that holds character ``offset``."""
        return self.place_at(offset).page


def join_sections(sections: Iterable[Section]) -> PagedText:
    """Normalise sections and join them into one text: a blank line between two sections, except where a
    sentence runs on into a section that ``flows`` (a PDF page after a page break cut it)."""
    parts: list[str] = []
    length = 0
    last = _Line("")  # the last line of the text so far (its ends), for a sentence over the page break
    starts: list[int] = []
    places: list[Place] = []
    titles: list[bool] = []
    for section in sections:
        page = normalize_text(section.text, rejoin=section.wrapped)
        if not page:
            continue
        if parts:
            joiner = "\n\n"
            if section.flows and continues(last.view(), page):
                joiner = _joiner(parts[-1], page)
            parts.append(joiner)
            length += len(joiner)
            if joiner == "\n\n":
                last = _Line("")
            else:
                last.add(joiner)
        starts.append(length)
        places.append(section.place)
        heading = section.place.heading
        titles.append(bool(heading) and page.lstrip("#").strip() == normalize_text(heading[-1]))
        parts.append(page)
        length += len(page)
        before, newline, after = page.rpartition("\n")
        if newline:
            last = _Line(after)
        else:
            last.add(before + after)
    return PagedText("".join(parts), tuple(starts), tuple(places), tuple(titles))


def join_pages(pages: Iterable[tuple[int | None, str]]) -> PagedText:
    """Normalise numbered pages (None: a text without pages) and join them, continuing a sentence that runs
    over a page break."""
    return join_sections(Section(text, Place(page=number), flows=True) for number, text in pages)
