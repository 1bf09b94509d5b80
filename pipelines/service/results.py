"""What the service hands its faces: who asks, what is asked, and the typed results and events they render."""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pipelines.choices import Mode
from pipelines.model.precision import PrecisionChoice
from pipelines.search.retrieval import Hit, hit_json
from pipelines.service.policy import Grants, Right, permitted
from pipelines.store.indexing import FileReport
from pipelines.store.records import StoredChunk, StoredDocument

if TYPE_CHECKING:  # LangChain and the viewer's libraries are imported only by what answers or views
    from pipelines.answers.answer import Answer
    from pipelines.answers.conversation import Turn
    from pipelines.search.page_view import PageImage
    from pipelines.search.text_views import RowsView, SlideView, TextView

Face = Literal["page", "cli", "api", "mcp"]
"""Where a request comes from."""


@dataclass(frozen=True)
class Caller:
    """Who makes a request, from which face and address, and what they may do.

    ``grants`` None means every right: the machine's own user on the CLI, and the page or the API where
    no sign-in or key is configured (they then serve this machine only). An API key's caller carries
    the key's grants; a signed-in person's carries ``user`` and ``groups`` and, as ``grants``, the
    policy (pipelines/service/policy.py), asked at each check so that a changed policy holds at once.
    The service checks a caller's rights in one place (``Service._allow``), whatever the face.
    ``client`` names the program the request comes through where the face knows it (an MCP client's
    name and version, 「Claude Desktop 1.2」), for the audit log.
    """

    face: Face
    name: str = ""
    address: str = ""
    grants: Grants | None = None
    user: str = ""
    groups: tuple[str, ...] = ()
    client: str = ""

    def may(self, collection: str, right: Right) -> bool:
        """Whether this caller may do ``right`` to the collection named ``collection`` (its name as kept)."""
        return permitted(self.grants, collection, right, self.user, self.groups)


def machine_caller(face: Face) -> Caller:
    """The machine's own user, with every right (the CLI; MCP over stdio), named in the logs ``cli:USER`` by the OS user."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment and none in the password database
        user = "?"
    return Caller(face, f"cli:{user}")


@dataclass(frozen=True)
class Question:
    """A question to one collection and how to search it (None: the configured default)."""

    text: str
    k: int | None = None
    mode: Mode | None = None
    sources: tuple[str, ...] = ()
    best_sentences: bool = True


@dataclass(frozen=True)
class Found:
    """The passages found for a question.

    ``searched`` is the question that was searched (a follow-up made standalone), ``spans`` each hit's
    sentence closest to the question (None where it was not asked for), ``stored`` whether the
    collection holds any document, ``query_id`` the question's row in the query log (None: not
    logged), ``log_error`` why the log could not be written ("" when it was).
    """

    question: str
    searched: str
    collection: str
    hits: list[Hit]
    mode: Mode
    k: int
    rule: str
    stored: bool
    spans: list[tuple[int, int]] | None = None
    query_id: int | None = None
    log_error: str = ""

    def hits_json(self) -> list[dict[str, Any]]:
        """The hits as ``search --json`` and the API give them, each with its best sentence when it was found."""
        spans: Sequence[tuple[int, int] | None] = self.spans if self.spans is not None else [None] * len(self.hits)
        return [hit_json(hit, span) for hit, span in zip(self.hits, spans, strict=True)]

    def emphasis(self, rank: int) -> tuple[int, int]:
        """The span of the hit at ``rank``'s best sentence ((0, 0): none)."""
        if self.spans is None or not 1 <= rank <= len(self.spans):
            return (0, 0)
        return self.spans[rank - 1]


@dataclass(frozen=True)
class Rewritten:
    """The follow-up was made standalone: this is what will be searched."""

    question: str


@dataclass(frozen=True)
class RewriteFailed:
    """The follow-up could not be rewritten; the question is searched as typed."""

    message: str


@dataclass(frozen=True)
class Searched:
    """The passages the answer will be written from."""

    found: Found


@dataclass(frozen=True)
class Delta:
    """A piece of the answer's text, as the chat model writes it."""

    text: str


@dataclass(frozen=True)
class Answered:
    """The whole answer, its citations checked, and the conversation's new turn."""

    answer: Answer
    turn: Turn


@dataclass(frozen=True)
class AnswerFailed:
    """No answer could be written (the chat model failed); the turn records why."""

    message: str
    turn: Turn


AskEvent = Rewritten | RewriteFailed | Searched | Delta | Answered | AnswerFailed
"""What a conversation turn yields, in order: Rewritten or RewriteFailed (follow-ups only), Searched,
Delta pieces, then Answered or AnswerFailed."""


@dataclass
class Ingested:
    """What an upload or an ingest did: a report per file, warnings, the embedding's figures.

    ``error`` is set when the store or the model refused, which stops the files after it (the reports
    of the files before stay).
    """

    reports: list[FileReport]
    seconds: float
    embedded_texts: int = 0
    embedded_tokens: int = 0
    embedding_seconds: float = 0.0
    precision: PrecisionChoice | None = None
    token_counting: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def tokens_per_second(self) -> float:
        return self.embedded_tokens / self.embedding_seconds if self.embedding_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """As ``ingest --json`` and the API's upload give it."""
        return {
            "files": [asdict(r) for r in self.reports],
            "embedded_texts": self.embedded_texts,
            "embedded_tokens": self.embedded_tokens,
            "embedding_seconds": round(self.embedding_seconds, 3),
            "model_loaded": self.precision is not None,
            "precision": asdict(self.precision) if self.precision is not None else None,
            "token_counting": self.token_counting,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class Original:
    """A stored document's file as it was given, and the name to save it under."""

    document: StoredDocument
    name: str
    data: bytes


@dataclass(frozen=True)
class PassageText:
    """A stored passage with the document's text just before and just after it (its neighbours' parts it does
    not show); ``collection`` is the collection's name as kept."""

    collection: str
    document: StoredDocument
    chunk: StoredChunk
    before: str
    after: str


@dataclass(frozen=True)
class PassageView:
    """A passage in its original: the document, the chunk and what the viewer made of the file.

    ``view`` is a rendered page (PDF, scans), the rows around it (Excel, CSV), the slide (PowerPoint),
    or the text around it (the rest); None with ``problem`` set when the file could not be shown, or
    when no original is kept.
    """

    document: StoredDocument
    chunk: StoredChunk
    page: int | None
    view: PageImage | RowsView | SlideView | TextView | None
    problem: str = ""
