"""The audit log: a row for every act on every face, refusals too, append-only, kept RAG_AUDIT_DAYS, and no act unrecorded."""

from __future__ import annotations

import getpass
import io
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.errors import AuditError, DocumentNotFoundError, PermissionDeniedError
from pipelines.faces.cli import main
from pipelines.model.embedder import Embedder
from pipelines.service import words
from pipelines.service.audit import FILE_NAME, SCHEMA_VERSION, AuditLog
from pipelines.service.keys import LEGACY, Grant
from pipelines.service.library import Library
from pipelines.service.results import Caller, Question
from pipelines.service.service import Service
from pipelines.settings import Settings

LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。"
CLERK = Caller("api", "key:0badc0de", "192.0.2.7")  # every right: no key configured
HR_READER = Caller("api", "key:hr", "127.0.0.1", (Grant("k" * 16, "人事*", LEGACY["read"]),))


@pytest.fixture
def service(tmp_path: Path, model_dir: Path, embedder: Embedder) -> Service:
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", embedding_model=str(model_dir), chunk_tokens=48, chunk_overlap=8
    )
    return Service(Library(settings, embedder=embedder))


def rows(service: Service) -> list[tuple[str, str, str, str, str]]:
    """Each row's action, who, collection, document and outcome, oldest first."""
    return [(e.action, e.who, e.collection, e.document, e.outcome) for e in service.audit(Caller("cli"))]


def test_each_act_writes_its_row_with_who_where_and_what(service: Service) -> None:
    service.create_collection(CLERK, "人事規程")
    service.upload(CLERK, "人事規程", [("規程.txt", LEAVE.encode())])
    found = service.search(CLERK, "人事規程", Question("有給休暇はいつから"))
    service.passage(CLERK, "人事規程", "規程.txt", 0, None)
    service.original(CLERK, "人事規程", "規程.txt")
    service.feedback(CLERK, found.query_id or 0, "hit", 1, rank=1)
    service.documents(CLERK, "人事規程")  # lists are not recorded
    service.collections(CLERK)
    service.delete_document(CLERK, "人事規程", "規程.txt")
    service.delete_collection(CLERK, "人事規程")
    assert rows(service) == [
        ("create_collection", "key:0badc0de", "人事規程", "", "ok"),
        ("upload", "key:0badc0de", "人事規程", "規程.txt", "ok"),
        ("search", "key:0badc0de", "人事規程", "", "ok"),
        ("view", "key:0badc0de", "人事規程", "規程.txt", "ok"),
        ("download", "key:0badc0de", "人事規程", "規程.txt", "ok"),
        ("feedback", "key:0badc0de", "", "", "ok"),
        ("delete_document", "key:0badc0de", "人事規程", "規程.txt", "ok"),
        ("delete_collection", "key:0badc0de", "人事規程", "", "ok"),
    ]
    entries = service.audit(Caller("cli"))
    assert {(e.face, e.address) for e in entries} == {("api", "192.0.2.7")}
    assert entries[1].detail == "規程.txt（追加）"
    assert entries[2].detail == "有給休暇はいつから"
    assert entries[3].detail == "チャンク 0"
    at = datetime.fromisoformat(entries[0].at)
    assert at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    # the query log says who asked and who judged
    logged = service.log(Caller("cli"))
    assert logged[0]["who"] == "key:0badc0de"
    assert logged[0]["feedback"][0]["who"] == "key:0badc0de"


def test_a_refused_attempt_writes_refused_and_is_still_refused(service: Service) -> None:
    service.create_collection(CLERK, "人事規程")
    with pytest.raises(PermissionDeniedError):
        service.upload(HR_READER, "人事規程", [("追加.txt", "追加です。".encode())])
    with pytest.raises(PermissionDeniedError):
        service.audit(HR_READER)
    refused = service.audit(Caller("cli"))[-2:]
    assert [(e.action, e.who, e.collection, e.outcome) for e in refused] == [
        ("refused", "key:hr", "人事規程", "refused"),
        ("refused", "key:hr", "*", "refused"),
    ]
    assert "書き込みの権限がありません" in refused[0].detail
    assert not service.reads_audit(HR_READER)
    assert service.reads_audit(Caller("api", "key:all", "", (Grant("a" * 16, "*", LEGACY["write"]),)))


def test_a_failed_act_is_recorded_with_why(service: Service) -> None:
    with pytest.raises(DocumentNotFoundError, match=r"ない\.txt"):
        service.delete_document(CLERK, "default", "ない.txt")
    (entry,) = service.audit(Caller("cli"))
    assert (entry.action, entry.document, entry.outcome) == ("delete_document", "ない.txt", "failed")
    assert "という文書はありません" in entry.detail


