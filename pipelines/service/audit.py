"""The audit log: who did what, when, from where, to which collection and document, append-only, in SQLite.

The log is one SQLite file in ``RAG_DATA_DIR`` (``audit.sqlite3``), written like the query log
(pipelines/service/querylog.py): WAL mode, one short transaction per row (``BEGIN IMMEDIATE``, waiting
up to ``busy_seconds`` for another writer), a versioned schema (``PRAGMA user_version``; a file from
a newer version of the product is refused, never rewritten).

    entries   one row per audited act: id, at (UTC, ISO 8601), who (a user, ``key:xxxxxxxx`` for an
              API key, ``cli:USER`` for the machine's user), face, address, action, collection,
              document, detail (the question, the reason for a refusal, the files), outcome

Append-only: the product only inserts. The one deletion is the retention sweep (``sweep``: rows older
than ``RAG_AUDIT_DAYS``, 0 keeps them forever), and triggers in the file refuse any UPDATE and the
DELETE of a row younger than a day (no retention is shorter), so that a bug cannot rewrite history.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pipelines.errors import AuditError

SCHEMA_VERSION = 1
FILE_NAME = "audit.sqlite3"

Action = Literal[
    "sign_in",
    "sign_in_failed",
    "refused",
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
    outcome TEXT NOT NULL DEFAULT 'ok'
);
CREATE INDEX entries_at ON entries (at);
CREATE TRIGGER entries_never_change BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: rows are never changed'); END;
CREATE TRIGGER entries_kept_a_day BEFORE DELETE ON entries
WHEN old.at > strftime('%Y-%m-%dT%H:%M:%S', 'now', '-1 day')
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: a row younger than a day is never deleted'); END
"""


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
        self.busy_seconds = busy_seconds
        self._swept = False  # the retention sweep runs with this object's first row

    @contextlib.contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction: ``BEGIN IMMEDIATE`` for a write (writers queue, never deadlock)."""
        try:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.busy_seconds, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise AuditError(self._explain(error)) from error
        try:
            connection.row_factory = sqlite3.Row
            if write:
                self._migrate(connection)
                connection.execute("BEGIN IMMEDIATE")
            else:
                self._check_version(connection)
                connection.execute("BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            raise AuditError(self._explain(error)) from error
        finally:
            connection.close()

    def _explain(self, error: BaseException) -> str:
        return (
            f"監査ログ（{self.path}）を読み書きできません（{error}）。記録できない操作は行いません。"
            "ディスクの空きと RAG_DATA_DIR の書き込み権限を確かめてください。"
        )

    def _check_version(self, connection: sqlite3.Connection) -> int:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise AuditError(
                f"監査ログ（{self.path}）は新しい版の製品が作ったもの（形式 {version}、この版は {SCHEMA_VERSION}）です。"
                "製品を新しくするか、RAG_DATA_DIR を分けてください。"
            )
        return version

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """The schema, created once (WAL mode is a property of the file and stays)."""
        if self._check_version(connection) == SCHEMA_VERSION:
            return
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            if self._check_version(connection) == 0:  # another writer may have created it meanwhile
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    # Writing -------------------------------------------------------------------------------------

    def ready(self) -> None:
        """Refused (``AuditError``) unless a row could be written now: checked before an act that cannot be undone."""
        with self._connect(write=True):
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
    ) -> None:
        """Append one row (``AuditError`` when it cannot be written); the first also sweeps out the expired rows."""
        with self._connect(write=True) as db:
            if not self._swept:
                self._delete_expired(db, _now())
                self._swept = True
            db.execute(
                "INSERT INTO entries (at, who, face, address, action, collection, document, detail, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_stamp(_now()), who, face, address, action, collection, document, detail, outcome),
            )

    def sweep(self, now: datetime | None = None) -> int:
        """Delete the rows older than ``days`` (0: none); how many went."""
        if self.days <= 0 or not self.path.exists():
            return 0
        with self._connect(write=True) as db:
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
        with self._connect(write=False) as db:
            if self._check_version(db) == 0:
                return []
            rows = db.execute(query, arguments).fetchall()
        return [AuditEntry(**dict(row)) for row in reversed(rows)]
