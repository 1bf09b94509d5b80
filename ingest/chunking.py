"""Japanese chunking: sentences split at 。！？ and line breaks, packed by the embedding model's own token count."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from ingest.document import Place
from ingest.normalize import PagedText

TokenCounter = Callable[[str], int]
"""The number of tokens the model reads for a text, its special tokens included."""

# A sentence ends after 。！？!? (several in a row count as one end), with the closing brackets and
# quotes that follow; at a line break; or at a full stop followed by white space. NFKC has already
# turned ！？ into !?, but both forms are matched so the splitter also works on raw text.
_SENTENCE_END = re.compile(r"""(?:[。!?！？]+[」』）)】〕〉》"'’”\]］]*[ \t]*|\.(?=[ \t\n]|$)[ \t]*)\n*|\n+""")
# Inside an over-long sentence, the next best places to cut: after a comma or a space (several in a row
# count as one, so that a run of commas is cut like any run of characters, not into a clause per comma).
_CLAUSE_END = re.compile(r"(?:[、,，;；:：][ \t]*)+| +")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's normalised text, sized for the embedding model."""

    index: int
    text: str
    start: int
    end: int
    place: Place
    place_end: Place
    tokens: int
    breaks: tuple[tuple[int, Place], ...] = ()
    """The sections that start inside the chunk: (offset in ``text``, place), e.g. a page break."""

    @property
    def page(self) -> int | None:
        """The page the chunk starts on (PDF), or None."""
        return self.place.page

    @property
    def page_end(self) -> int | None:
        """The page the chunk ends on (PDF), or None."""
        return self.place_end.page


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


# A sentence or clause is counted whole, to tell whether it fits; but one longer than this many characters
# per token of budget is first tried by a prefix of that length, and when the prefix is over budget already,
# the span is cut without ever being counted whole (a run of megabytes without 。 or 、 is not a unit).
_PROBE_CHARS_PER_TOKEN = 8


def _count_prefix(text: str, start: int, end: int, budget: int, count: TokenCounter) -> tuple[int, int]:
    """``(characters counted, tokens)``: the whole span's count, or a prefix's that is over budget already."""
    probe = _PROBE_CHARS_PER_TOKEN * budget
    if end - start > probe:
        tokens = count(text[start : start + probe])
        if tokens > budget:
            return probe, tokens
    return end - start, count(text[start:end])


def _longest_fit(
    measure: Callable[[int], int], low: int, base: int, high: int, high_tokens: int | None, budget: int, guess: int
) -> tuple[int, int]:
    """``(i, measure(i))`` for the largest ``i`` in ``(low, high)`` whose ``measure`` is within budget; ``low + 1``
    when there is none, so that the text moves on.

    ``measure(i)`` counts the prefix of a span that ends at position ``i`` (a character, or a unit of a chunk);
    ``base`` counts the empty one, at ``low``. ``high_tokens`` is ``measure(high)``, over budget, or None when
    ``high`` is just past the span's end. The answer is exact for a count that never falls as the prefix
    grows: the prefix a binary search finds. Probes start at ``guess``, then aim where the budget runs out at
    the rate of tokens seen so far, between the longest prefix known to fit and the shortest known not to;
    a probe that does not halve that bracket is followed by a bisection, and while none is over budget the
    step at least doubles. So a search costs a few counts of about the answer's length: cutting a run of
    any length is linear in it, as no count covers the rest of the run.
    """
    origin, low_tokens, step, bisected = low, base, 1, False
    while high - low > 1:
        width = high - low
        probe = min(max(guess, low + 1), high - 1)
        tokens = measure(probe)
        if tokens <= budget:
            low, low_tokens = probe, tokens
        else:
            high, high_tokens = probe, tokens
        if high_tokens is None:  # none over budget yet: on at the rate so far, faster while the count stalls
            rate = (low - origin) / max(low_tokens - base, 1)
            guess = max(low + int(rate * (budget + 0.5 - low_tokens)), low + step)
            step *= 2
        elif not bisected and 2 * (high - low) > width:
            guess, bisected = (low + high) // 2, True
        else:
            guess = low + int((high - low) * (budget + 0.5 - low_tokens) / max(high_tokens - low_tokens, 1))
            bisected = False
    if low == origin:
        assert high_tokens is not None  # high == origin + 1, counted
        return origin + 1, high_tokens
    return low, low_tokens


def _prefix_counter(text: str, start: int, count: TokenCounter) -> Callable[[int], int]:
    """The count of ``text[start:end]`` as a function of ``end``."""
    return lambda end: count(text[start:end])


