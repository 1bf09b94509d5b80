"""The query log: each question, what was searched, the hits and the answer, and people's 👍/👎 on them, in SQLite.

The log is one SQLite file in ``RAG_DATA_DIR`` (``querylog.sqlite3``); nothing of it leaves the machine.
It is written in WAL mode, one short transaction per write (``BEGIN IMMEDIATE``, waiting up to
``busy_seconds`` for another writer), so the page's sessions, CLI processes and an HTTP API can all
write at once. Its schema is versioned (``PRAGMA user_version``): a file from a newer version of the
product is refused, never rewritten; one from an older version is brought up to date at the first write
(version 2 added ``who``).

    queries   one row per question asked: who asked (the caller's name), the question as typed, the
              standalone question that was searched, the face, the conversation, the settings that
              ordered the hits, the answer
    hits      the passages shown for a query: rank, chunk id, source, scores
    feedback  one row per judged target of a query (the answer, or the card at a rank): 👍 (1) or
              👎 (-1), an optional comment and who judged; judging a target again replaces its row

``enabled=False`` (``RAG_QUERY_LOG=off``) writes nothing and creates no file; reading still reads
what an earlier run wrote.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pipelines.errors import QueryLogError
from pipelines.search.retrieval import Hit
from pipelines.service.sqlite_file import SqliteFile

SCHEMA_VERSION = 2
FILE_NAME = "querylog.sqlite3"

Target = Literal["answer", "hit"]
"""What feedback is about: a query's answer, or one of its cards (by rank)."""
Face = Literal["page", "cli", "api", "mcp"]
"""Where a question was asked."""

_SCHEMA = """
CREATE TABLE queries (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    face TEXT NOT NULL,
    conversation TEXT NOT NULL DEFAULT '',
    turn INTEGER NOT NULL DEFAULT 0,
    question TEXT NOT NULL,
    standalone_question TEXT NOT NULL,
    mode TEXT NOT NULL,
    k INTEGER NOT NULL,
    sources TEXT NOT NULL DEFAULT '[]',
    embedding_model TEXT NOT NULL DEFAULT '',
    collection TEXT NOT NULL DEFAULT '',
    answer TEXT,
    citations TEXT NOT NULL DEFAULT '[]',
    who TEXT NOT NULL DEFAULT ''
);
CREATE TABLE hits (
    query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    source TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    location TEXT NOT NULL DEFAULT '',
    cosine REAL NOT NULL,
    keyword_score REAL,
    dense_rank INTEGER,
    keyword_rank INTEGER,
    rerank_score REAL,
    PRIMARY KEY (query_id, rank)
);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY,
    query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
    target TEXT NOT NULL CHECK (target IN ('answer', 'hit')),
    rank INTEGER NOT NULL DEFAULT 0,
    rating INTEGER CHECK (rating IN (-1, 1)),
    comment TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    who TEXT NOT NULL DEFAULT '',
    UNIQUE (query_id, target, rank)
);
CREATE INDEX feedback_liked ON feedback (target, rating);
"""
# what brings a file of each older version to the next one
_UPGRADES = {
    1: "ALTER TABLE queries ADD COLUMN who TEXT NOT NULL DEFAULT '';\n"
    "ALTER TABLE feedback ADD COLUMN who TEXT NOT NULL DEFAULT ''",
}


@dataclass(frozen=True)
class LoggedQuery:
    """What to log about one question: as typed, as searched, how, what was found and answered."""

    question: str
    standalone_question: str
    hits: Sequence[Hit]
    mode: str
    k: int
    face: Face = "cli"
    conversation: str = ""
    turn: int = 0
    sources: Sequence[str] = ()
    embedding_model: str = ""
    collection: str = ""
    answer: str | None = None
    citations: Sequence[dict[str, Any]] = ()
    who: str = ""


@dataclass(frozen=True)
class JudgedQuestion:
    """A logged question whose cards got 👍: the question that was searched and the chunks judged right."""

    query_id: int
    question: str
    chunk_ids: tuple[str, ...]
    sources: tuple[str, ...]