def test_rows_are_never_changed_and_young_rows_never_deleted(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / FILE_NAME)
    assert not log.path.exists()
    assert log.entries() == []
    log.write("alice", "page", "search", collection="default", detail="質問")
    with sqlite3.connect(log.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE entries SET who = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM entries")
    assert [e.who for e in log.entries()] == ["alice"]


def _old_row(path: Path, days: int) -> None:
    at = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO entries (at, who, face, action) VALUES (?, 'old', 'cli', 'search')", (at,))


def test_the_retention_sweep_removes_only_rows_older_than_the_days(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / FILE_NAME, days=30)
    log.write("first", "cli", "search")
    _old_row(log.path, 40)
    _old_row(log.path, 20)
    assert log.sweep() == 1
    assert sorted(e.who for e in log.entries()) == ["first", "old"]
    _old_row(log.path, 40)
    AuditLog(log.path, days=30).write("next", "cli", "search")  # a process's first row sweeps too
    assert sorted(e.who for e in log.entries()) == ["first", "next", "old"]
    forever = AuditLog(log.path, days=0)
    _old_row(log.path, 4000)
    assert forever.sweep() == 0
    assert len(forever.entries()) == 4
    assert [e.who for e in forever.entries(since=datetime.now(UTC) - timedelta(days=1))] == ["first", "next"]
    assert [e.who for e in forever.entries(limit=1)] == ["next"]


def test_a_version_1_log_gains_the_client_column_at_its_first_write(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    with sqlite3.connect(path) as db:  # the schema of version 1, with a row
        db.executescript(
            "CREATE TABLE entries (id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL, face TEXT NOT NULL,"
            " address TEXT NOT NULL DEFAULT '', action TEXT NOT NULL, collection TEXT NOT NULL DEFAULT '',"
            " document TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT 'ok');"
            "INSERT INTO entries (at, who, face, action) VALUES ('2026-12-01T00:00:00+00:00', 'old', 'cli', 'search');"
            "PRAGMA user_version = 1;"
        )
    log = AuditLog(path, days=0)
    assert [(e.who, e.client) for e in log.entries()] == [("old", "")]
    log.write("assistant", "mcp", "search", client="Claude Desktop 1.2")
    assert [(e.who, e.client) for e in log.entries()] == [("old", ""), ("assistant", "Claude Desktop 1.2")]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


def test_an_mcp_call_names_its_client_and_lists_are_rows_when_asked(service: Service) -> None:
    assistant = Caller("mcp", "cli:tanaka", client="Claude Desktop 1.2")
    service.upload(CLERK, "default", [("規程.txt", LEAVE.encode())])
    service.collections(assistant, recorded=True)
    service.documents(assistant, "default", recorded=True)
    read = service.passage_text(assistant, "default", "規程.txt", 0)
    assert (read.collection, read.chunk.text, read.before, read.after) == ("default", LEAVE, "", "")
    entries = service.audit(Caller("cli"))[1:]
    assert [(e.face, e.who, e.client, e.action, e.collection, e.document, e.detail) for e in entries] == [
        ("mcp", "cli:tanaka", "Claude Desktop 1.2", "list", "", "", "1 コレクション"),
        ("mcp", "cli:tanaka", "Claude Desktop 1.2", "list", "default", "", "1 文書"),
        ("mcp", "cli:tanaka", "Claude Desktop 1.2", "view", "default", "規程.txt", "チャンク 0"),
    ]
    assert words.audit_fields(entries[0])[1] == "cli:tanaka（Claude Desktop 1.2）"
    with pytest.raises(DocumentNotFoundError, match="chunk"):
        service.passage_text(assistant, "default", "規程.txt", 5)


def test_a_log_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / FILE_NAME)
    with sqlite3.connect(log.path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(AuditError, match="新しい版"):
        log.write("alice", "page", "search")


def _unwritable(data_dir: Path) -> None:
    for kept in data_dir.glob(f"{FILE_NAME}*"):
        kept.unlink()
    (data_dir / FILE_NAME).mkdir()  # no file can be opened there, whoever runs the test (root included)


def test_no_act_is_done_or_shown_when_its_row_cannot_be_written(service: Service) -> None:
    service.upload(CLERK, "default", [("規程.txt", LEAVE.encode())])
    _unwritable(service.settings.data_dir)
    with pytest.raises(AuditError, match="監査ログ"):
        service.upload(CLERK, "default", [("追加.txt", "追加の文書です。".encode())])
    with pytest.raises(AuditError):
        service.delete_document(CLERK, "default", "規程.txt")
    with pytest.raises(AuditError):
        service.create_collection(CLERK, "新規")
    with pytest.raises(AuditError):
        service.search(CLERK, "default", Question("有給休暇"))
    with pytest.raises(AuditError):
        service.original(CLERK, "default", "規程.txt")
    assert [d.source for d in service.documents(CLERK, "default")] == ["規程.txt"]  # nothing changed
    assert service.collection_names(CLERK) == ["default"]
    with pytest.raises(PermissionDeniedError):  # a refusal stands without its row
        service.upload(HR_READER, "default", [])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_data_directory_refuses_a_write(service: Service) -> None:
    service.upload(CLERK, "default", [("規程.txt", LEAVE.encode())])
    for kept in service.settings.data_dir.glob(f"{FILE_NAME}*"):
        kept.unlink()
    service.settings.data_dir.chmod(0o555)
    try:
        with pytest.raises(AuditError):
            service.create_collection(CLERK, "新規")
    finally:
        service.settings.data_dir.chmod(0o755)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_the_cli_names_its_os_user_and_prints_the_log(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    assert run("audit")[:2] == (0, words.NO_AUDIT_ENTRIES + "\n")
    assert run("collections", "create", "人事")[0] == 0
    status, out, _ = run("audit", "--json")
    assert status == 0
    (row,) = json.loads(out)
    assert {"at", "who", "action", "collection", "document"} <= set(row)
    assert (row["who"], row["action"], row["collection"], row["document"]) == (
        f"cli:{getpass.getuser()}",
        "create_collection",
        "人事",
        "",
    )
    status, out, _ = run("audit", "--since", "7d")
    fields = out.rstrip("\n").split("\t")
    assert (status, fields[1:5]) == (0, [f"cli:{getpass.getuser()}", "コレクション作成", "人事", ""])
    tomorrow = (datetime.now() + timedelta(days=1)).date().isoformat()
    assert json.loads(run("audit", "--json", "--since", tomorrow)[1]) == []
    with pytest.raises(SystemExit):
        run("audit", "--since", "先週")
