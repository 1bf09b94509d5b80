"""Japanese chunking: sentences split at 。！？ and line breaks, packed by the embedding model's own token count."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from ingest.normalize import PagedText

TokenCounter = Callable[[str], int]
"""The number of tokens the model reads for a text, its special tokens included."""

# A sentence ends after 。！？!? (several in a row count as one end), with the closing brackets and
# quotes that follow; at a line break; or at a full stop followed by white space. NFKC has already
# turned ！？ into !?, but both forms are matched so the splitter also works on raw text.
_SENTENCE_END = re.compile(r"""(?:[。!?！？]+[」』）)】〕〉》"'’”\]］]*[ \t]*|\.(?=[ \t\n]|$)[ \t]*)\n*|\n+""")
# Inside an over-long sentence, the next best places to cut: after a comma or a space.
_CLAUSE_END = re.compile(r"[、,，;；:：][ \t]*| +")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's normalised text, sized for the embedding model."""

    index: int
    text: str
    start: int
    end: int
    page: int | None
    page_end: int | None
    tokens: int


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split text into sentence spans ``(start, end)`` that cover it in order, white space included."""
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > start:
            spans.append((start, match.end()))
            start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _split_long(text: str, start: int, end: int, budget: int, count: TokenCounter) -> list[tuple[int, int]]:
    """Cut a span that is over budget at clause ends, and where a clause is too long, between characters."""
    pieces: list[tuple[int, int]] = []
    cuts = [m.end() + start for m in _CLAUSE_END.finditer(text, start, end) if m.end() + start < end]
    bounds = [start, *sorted(set(cuts)), end]
    clauses = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    for a, b in clauses:
        while count(text[a:b]) > budget:
            # The longest prefix that fits, by binary search over its length in characters.
            low, high = a + 1, b - 1
            while low < high:
                middle = (low + high + 1) // 2
                if count(text[a:middle]) <= budget:
                    low = middle
                else:
                    high = middle - 1
            pieces.append((a, low))
            a = low
        pieces.append((a, b))
    return pieces


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without the white space at its ends."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk_text(
    paged: PagedText,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[Chunk]:
    """Pack whole sentences into chunks of at most ``max_tokens`` model tokens, special tokens included.

    Consecutive chunks share up to ``overlap_tokens`` tokens of whole sentences. A sentence longer than
    the budget is cut at commas, then between characters; no text is dropped or truncated.
    """
    if max_tokens < 4:
        raise ValueError(f"max_tokens must be at least 4, got {max_tokens}")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError(f"overlap_tokens must be between 0 and max_tokens / 2, got {overlap_tokens}")
    text = paged.text
    units: list[tuple[int, int, int]] = []  # (start, end, tokens) of sentences that fit the budget
    for start, end in split_sentences(text):
        start, end = trim_span(text, start, end)
        if start == end:
            continue
        tokens = count_tokens(text[start:end])
        if tokens <= max_tokens:
            units.append((start, end, tokens))
            continue
        for a, b in _split_long(text, start, end, max_tokens, count_tokens):
            a, b = trim_span(text, a, b)
            if a < b:
                units.append((a, b, count_tokens(text[a:b])))

    # Pack by the sum of the sentences' own counts, which overestimates a little (each sentence counted
    # alone pays for a word-start marker), then check each chunk once with an exact count.
    specials = count_tokens("")
    cost = [u[2] - specials for u in units]
    chunks: list[Chunk] = []
    first = 0
    while first < len(units):
        last, total = first + 1, specials + cost[first]
        while last < len(units) and total + cost[last] <= max_tokens:
            total += cost[last]
            last += 1
        tokens = count_tokens(text[units[first][0] : units[last - 1][1]])
        while tokens > max_tokens and last - first > 1:
            last -= 1
            tokens = count_tokens(text[units[first][0] : units[last - 1][1]])
        start, end = units[first][0], units[last - 1][1]
        chunks.append(
            Chunk(
                index=len(chunks),
                text=text[start:end],
                start=start,
                end=end,
                page=paged.page_at(start),
                page_end=paged.page_at(end - 1),
                tokens=tokens,
            )
        )
        if last == len(units):
            break
        # Repeat the last whole sentences that fit in the overlap, leaving room for the next sentence
        # and always moving forward.
        next_first, shared = last, 0
        while (
            next_first - 1 > first
            and shared + cost[next_first - 1] <= overlap_tokens
            and specials + shared + cost[next_first - 1] + cost[last] <= max_tokens
        ):
            next_first -= 1
            shared += cost[next_first]
        first = next_first
    return chunks