def _empty(db: sqlite3.Connection) -> bool:
    """Whether the file holds no log yet (created by a writer that has not made its tables)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0]) == 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class QueryLog:
    """The query and feedback log in one SQLite file; a connection per call, so any thread or process may write."""

    def __init__(self, path: Path, *, enabled: bool = True, busy_seconds: float = 30.0) -> None:
        self.path = path
        self.enabled = enabled
        self._file = SqliteFile(
            path,
            name="質問の記録",
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            upgrades=_UPGRADES,
            error=QueryLogError,
            explain=self._explain,
            busy_seconds=busy_seconds,
            foreign_keys=True,
        )

    def _explain(self, error: BaseException) -> str:
        return (
            f"質問の記録（{self.path}）を読み書きできません（{error}）。ディスクの空きと書き込み権限を確かめるか、"
            "記録が要らなければ RAG_QUERY_LOG=off にしてください。"
        )

    # Writing -------------------------------------------------------------------------------------

    def record(self, query: LoggedQuery) -> int | None:
        """Log a question and its hits; its id (for feedback and the answer), or None when the log is off."""
        if not self.enabled:
            return None
        with self._file.connect(write=True) as db:
            cursor = db.execute(
                "INSERT INTO queries (created_at, face, conversation, turn, question, standalone_question, mode, k,"
                " sources, embedding_model, collection, answer, citations, who)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _now(),
                    query.face,
                    query.conversation,
                    query.turn,
                    query.question,
                    query.standalone_question,
                    query.mode,
                    query.k,
                    json.dumps(list(query.sources), ensure_ascii=False),
                    query.embedding_model,
                    query.collection,
                    query.answer,
                    json.dumps(list(query.citations), ensure_ascii=False),
                    query.who,
                ),
            )
            query_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO hits (query_id, rank, chunk_id, source, chunk_index, location, cosine, keyword_score,"
                " dense_rank, keyword_rank, rerank_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        query_id,
                        h.rank,
                        h.chunk_id,
                        h.chunk.source,
                        h.chunk.chunk_index,
                        h.chunk.location,
                        h.cosine,
                        h.keyword_score,
                        h.dense_rank,
                        h.keyword_rank,
                        h.rerank_score,
                    )
                    for h in query.hits
                ],
            )
        return query_id

    def record_answer(self, query_id: int | None, answer: str, citations: Sequence[dict[str, Any]] = ()) -> None:
        """Add the answer (streamed after the hits were logged) to a logged question."""
        if not self.enabled or query_id is None:
            return
        with self._file.connect(write=True) as db:
            db.execute(
                "UPDATE queries SET answer = ?, citations = ? WHERE id = ?",
                (answer, json.dumps(list(citations), ensure_ascii=False), query_id),
            )

    def feedback(
        self,
        query_id: int | None,
        target: Target,
        rating: int | None,
        comment: str | None = None,
        rank: int = 0,
        who: str = "",
    ) -> None:
        """Judge a query's answer (``target="answer"``) or its card at ``rank``: 1 👍, -1 👎, None no rating.

        Judging the same target again replaces the rating and who judged; ``comment=None`` keeps the
        comment given before.
        """
        if not self.enabled or query_id is None:
            return
        if rating not in (None, 1, -1):
            raise ValueError(f"rating must be 1, -1 or None, not {rating!r}")
        rank = rank if target == "hit" else 0
        now = _now()
        with self._file.connect(write=True) as db:
            if db.execute("SELECT 1 FROM queries WHERE id = ?", (query_id,)).fetchone() is None:
                raise QueryLogError(f"質問の記録に番号 {query_id} の質問がありません。")
            db.execute(
                "INSERT INTO feedback (query_id, target, rank, rating, comment, created_at, updated_at, who)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (query_id, target, rank) DO UPDATE SET rating = excluded.rating,"
                " comment = CASE WHEN ? IS NULL THEN comment ELSE excluded.comment END,"
                " updated_at = excluded.updated_at, who = excluded.who",
                (query_id, target, rank, rating, comment or "", now, now, who, comment),
            )

    # Reading -------------------------------------------------------------------------------------

    def export(self) -> list[dict[str, Any]]:
        """Every logged question, oldest first, with its hits and feedback (``log --json``)."""
        if not self.path.exists():
            return []
        with self._file.connect(write=False) as db:
            if _empty(db):
                return []
            queries = [dict(row) for row in db.execute("SELECT * FROM queries ORDER BY id")]
            hits: dict[int, list[dict[str, Any]]] = {}
            for row in map(dict, db.execute("SELECT * FROM hits ORDER BY query_id, rank")):
                hits.setdefault(row.pop("query_id"), []).append(row)
            feedback: dict[int, list[dict[str, Any]]] = {}
            for row in map(dict, db.execute("SELECT * FROM feedback ORDER BY query_id, target, rank")):
                del row["id"]
                feedback.setdefault(row.pop("query_id"), []).append(row)
        for query in queries:
            query["sources"] = json.loads(query["sources"])
            query["citations"] = json.loads(query["citations"])
            query["hits"] = hits.get(query["id"], [])
            query["feedback"] = feedback.get(query["id"], [])
        return queries

    def judged_questions(self) -> list[JudgedQuestion]:
        """The logged questions with a 👍 on a card, each with the chunks liked, oldest first.

        The question is the standalone one, the one that was searched. The same question liked in
        several queries is one item, its liked chunks together.
        """
        if not self.path.exists():
            return []
        with self._file.connect(write=False) as db:
            if _empty(db):
                return []
            rows = db.execute(
                "SELECT q.id, q.standalone_question, h.chunk_id, h.source FROM feedback f"
                " JOIN queries q ON q.id = f.query_id"
                " JOIN hits h ON h.query_id = f.query_id AND h.rank = f.rank"
                " WHERE f.target = 'hit' AND f.rating = 1 ORDER BY q.id, h.rank"
            ).fetchall()
        grouped: dict[str, tuple[int, dict[str, str]]] = {}
        for query_id, question, chunk, source in rows:
            grouped.setdefault(question, (query_id, {}))[1].setdefault(chunk, source)
        return [
            JudgedQuestion(first, question, tuple(chunks), tuple(chunks.values()))
            for question, (first, chunks) in grouped.items()
        ]
