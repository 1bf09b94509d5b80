"""The service's core: the library it serves, the one place rights are checked, and the audit row of every act."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.errors import IngestError
from pipelines.errors import (
    AuditError,
    PermissionDeniedError,
    RagError,
)
from pipelines.model.embedder import TextEmbedder
from pipelines.service import words
from pipelines.service.audit import Action, Outcome
from pipelines.service.compose import Pipelines
from pipelines.service.library import Library
from pipelines.service.policy import RIGHTS
from pipelines.service.results import (
    Caller,
    Ingested,
    Right,
)
from pipelines.settings import Settings
from pipelines.store.collections import canonical_name

# characters of text shown either side of a passage in a text view (a screen's worth, without scrolling)
VIEW_CONTEXT = 400
_RIGHT_WORDS: dict[Right, str] = {"read": "読み取り", "download": "ダウンロード", "write": "書き込み", "admin": "管理"}


@dataclass
class _Note:
    """What an audited act's row will say, filled in as the act learns it (an upload's files)."""

    document: str = ""
    detail: str = ""
    outcome: Outcome = "ok"


class ServiceCore:
    """What every part of the service shares: the library, the one rights check, the audit row."""

    def __init__(self, library: Library) -> None:
        self.library = library

    @property
    def settings(self) -> Settings:
        return self.library.settings

    @property
    def embedder(self) -> TextEmbedder:
        """The one model every collection shares (its name, precision and how it counts tokens)."""
        return self.library.embedder

    def close(self) -> None:
        """End what the service holds open (a command's last act; a server's at shutdown)."""
        self.library.close()

    # -- rights ---------------------------------------------------------------------------------------

    def _allow(self, caller: Caller, name: str, right: Right) -> str:
        """The collection's name as kept, once ``caller`` may do ``right`` to it; refused otherwise."""
        cleaned = canonical_name(name)
        if not caller.may(cleaned, right):
            message = f"コレクション「{cleaned}」の{_RIGHT_WORDS[right]}の権限がありません。管理者に確かめてください。"
            self._refused(caller, cleaned, message)
            raise PermissionDeniedError(message)
        return cleaned

    def rights(self, caller: Caller, collection: str) -> frozenset[Right]:
        """What the caller may do to a collection: for a face to offer only the buttons that will work."""
        cleaned = canonical_name(collection)
        return frozenset(right for right in RIGHTS if caller.may(cleaned, right))

    def _parts(self, caller: Caller, name: str, right: Right) -> Pipelines:
        """A collection's parts, once ``caller`` may do ``right`` to it."""
        return self.library.pipelines(self._allow(caller, name, right))

    # -- the audit row of every act ------------------------------------------------------------------

    def _audit(
        self,
        caller: Caller,
        action: Action,
        collection: str = "",
        document: str = "",
        detail: str = "",
        outcome: Outcome = "ok",
    ) -> None:
        self.library.audit.write(
            who(caller),
            caller.face,
            action,
            address=caller.address,
            collection=collection,
            document=document,
            detail=detail,
            outcome=outcome,
            client=caller.client,
        )

    def _refused(self, caller: Caller, collection: str, reason: str) -> None:
        # the refusal stands whether or not its row can be written: nothing was done
        with contextlib.suppress(AuditError):
            self._audit(caller, "refused", collection, detail=reason, outcome="refused")

    @contextlib.contextmanager
    def _recorded(
        self,
        caller: Caller,
        action: Action,
        collection: str = "",
        document: str = "",
        detail: str = "",
        *,
        before: bool = True,
    ) -> Iterator[_Note]:
        """An audited act: its row written when it ends (failed: with why); ``before``: refused unless the log can take it.

        An act that changes something checks first, since it cannot be undone; one that only reads
        writes its row before its result is returned, so nothing is shown that was not recorded.
        """
        if before:
            self.library.audit.ready()
        note = _Note(document, detail)
        try:
            yield note
        except (RagError, IngestError) as error:
            self._audit(caller, action, collection, note.document, f"{note.detail}（{error}）", "failed")
            raise
        self._audit(caller, action, collection, note.document, note.detail, note.outcome)

    @staticmethod
    def _noted(note: _Note, result: Ingested) -> Ingested:
        """An ingest's files and what became of each, in its row; its document when there was one file."""
        note.detail = "、".join(f"{r.source}（{words.STATUS_LABELS[r.status]}）" for r in result.reports) or note.detail
        note.document = result.reports[0].source if len(result.reports) == 1 else ""
        if result.error:  # the store or the model refused: the files before it went in
            note.detail += f"（{result.error}）"
            note.outcome = "failed"
        return result


def who(caller: Caller) -> str:
    """The caller's name in the logs: a user, an API key's digest, the machine's user; else the face."""
    return caller.name or caller.face
