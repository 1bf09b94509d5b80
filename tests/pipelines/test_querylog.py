"""The query and feedback log: its schema, feedback as it becomes an evaluation item, off, and many writers at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from pipelines.errors import QueryLogError
from pipelines.search.retrieval import Hit
from pipelines.service.compose import build, make_querylog
from pipelines.service.querylog import FILE_NAME, SCHEMA_VERSION, JudgedQuestion, LoggedQuery, QueryLog
from pipelines.settings import Settings
from testkit.records import stored_chunk


def hit(rank: int, chunk: str, source: str = "規程.pdf") -> Hit:
    found = stored_chunk(f"本文{rank}", source, rank - 1, rank, chunk)
    return Hit(found, rank, 1.0 - rank / 10, keyword_score=2.5, dense_rank=rank, keyword_rank=None)


HITS = [hit(1, "v-00000"), hit(2, "v-00001"), hit(3, "v-00002", "手引き.txt")]


def query(
    question: str = "それは入社何か月後から？", standalone: str = "有給休暇は入社何か月後から取れますか？"
) -> LoggedQuery:
    return LoggedQuery(
        question=question,
        standalone_question=standalone,
        hits=HITS,
        mode="hybrid",
        k=3,
        face="page",
        conversation="c1",
        turn=1,
        embedding_model="tiny",
        collection="documents",
    )


def test_the_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / FILE_NAME)
    assert not log.path.exists()  # nothing is created until something is written
    assert log.export() == []
    log.record(query())
    with sqlite3.connect(log.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"queries", "hits", "feedback"}
        columns = {row[1] for row in db.execute("PRAGMA table_info(queries)")}
        assert {"question", "standalone_question", "answer", "citations", "mode", "k", "conversation"} <= columns
        assert {row[1] for row in db.execute("PRAGMA table_info(feedback)")} >= {"target", "rank", "rating", "comment"}


def test_a_question_its_hits_answer_and_feedback_are_exported(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / FILE_NAME)
    query_id = log.record(query())
    assert query_id == 1
    citations = [{"n": 1, "source": "規程.pdf", "page": 1, "location": "1 ページ", "rank": 1}]
    log.record_answer(query_id, "入社して六か月後からです[1]。", citations)
    log.feedback(query_id, "answer", 1, "わかりやすい")
    log.feedback(query_id, "hit", -1, rank=2)
    log.feedback(query_id, "hit", 1, "ここに書いてある", rank=1)
    log.feedback(query_id, "hit", 1, rank=2)  # changed their mind: the same card's row is replaced
    (exported,) = log.export()
    assert exported["question"] == "それは入社何か月後から？"
    assert exported["standalone_question"] == "有給休暇は入社何か月後から取れますか？"
    assert (exported["face"], exported["conversation"], exported["turn"], exported["mode"]) == (
        "page",
        "c1",
        1,
        "hybrid",
    )
    assert exported["answer"] == "入社して六か月後からです[1]。"
    assert exported["citations"] == citations
    assert [(h["rank"], h["chunk_id"], h["source"]) for h in exported["hits"]] == [
        (1, "v-00000", "規程.pdf"),
        (2, "v-00001", "規程.pdf"),
        (3, "v-00002", "手引き.txt"),
    ]
    assert exported["hits"][0]["cosine"] == pytest.approx(0.9)
    assert exported["hits"][0]["keyword_rank"] is None
    judged = {(f["target"], f["rank"]): (f["rating"], f["comment"]) for f in exported["feedback"]}
    assert judged == {
        ("answer", 0): (1, "わかりやすい"),
        ("hit", 1): (1, "ここに書いてある"),
        ("hit", 2): (1, ""),
    }
    log.feedback(query_id, "answer", None)  # the rating cleared; the comment given before stays
    answer = next(f for f in log.export()[0]["feedback"] if f["target"] == "answer")
    assert (answer["rating"], answer["comment"]) == (None, "わかりやすい")


def test_a_liked_card_becomes_an_evaluation_item(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / FILE_NAME)
    first = log.record(query())
    log.feedback(first, "hit", 1, rank=2)
    log.feedback(first, "hit", -1, rank=1)  # a 👎 is no answer
    log.feedback(first, "answer", 1)  # nor is a 👍 on the answer alone
    unjudged = log.record(query("別の質問", "別の質問"))
    log.feedback(unjudged, "answer", 1)
    again = log.record(query("有給休暇は入社何か月後から取れますか？", "有給休暇は入社何か月後から取れますか？"))
    log.feedback(again, "hit", 1, rank=3)  # the same question searched again: one item, both chunks
    assert log.judged_questions() == [
        JudgedQuestion(
            first or 0, "有給休暇は入社何か月後から取れますか？", ("v-00001", "v-00002"), ("規程.pdf", "手引き.txt")
        )
    ]


def test_feedback_on_an_unknown_query_is_refused(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / FILE_NAME)
    log.record(query())
    with pytest.raises(QueryLogError, match="番号 99 の質問がありません"):
        log.feedback(99, "answer", 1)
    with pytest.raises(ValueError, match="rating"):
        log.feedback(1, "answer", 5)


def test_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_QUERY_LOG", "off")
    settings = Settings.from_env()
    assert settings.query_log is False
    log = make_querylog(settings)
    assert log.path == settings.data_dir / FILE_NAME
    assert log.record(query()) is None
    log.record_answer(1, "回答")
    log.feedback(1, "answer", 1)
    assert not log.path.exists()
    assert not settings.data_dir.exists()
    assert build(settings).querylog.enabled is False
    assert Settings.from_env({"RAG_QUERY_LOG": "on"}).query_log is True
    assert Settings().query_log is True  # on by default


def test_a_log_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(QueryLogError, match="新しい版の製品"):
        QueryLog(path).record(query())
    with pytest.raises(QueryLogError, match="新しい版の製品"):
        QueryLog(path).export()


def _write_feedback(path: str, worker: int, count: int) -> None:
    log = QueryLog(Path(path))
    for number in range(count):
        query_id = log.record(query(f"質問 {worker}-{number}", f"質問 {worker}-{number}"))
        log.feedback(query_id, "hit", 1 if number % 2 else -1, f"コメント {worker}", rank=1 + number % 3)
        log.feedback(query_id, "answer", 1)


@pytest.mark.slow
def test_sessions_writing_feedback_at_once_lose_nothing(tmp_path: Path) -> None:
    """Threads (the page's sessions) and processes (CLI, another app server) write to one log at the same time."""
    path = str(tmp_path / FILE_NAME)
    threads = [threading.Thread(target=_write_feedback, args=(path, n, 15)) for n in range(4)]
    processes = [
        multiprocessing.get_context("spawn").Process(target=_write_feedback, args=(path, 10 + n, 15)) for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for process in processes:
        process.start()
    for thread in threads:
        thread.join(60)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    exported = QueryLog(Path(path)).export()
    assert len(exported) == 6 * 15
    assert len({q["question"] for q in exported}) == 6 * 15
    assert all(len(q["hits"]) == 3 and len(q["feedback"]) == 2 for q in exported)
    assert len(QueryLog(Path(path)).judged_questions()) == 6 * 7  # the odd numbers got 👍


def test_a_version_1_log_gains_who_at_its_first_write(tmp_path: Path) -> None:
    """A log written before ``who`` was kept is brought up to date in place; its rows stay, with no one named."""
    from pipelines.service import querylog

    path = tmp_path / FILE_NAME
    with sqlite3.connect(path) as db:
        db.executescript(querylog._SCHEMA.replace(",\n    who TEXT NOT NULL DEFAULT ''", ""))
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO queries (created_at, face, question, standalone_question, mode, k)"
            " VALUES ('2026-01-01T00:00:00+00:00', 'page', '古い質問', '古い質問', 'hybrid', 5)"
        )
        assert "who" not in {row[1] for row in db.execute("PRAGMA table_info(queries)")}
    log = QueryLog(path)
    assert [q["question"] for q in log.export()] == ["古い質問"]  # reading a version 1 file changes nothing
    asked = log.record(LoggedQuery("新しい質問", "新しい質問", HITS, "hybrid", 3, who="alice"))
    log.feedback(asked, "answer", -1, who="bob")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    exported = log.export()
    assert [(q["question"], q["who"]) for q in exported] == [("古い質問", ""), ("新しい質問", "alice")]
    assert [(f["rating"], f["who"]) for f in exported[1]["feedback"]] == [(-1, "bob")]
