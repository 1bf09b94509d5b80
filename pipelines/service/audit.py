"""The audit log: who did what, when, from where, to which collection and document, append-only, in SQLite.

The log is one SQLite file in ``RAG_DATA_DIR`` (``audit.sqlite3``), written like the query log
(pipelines/service/querylog.py): WAL mode, one short transaction per row (``BEGIN IMMEDIATE``, waiting
up to ``busy_seconds`` for another writer), a versioned schema (``PRAGMA user_version``; a file from
a newer version of the product is refused, never rewritten).

    entries   one row per audited act: id, at (UTC, ISO 8601), who (a user, ``key:xxxxxxxx`` for an
              API key, ``cli:USER`` for the machine's user), face, address, action, collection,
              document, detail (the question, the reason for a refusal, the files), outcome, client
              (the program the act came through where the face knows it: an MCP client's name and
              version; schema 2, a version 1 file gains the column at its first write)

Append-only: the product only inserts. The one deletion is the retention sweep (``sweep``: rows older
than ``RAG_AUDIT_DAYS``, 0 keeps them forever), and triggers in the file refuse any UPDATE and the
DELETE of a row younger than a day (no retention is shorter), so that a bug cannot rewrite history.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pipelines.errors import AuditError
from pipelines.service.sqlite_file import SqliteFile

SCHEMA_VERSION = 2
FILE_NAME = "audit.sqlite3"

Action = Literal[
    "sign_in",
    "sign_in_failed",
    "refused",
    "list",
    "search",
    "ask",
    "view",
    "download",
    "upload",
    "delete_document",
    "create_collection",
    "delete_collection",
    "policy_reloaded",
    "feedback",
    "add_source",
    "remove_source",
    "sync",
    "refine_sentences",
]
"""What was done (the catalogue's ``AUDIT_ACTIONS`` names each in Japanese)."""
Outcome = Literal["ok", "refused", "failed"]
"""How it ended: done, refused by a right or a sign-in, or failed (the error in ``detail``)."""

_SCHEMA = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    face TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    collection TEXT NOT NULL DEFAULT '',
    document TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT 'ok',
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX entries_at ON entries (at);
CREATE TRIGGER entries_never_change BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: rows are never changed'); END;
CREATE TRIGGER entries_kept_a_day BEFORE DELETE ON entries
WHEN old.at > strftime('%Y-%m-%dT%H:%M:%S', 'now', '-1 day')
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: a row younger than a day is never deleted'); END
"""
# each upgrade brings a file of that version to the next
_UPGRADES = {1: "ALTER TABLE entries ADD COLUMN client TEXT NOT NULL DEFAULT ''"}


@dataclass(frozen=True)
class AuditEntry:
    """One audited act, as ``audit --json`` prints it and the page lists it."""

    id: int
    at: str
    who: str
    face: str
    address: str
    action: str
    collection: str
    document: str
    detail: str
    outcome: str
    client: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class AuditLog:
    """The audit log in one SQLite file; a connection per call, so any thread or process may write."""

    def __init__(self, path: Path, *, days: int = 365, busy_seconds: float = 30.0) -> None:
        self.path = path
        self.days = days
        self._file = SqliteFile(
            path,
            name="監査ログ",
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            error=AuditError,
            explain=self._explain,
            upgrades=_UPGRADES,
            busy_seconds=busy_seconds,
        )
        self._swept = False  # the retention sweep runs with this object's first row

    def _explain(self, error: BaseException) -> str:
        return (
            f"監査ログ（{self.path}）を読み書きできません（{error}）。記録できない操作は行いません。"
            "ディスクの空きと RAG_DATA_DIR の書き込み権限を確かめてください。"
        )

    # Writing -------------------------------------------------------------------------------------

    def ready(self) -> None:
        """Refused (``AuditError``) unless a row could be written now: checked before an act that cannot be undone."""
        with self._file.connect(write=True):
            pass

    def write(
        self,
        who: str,
        face: str,
        action: Action,
        *,
        address: str = "",
        collection: str = "",
        document: str = "",
        detail: str = "",
        outcome: Outcome = "ok",
        client: str = "",
    ) -> None:
        """Append one row (``AuditError`` when it cannot be written); the first also sweeps out the expired rows."""
        with self._file.connect(write=True) as db:
            if not self._swept:
                self._delete_expired(db, _now())
                self._swept = True
            db.execute(
                "INSERT INTO entries (at, who, face, address, action, collection, document, detail, outcome, client)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_stamp(_now()), who, face, address, action, collection, document, detail, outcome, client),
            )

    def sweep(self, now: datetime | None = None) -> int:
        """Delete the rows older than ``days`` (0: none); how many went."""
        if self.days <= 0 or not self.path.exists():
            return 0
        with self._file.connect(write=True) as db:
            return self._delete_expired(db, now or _now())

    def _delete_expired(self, db: sqlite3.Connection, now: datetime) -> int:
        if self.days <= 0:
            return 0
        cutoff = _stamp(now - timedelta(days=self.days))
        return db.execute("DELETE FROM entries WHERE at < ?", (cutoff,)).rowcount

    # Reading -------------------------------------------------------------------------------------

    def entries(self, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        """The rows at or after ``since``, oldest first; with ``limit``, only the latest that many."""
        if not self.path.exists():
            return []
        query = "SELECT * FROM entries WHERE at >= ? ORDER BY at DESC, id DESC"
        arguments: tuple[Any, ...] = (_stamp(since) if since is not None else "",)
        if limit is not None:
            query += " LIMIT ?"
            arguments += (limit,)
        with self._file.connect(write=False) as db:
            if self._file.check_version(db) == 0:
                return []
            rows = db.execute(query, arguments).fetchall()
        return [AuditEntry(**dict(row)) for row in reversed(rows)]
