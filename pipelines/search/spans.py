"""Where a passage stands in a page's characters (a PDF's text layer, Tesseract's words): the spans to mark."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# A sentence of the passage cut by a page break: the longest head or tail of it on the page is marked
# when at least this long; a shorter piece would match anywhere.
_MIN_PIECE = 4
# Characters at either end of a page that such a piece may leave beyond it: a running header or footer.
_EDGE = 20
# Where a passage is cut into pieces that are looked for on the page.
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|\n")


def compact(text: str) -> str:
    """``text`` as the marks compare it: NFKC, without white space."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _sentences(passage: str) -> list[str]:
    """The passage's sentences and lines, compacted, the empty ones left out."""
    pieces = (compact(piece) for piece in _SENTENCE_END.split(passage))
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


def marked_owners(owners: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """The owners (PDF characters, OCR words) of the compacted characters in ``spans``, in order, once each."""
    return sorted({owners[i] for start, end in spans for i in range(start, end)})
