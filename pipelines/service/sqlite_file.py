"""One SQLite file of a log (the query log, the audit log): a versioned schema, a connection and a transaction per call.

Written in WAL mode, one short transaction per write (``BEGIN IMMEDIATE``, waiting up to ``busy_seconds``
for another writer), so the page's sessions, CLI processes and an HTTP API can all write at once. The
schema's version is the file's ``PRAGMA user_version``: a new file gets the schema, an older one its
upgrades in order, and a file from a newer version of the product is refused, never rewritten.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pipelines.errors import RagError


class SqliteFile:
    """A log's SQLite file; its failures raised as ``error`` with ``explain``'s Japanese words."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        schema: str,
        version: int,
        error: type[RagError],
        explain: Callable[[BaseException], str],
        upgrades: Mapping[int, str] | None = None,
        busy_seconds: float = 30.0,
        foreign_keys: bool = False,
    ) -> None:
        """``schema``'s statements end in ``;`` and a line break (a trigger's inner ``;`` do not); ``upgrades[v]``
        brings a file of version ``v`` to ``v + 1``. ``name`` is what people call the log (「監査ログ」)."""
        self.path = path
        self.name = name
        self.schema = schema
        self.version = version
        self.error = error
        self.explain = explain
        self.upgrades = upgrades or {}
        self.busy_seconds = busy_seconds
        self.foreign_keys = foreign_keys

    @contextlib.contextmanager
    def connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction: ``BEGIN IMMEDIATE`` for a write (writers queue, never deadlock)."""
        try:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.busy_seconds, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise self.error(self.explain(error)) from error
        try:
            connection.row_factory = sqlite3.Row
            if self.foreign_keys:
                connection.execute("PRAGMA foreign_keys = ON")
            if write:
                self._migrate(connection)
                connection.execute("BEGIN IMMEDIATE")
            else:
                self.check_version(connection)
                connection.execute("BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            raise self.error(self.explain(error)) from error
        finally:
            connection.close()

    def check_version(self, connection: sqlite3.Connection) -> int:
        """The file's schema version (0: no schema yet); refused when a newer product made it."""
        found = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if found > self.version:
            raise self.error(
                f"{self.name}（{self.path}）は新しい版の製品が作ったもの（形式 {found}、この版は {self.version}）です。"
                "製品を新しくするか、RAG_DATA_DIR を分けてください。"
            )
        return found

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """The schema, created once or brought up to date (WAL mode is a property of the file and stays)."""
        if self.check_version(connection) == self.version:
            return
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            found = self.check_version(connection)  # another writer may have done it meanwhile
            scripts = [self.schema] if found == 0 else [self.upgrades[v] for v in range(found, self.version)]
            for script in scripts:
                for statement in script.split(";\n"):
                    if statement.strip():
                        connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {self.version}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
