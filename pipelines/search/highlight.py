"""Where a question's words appear in a passage: terms from a Japanese question, and their spans in a text."""

from __future__ import annotations

import re
import unicodedata

# Runs of one script carry the content of a Japanese question; hiragana runs are mostly particles and
# endings (は、が、を、ですか) and are left out.
_TERM_RUN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf々〆ヶ]+|[\u30a1-\u30fa\u30fcー]+|[A-Za-z0-9][A-Za-z0-9.\-]*")


def query_terms(question: str) -> list[str]:
    """Words to highlight for a question: kanji, katakana and Latin runs of two or more characters.

    A kanji compound of three or more characters also gives its two-character pieces, so that
    「有給休暇制度」 still finds 「有給休暇」 and 「休暇」 in a passage.
    """
    text = unicodedata.normalize("NFKC", question)
    terms: dict[str, None] = {}
    for match in _TERM_RUN.finditer(text):
        run = match.group().strip(".-")
        if len(run) < 2:
            continue
        terms[run] = None
        if len(run) >= 3 and "\u4e00" <= run[0] <= "\u9fff":
            for i in range(len(run) - 1):
                terms[run[i : i + 2]] = None
    return sorted(terms, key=len, reverse=True)


def term_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Non-overlapping spans of ``text`` where the terms occur, longest terms first, case-insensitive."""
    lowered = text.lower()
    taken = [False] * len(text)
    spans = []
    for term in sorted(terms, key=len, reverse=True):
        needle = term.lower()
        start = lowered.find(needle)
        while start != -1:
            end = start + len(needle)
            if not any(taken[start:end]):
                spans.append((start, end))
                for i in range(start, end):
                    taken[i] = True
            start = lowered.find(needle, start + 1)
    return sorted(spans)
