"""What a sync remembers, in ``RAG_DATA_DIR/sources.sqlite3``: each source, and each of its files as last synced.

    sources   the collection, kind and location (never a password), the patterns, the password file's
              path, who added it and when, and how the last sync ended (its time, counts and message)
    files     per source, each file's name, size, time, content hash, its status (stored, duplicate,
              failed) and its error

A file's row is written only after the store has committed what it did (added, replaced, moved,
deleted), so a sync killed at any point is finished by the next one: a file whose document is there
with the same content is recorded, not embedded again; a document that was moved is found under
either name; nothing is added twice and nothing is lost.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pipelines.errors import SourceError, SourceNotFoundError
from pipelines.service.sqlite_file import SqliteFile
from pipelines.sources.base import Kind

FileStatus = Literal["stored", "duplicate", "failed"]
Outcome = Literal["", "ok", "failed", "held", "unreachable"]

_SCHEMA = """
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    include TEXT NOT NULL DEFAULT '[]',
    exclude TEXT NOT NULL DEFAULT '[]',
    password_file TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL,
    added_by TEXT NOT NULL DEFAULT '',
    synced_at TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    counts TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '',
    UNIQUE (collection, location)
);
CREATE TABLE files (
    source INTEGER NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    synced_at TEXT NOT NULL,
    PRIMARY KEY (source, name)
);
CREATE INDEX files_hash ON files (source, hash);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class SourceInfo:
    """A source as kept: what it is, where, and how its last sync ended (``counts``: files by outcome)."""

    id: int
    collection: str
    kind: Kind
    location: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    password_file: str = ""
    added_at: str = ""
    added_by: str = ""
    synced_at: str = ""
    outcome: Outcome = ""
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""
    files: int = 0
    failing: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The source for ``--json`` and the API: the password file's path, never a password."""
        data = asdict(self)
        data["include"], data["exclude"] = list(self.include), list(self.exclude)
        return data


@dataclass(frozen=True)
class FileRow:
    """A file of a source as last synced."""

    name: str
    size: int
    mtime_ns: int
    hash: str
    status: FileStatus
    error: str = ""


def _explain(error: BaseException) -> str:
    return f"同期の記録（sources.sqlite3）を読み書きできません（{error}）。データディレクトリを確かめてください。"