def _cut_between_characters(
    text: str, start: int, end: int, budget: int, count: TokenCounter, specials: int, rate: float
) -> list[tuple[int, int, int]]:
    """``(start, end, tokens)``: a span cut into the longest pieces that fit, the first guessed at ``rate``
    characters per token, each next at the rate of the piece before."""
    pieces = []
    while start < end:
        guess = start + max(1, round(rate * (budget - specials)))
        cut, tokens = _longest_fit(_prefix_counter(text, start, count), start, specials, end + 1, None, budget, guess)
        pieces.append((start, cut, tokens))
        rate = (cut - start) / max(tokens - specials, 1)
        start = cut
    return pieces


def _split_long(text: str, start: int, end: int, budget: int, count: TokenCounter) -> list[tuple[int, int, int]]:
    """``(start, end, tokens)`` pieces of a trimmed span: the span itself if it fits the budget; else its clauses
    that fit, and a clause that does not, cut into the longest prefixes that fit; pieces trimmed, none blank."""
    counted, tokens = _count_prefix(text, start, end, budget, count)
    if counted == end - start and tokens <= budget:
        return [(start, end, tokens)]
    specials = count("")
    pieces: list[tuple[int, int, int]] = []
    cuts = [m.end() for m in _CLAUSE_END.finditer(text, start, end) if m.end() < end]
    for a, b in itertools.pairwise([start, *cuts, end]):
        if cuts:  # else the one clause is the span, counted already
            counted, tokens = _count_prefix(text, a, b, budget, count)
        if counted == b - a and tokens <= budget:
            clause = [(a, b, tokens)]
        else:  # the characters per token of what was counted tell where the budget likely runs out
            clause = _cut_between_characters(text, a, b, budget, count, specials, counted / max(tokens - specials, 1))
        for piece in clause:
            trimmed = trim_span(text, piece[0], piece[1])
            if trimmed == piece[:2]:
                pieces.append(piece)
            elif trimmed[0] < trimmed[1]:
                pieces.append((*trimmed, count(text[trimmed[0] : trimmed[1]])))
    return pieces


def _fitting_units(
    text: str,
    units: list[tuple[int, int, int]],
    first: int,
    last: int,
    count: TokenCounter,
    max_tokens: int,
    specials: int,
) -> tuple[int, int]:
    """``(last, tokens)``: the most units from ``units[first:last]`` whose joined span fits, one at least.

    The sum of the units' counts is seldom off by more than a unit, and then the first try drops one; where it
    is far off (white space between many short units is in no unit's count), the first try is where the
    budget runs out at the joined span's own rate, so that a chunk costs a few counts and not one per unit.
    """

    def joined(stop: int) -> int:
        if stop - first == 1:
            return units[first][2]
        return count(text[units[first][0] : units[stop - 1][1]])

    tokens = joined(last)
    if tokens <= max_tokens or last - first == 1:
        return last, tokens
    guess = first + int((last - first) * (max_tokens + 0.5 - specials) / max(tokens - specials, 1))
    return _longest_fit(joined, first, specials, last, tokens, max_tokens, guess)


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without the white space at its ends."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The spans of ``text``'s sentences, their surrounding whitespace left out, empty ones dropped: the
    sentences a hit's best sentence is chosen from."""
    return [(a, b) for a, b in (trim_span(text, *s) for s in split_sentences(text)) if a < b]


def chunk_text(
    paged: PagedText,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[Chunk]:
    """Pack whole sentences into chunks of at most ``max_tokens`` model tokens, special tokens included.

    Consecutive chunks share up to ``overlap_tokens`` tokens of whole sentences. A sentence longer than
    the budget is cut at commas, then between characters into the longest pieces that fit; no text is
    dropped or truncated. The cost is linear in the text's length whatever it holds: a run without 。 or 、
    costs about what sentences do (each character is given to ``count_tokens`` two or three times).
    """
    if max_tokens < 4:
        raise ValueError(f"max_tokens must be at least 4, got {max_tokens}")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError(f"overlap_tokens must be between 0 and max_tokens / 2, got {overlap_tokens}")
    text = paged.text
    units: list[tuple[int, int, int]] = []  # (start, end, tokens) of sentences, or their pieces, that fit
    for start, end in split_sentences(text):
        start, end = trim_span(text, start, end)
        if start == end:
            continue
        units.extend(_split_long(text, start, end, max_tokens, count_tokens))

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
        last, tokens = _fitting_units(text, units, first, last, count_tokens, max_tokens, specials)
        start, end = units[first][0], units[last - 1][1]
        chunks.append(
            Chunk(
                index=len(chunks),
                text=text[start:end],
                start=start,
                end=end,
                place=paged.place_of(start, end),
                place_end=paged.place_at(end - 1),
                tokens=tokens,
                breaks=paged.breaks_in(start, end),
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
