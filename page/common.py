"""What every part of the page shares: the page's caller, the chosen collection, and text shown safely."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.search.highlight import term_spans
from pipelines.service.results import Caller, Right
from pipelines.service.service import Service

# the page's caller: without sign-in the page serves this machine only, with every right
PAGE = Caller("page")
ZWSP = "\u200b"  # a zero-width space: no width, and to Markdown neither a space nor punctuation
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


@dataclass(frozen=True)
class Here:
    """Where this session is: the service, who the person is to it, and the collection they chose."""

    service: Service
    collection: str
    caller: Caller = PAGE

    def may(self, right: Right) -> bool:
        """Whether the person may do ``right`` to the chosen collection (to offer only the buttons that work)."""
        return right in self.service.rights(self.caller, self.collection)


def escape_markdown(text: str) -> str:
    """Text from a document shown as itself: no Markdown, HTML, links or formulas; line breaks kept."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def render_passage(text: str, terms: list[str], emphasis: tuple[int, int]) -> str:
    """A passage as safe Markdown: the question's words highlighted, its best sentence in bold.

    Markdown does not close ``**`` between punctuation and a letter, as in 「…する。**申請は」, which is
    where Japanese puts it whenever a sentence follows another (the ``**`` was shown as it is); a
    zero-width space inside each ``**``, to Markdown neither space nor punctuation, lets it open and close.
    """
    start, end = emphasis
    marks = [(a, b) for a, b in term_spans(text, terms) if b <= start or a >= end or start <= a < b <= end]

    def piece(a: int, b: int) -> str:
        out, cursor = [], a
        for x, y in marks:
            if a <= x and y <= b:
                out.append(escape_markdown(text[cursor:x]))
                out.append(f":orange[{escape_markdown(text[x:y])}]")
                cursor = y
        out.append(escape_markdown(text[cursor:b]))
        return "".join(out)

    if start >= end:
        return piece(0, len(text))
    return piece(0, start) + f"**{ZWSP}" + piece(start, end) + f"{ZWSP}**" + piece(end, len(text))