class SyncState:
    """The sources and their files' last synced state, in one SQLite file shared by every process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(
            path, name="同期の記録", schema=_SCHEMA, version=1, error=SourceError, explain=_explain, foreign_keys=True
        )

    # -- sources ----------------------------------------------------------------------------------

    def add(
        self,
        collection: str,
        kind: Kind,
        location: str,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        password_file: str = "",
        added_by: str = "",
    ) -> SourceInfo:
        """Keep a new source (``SourceError`` when the collection follows this location already)."""
        try:
            with self._file.connect(write=True) as db:
                cursor = db.execute(
                    "INSERT INTO sources (collection, kind, location, include, exclude, password_file, added_at,"
                    " added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        collection,
                        kind,
                        location,
                        json.dumps(list(include), ensure_ascii=False),
                        json.dumps(list(exclude), ensure_ascii=False),
                        password_file,
                        _now(),
                        added_by,
                    ),
                )
                number = int(cursor.lastrowid or 0)
        except SourceError as error:
            if isinstance(error.__cause__, sqlite3.IntegrityError):
                raise SourceError(f"コレクション「{collection}」は {location} をすでに同期しています。") from None
            raise
        return self.source(collection, number)

    def sources(self, collection: str | None = None) -> list[SourceInfo]:
        """The sources of one collection, or of all, in the order they were added."""
        if not self.path.exists():
            return []
        where, args = ("WHERE s.collection = ?", (collection,)) if collection is not None else ("", ())
        with self._file.connect(write=False) as db:
            if not db.execute("SELECT name FROM sqlite_master WHERE name = 'sources'").fetchone():
                return []
            rows = db.execute(
                "SELECT s.*, (SELECT COUNT(*) FROM files f WHERE f.source = s.id AND f.status != 'failed') AS held,"
                " (SELECT COUNT(*) FROM files f WHERE f.source = s.id AND f.status = 'failed') AS failing"
                f" FROM sources s {where} ORDER BY s.id",
                args,
            ).fetchall()
        return [_info(row) for row in rows]

    def source(self, collection: str, number: int) -> SourceInfo:
        """One source of the collection by its number (``SourceNotFoundError`` when it has none)."""
        for info in self.sources(collection):
            if info.id == number:
                return info
        raise SourceNotFoundError(
            f"コレクション「{collection}」に番号 {number} の同期元はありません。`sources list` で確かめてください。"
        )

    def remove(self, number: int) -> None:
        """Forget a source and its files' state."""
        with self._file.connect(write=True) as db:
            db.execute("DELETE FROM sources WHERE id = ?", (number,))

    def remove_collection(self, collection: str) -> None:
        """Forget the sources of a deleted collection."""
        if not self.path.exists():
            return
        with self._file.connect(write=True) as db:
            db.execute("DELETE FROM sources WHERE collection = ?", (collection,))

    def finished(self, number: int, outcome: Outcome, counts: dict[str, int], message: str) -> None:
        """Record how a sync of the source ended."""
        with self._file.connect(write=True) as db:
            db.execute(
                "UPDATE sources SET synced_at = ?, outcome = ?, counts = ?, message = ? WHERE id = ?",
                (_now(), outcome, json.dumps(counts), message, number),
            )

    # -- files ------------------------------------------------------------------------------------

    def files(self, number: int) -> dict[str, FileRow]:
        """The source's files as last synced, by name."""
        with self._file.connect(write=False) as db:
            rows = db.execute(
                "SELECT name, size, mtime_ns, hash, status, error FROM files WHERE source = ?", (number,)
            ).fetchall()
        return {row["name"]: FileRow(*row) for row in rows}

    def record(self, number: int, row: FileRow, *, instead_of: str = "") -> None:
        """Record a file as synced (after the store committed); ``instead_of``: the name it was moved from."""
        with self._file.connect(write=True) as db:
            if instead_of:
                db.execute("DELETE FROM files WHERE source = ? AND name = ?", (number, instead_of))
            db.execute(
                "INSERT OR REPLACE INTO files (source, name, size, mtime_ns, hash, status, error, synced_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (number, row.name, row.size, row.mtime_ns, row.hash, row.status, row.error, _now()),
            )

    def forget(self, number: int, name: str) -> None:
        """Forget a file that is no longer in the source (after its document was deleted)."""
        with self._file.connect(write=True) as db:
            db.execute("DELETE FROM files WHERE source = ? AND name = ?", (number, name))

    def holder(self, collection: str, names: Iterable[str]) -> dict[str, int]:
        """Which source of the collection each of these documents came from, by name (those from none left out)."""
        wanted = sorted(set(names))
        if not wanted or not self.path.exists():
            return {}
        found: dict[str, int] = {}
        with self._file.connect(write=False) as db:
            if not db.execute("SELECT name FROM sqlite_master WHERE name = 'files'").fetchone():
                return {}
            for begin in range(0, len(wanted), 500):
                batch = wanted[begin : begin + 500]
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    "SELECT f.name, f.source FROM files f JOIN sources s ON s.id = f.source"
                    f" WHERE s.collection = ? AND f.status = 'stored' AND f.name IN ({marks})",
                    (collection, *batch),
                ).fetchall()
                found.update((row["name"], int(row["source"])) for row in rows)
        return found


def _info(row: sqlite3.Row) -> SourceInfo:
    return SourceInfo(
        id=int(row["id"]),
        collection=row["collection"],
        kind=row["kind"],
        location=row["location"],
        include=tuple(json.loads(row["include"])),
        exclude=tuple(json.loads(row["exclude"])),
        password_file=row["password_file"],
        added_at=row["added_at"],
        added_by=row["added_by"],
        synced_at=row["synced_at"],
        outcome=row["outcome"],
        counts=json.loads(row["counts"]),
        message=row["message"],
        files=int(row["held"]),
        failing=int(row["failing"]),
    )
