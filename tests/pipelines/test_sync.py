"""Folders kept in sync: added, changed, moved, removed, lock files left out, failures retried, deletions held back."""

from __future__ import annotations

import argparse
import json
import os
import unicodedata
from pathlib import Path

import pytest

from pipelines.errors import PermissionDeniedError, SourceError
from pipelines.faces.cli_args import interval
from pipelines.model.embedder import Embedder
from pipelines.service.library import Library
from pipelines.service.policy import parse_policy
from pipelines.service.results import Caller, Question
from pipelines.service.service import Service
from pipelines.settings import Settings
from pipelines.sources.base import Patterns
from pipelines.sources.folder import FolderSource
from testkit.cli import run

ADMIN = Caller("cli")
POLICY = parse_policy("group:総務 規程 admin\ngroup:人事部 規程 read,write\n")
SOUMU = Caller("page", "user:鈴木", "192.0.2.9", POLICY, "鈴木", ("総務",))
JINJI = Caller("page", "user:佐藤", "192.0.2.8", POLICY, "佐藤", ("人事部",))

WORK_RULES = "就業規則。始業は午前九時、終業は午後六時とする。"
TRAVEL = "出張旅費規程。日当は一日三千円とし、宿泊費は実費を支給する。"
LEAVE = "休暇規程。年次有給休暇は入社六か月後に十日付与する。"


def write(path: Path, text: str, mtime: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """A 共有フォルダ as an office keeps it: 規程 in folders, Office's lock file, Windows' thumbnails, a shortcut."""
    root = tmp_path / "共有"
    write(root / "規程" / "人事" / "就業規則.txt", WORK_RULES)
    write(root / "規程" / "総務" / "出張旅費規程.txt", TRAVEL)
    write(root / "規程" / "人事" / "休暇規程.md", LEAVE)
    write(root / "規程" / "人事" / "~$就業規則.docx", "lock")
    write(root / "規程" / "Thumbs.db", "thumbs")
    write(root / "規程" / "desktop.ini", "[.ShellClassInfo]")
    write(root / "規程" / "就業規則 - ショートカット.lnk", "link")
    write(root / "規程" / "図面.dwg", "cad")
    return root


def make_service(tmp_path: Path, model_dir: Path, embedder: Embedder, **settings: object) -> Service:
    # sentence_refine off: the tests count what a sync embeds; a search's idle-time refining would add to it
    made = Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        embedding_model=str(model_dir),
        chunk_tokens=48,
        chunk_overlap=8,
        **({"sentence_refine": False} | settings),
    )
    return Service(Library(made, embedder=embedder))


@pytest.fixture
def service(tmp_path: Path, model_dir: Path, embedder: Embedder) -> Service:
    made = make_service(tmp_path, model_dir, embedder)
    made.create_collection(ADMIN, "規程")
    return made


def names(service: Service) -> list[str]:
    return [d.source for d in service.documents(ADMIN, "規程")]


def test_a_share_is_attached_once_and_kept_current(service: Service, share: Path, embedder: Embedder) -> None:
    info = service.add_source(ADMIN, "規程", str(share))
    assert (info.kind, info.location, info.collection) == ("folder", str(share), "規程")

    [first] = service.sync(ADMIN, "規程")
    assert first.outcome == "ok"
    assert sorted(first.added) == ["規程/人事/休暇規程.md", "規程/人事/就業規則.txt", "規程/総務/出張旅費規程.txt"]
    assert first.skipped == [("規程/図面.dwg", "対応していない形式（.dwg）")]
    assert names(service) == sorted(first.added)  # no lock file, thumbnail, desktop.ini or shortcut
    hit = service.search(ADMIN, "規程", Question("日当", mode="keyword")).hits[0].chunk
    assert hit.source == "規程/総務/出張旅費規程.txt"
    assert service.origins(ADMIN, "規程", [hit.source]) == {hit.source: str(share / "規程/総務/出張旅費規程.txt")}

    # nothing changed: every file skipped on its size and time, none read, nothing embedded
    embedded = embedder.stats.texts
    [again] = service.sync(ADMIN, "規程")
    assert (again.outcome, again.unchanged, again.added, again.replaced) == ("ok", 3, [], [])
    assert embedder.stats.texts == embedded

    # changed: replaced, and the new text is what is found
    write(share / "規程" / "総務" / "出張旅費規程.txt", "出張旅費規程（改定）。日当は一日五千円とする。")
    [changed] = service.sync(ADMIN, "規程")
    assert changed.replaced == ["規程/総務/出張旅費規程.txt"]
    assert "五千円" in service.search(ADMIN, "規程", Question("日当", mode="keyword")).hits[0].chunk.text

    # moved to another folder: the document follows under its new name, nothing embedded again
    embedded = embedder.stats.texts
    (share / "規程" / "旧規程").mkdir()
    (share / "規程" / "人事" / "休暇規程.md").rename(share / "規程" / "旧規程" / "休暇規程.md")
    [moved] = service.sync(ADMIN, "規程")
    assert moved.moved == [("規程/人事/休暇規程.md", "規程/旧規程/休暇規程.md")]
    assert (moved.added, moved.removed) == ([], [])
    assert embedder.stats.texts == embedded
    assert "規程/旧規程/休暇規程.md" in names(service)
    assert "規程/人事/休暇規程.md" not in names(service)
    found = service.search(ADMIN, "規程", Question("有給休暇", mode="keyword")).hits
    assert [h.chunk.source for h in found][:1] == ["規程/旧規程/休暇規程.md"]

    # removed on the share: no longer cited after the next sync
    (share / "規程" / "人事" / "就業規則.txt").unlink()
    [removed] = service.sync(ADMIN, "規程")
    assert removed.removed == ["規程/人事/就業規則.txt"]
    assert "規程/人事/就業規則.txt" not in names(service)
    cited = {h.chunk.source for h in service.search(ADMIN, "規程", Question("始業は何時", k=10)).hits}
    assert "規程/人事/就業規則.txt" not in cited

    [listed] = service.sources(ADMIN, "規程")
    assert (listed.outcome, listed.files, listed.counts["removed"]) == ("ok", 2, 1)


def test_an_unmounted_share_deletes_nothing_until_a_person_confirms(service: Service, share: Path) -> None:
    service.add_source(ADMIN, "規程", str(share))
    service.sync(ADMIN, "規程")
    hidden = share.parent / "外れた共有"
    share.rename(hidden)
    share.mkdir()  # the mount point, empty: the share is not mounted

    [held] = service.sync(ADMIN, "規程")
    assert held.outcome == "held"
    assert "同期元が空になりました（前回は 3 件）" in held.held
    assert held.removed == []
    assert len(held.withheld) == 3
    assert len(names(service)) == 3
    assert service.sources(ADMIN, "規程")[0].message == held.held

    share.rmdir()  # the folder itself is gone: it cannot be listed, nothing is deleted
    [gone] = service.sync(ADMIN, "規程")
    assert gone.outcome == "unreachable"
    assert "がありません" in gone.error
    assert len(names(service)) == 3

    hidden.rename(share)  # mounted again: nothing was lost, nothing is added twice
    [back] = service.sync(ADMIN, "規程")
    assert (back.outcome, back.added, back.removed, back.unchanged) == ("ok", [], [], 3)

    for child in (share / "規程").rglob("*.txt"):
        child.unlink()
    (share / "規程" / "人事" / "休暇規程.md").unlink()
    [empty] = service.sync(ADMIN, "規程")
    assert empty.outcome == "held"
    [confirmed] = service.sync(ADMIN, "規程", allow_deletions=True)
    assert confirmed.outcome == "ok"
    assert len(confirmed.removed) == 3
    assert names(service) == []


def test_losing_more_than_the_set_share_is_held_back(tmp_path: Path, model_dir: Path, embedder: Embedder) -> None:
    service = make_service(tmp_path, model_dir, embedder, sync_max_delete_share=0.5)  # one file alone is never held
    root = tmp_path / "共有"
    for number in range(4):
        write(root / f"規程{number}.txt", f"第{number}条。規程の本文その{number}です。")
    service.add_source(ADMIN, "default", str(root))
    service.sync(ADMIN, "default")
    for number in range(3):
        (root / f"規程{number}.txt").unlink()
    [held] = service.sync(ADMIN, "default")
    assert held.outcome == "held"
    assert "4 件のうち 3 件" in held.held
    assert "50%" in held.held
    (root / "規程1.txt").write_text("第1条。戻しました。", encoding="utf-8")
    (root / "規程2.txt").write_text("第2条。戻しました。", encoding="utf-8")
    [fine] = service.sync(ADMIN, "default")  # one of four: under the share, deleted at once
    assert fine.outcome == "ok"
    assert fine.removed == ["規程0.txt"]


def test_a_file_that_fails_is_reported_and_tried_again(service: Service, share: Path) -> None:
    broken = share / "規程" / "壊れた.pdf"
    broken.write_bytes(b"%PDF-1.4 broken")
    service.add_source(ADMIN, "規程", str(share))
    [first] = service.sync(ADMIN, "規程")
    assert first.outcome == "failed"
    assert len(first.added) == 3
    [(name, reason)] = first.failed
    assert name == "規程/壊れた.pdf"
    assert "壊れた.pdf" in reason
    assert service.sources(ADMIN, "規程")[0].failing == 1

    [again] = service.sync(ADMIN, "規程")  # tried again, though its size and time are the same
    assert [n for n, _ in again.failed] == ["規程/壊れた.pdf"]
    assert again.unchanged == 3

    broken.unlink()
    write(share / "規程" / "壊れた.txt", "直した文書です。")
    [fixed] = service.sync(ADMIN, "規程")
    assert (fixed.outcome, fixed.added, fixed.failed) == ("ok", ["規程/壊れた.txt"], [])


def test_a_duplicate_becomes_the_document_when_its_twin_is_removed(service: Service, share: Path) -> None:
    write(share / "規程" / "写し" / "就業規則のコピー.txt", WORK_RULES)
    service.add_source(ADMIN, "規程", str(share))
    [first] = service.sync(ADMIN, "規程")
    assert first.duplicates == ["規程/写し/就業規則のコピー.txt"]  # 人事 comes before 写し
    (share / "規程" / "人事" / "就業規則.txt").unlink()
    [after] = service.sync(ADMIN, "規程")
    assert "規程/写し/就業規則のコピー.txt" in names(service)
    assert "規程/人事/就業規則.txt" not in names(service)
    assert after.outcome == "ok"


def test_names_are_nfc_and_cp932_names_are_read(tmp_path: Path) -> None:
    root = tmp_path / "共有"
    root.mkdir()
    (root / unicodedata.normalize("NFD", "ガイドライン.txt")).write_text("本文", encoding="utf-8")
    (root / os.fsdecode("経費精算.txt".encode("cp932"))).write_text("本文", encoding="utf-8")
    listing = FolderSource(root).listing()
    assert [e.name for e in listing.entries] == ["ガイドライン.txt", "経費精算.txt"]
    assert listing.unreadable == []


@pytest.mark.parametrize(
    ("path", "counts"),
    [
        ("規程/就業規則.docx", True),
        ("規程/~$就業規則.docx", False),
        ("規程/.~lock.就業規則.odt#", False),
        ("規程/~WRL0001.tmp", False),
        ("Thumbs.db", False),
        ("規程/DESKTOP.INI", False),
        ("規程/.DS_Store", False),
        ("規程/就業規則 - ショートカット.lnk", False),
        ("規程/旧/就業規則.docx", False),
        ("規程/下書き.PDF", False),
    ],
)
def test_which_files_count(path: str, counts: bool) -> None:
    patterns = Patterns(include=("規程/*",), exclude=("*/旧/*", "下書き*"))
    assert (patterns.reason_left_out(path) is None) is counts


def test_only_who_may_administer_the_collection_manages_its_sources(service: Service, share: Path) -> None:
    # the collection's admin may not name a folder or share: that reads the server's files with its password
    with pytest.raises(PermissionDeniedError, match="同期元を加えられるのは、このサーバーの利用者だけ"):
        service.add_source(SOUMU, "規程", str(share))
    assert service.sources(ADMIN) == []
    info = service.add_source(ADMIN, "規程", str(share))
    with pytest.raises(PermissionDeniedError):
        service.add_source(JINJI, "規程", str(share))
    with pytest.raises(PermissionDeniedError):
        service.sync(JINJI, "規程")
    assert service.sources(JINJI) == []
    assert [s.id for s in service.sources(SOUMU)] == [info.id]
    with pytest.raises(SourceError, match="すでに同期しています"):
        service.add_source(ADMIN, "規程", str(share))
    [report] = service.sync(SOUMU, "規程")
    assert report.outcome == "ok"
    rows = service.audit(ADMIN)
    assert {(r.action, r.outcome) for r in rows} >= {("add_source", "ok"), ("sync", "ok"), ("refused", "refused")}
    removed = service.remove_source(SOUMU, "規程", info.id)
    assert removed.id == info.id
    assert service.sources(SOUMU) == []
    assert len(names(service)) == 3  # the documents stay


def test_sources_that_cannot_be_added(service: Service, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="パスワードを URL に書かないでください"):
        service.add_source(ADMIN, "規程", "smb://tanaka:secret@fileserver/共有")
    with pytest.raises(SourceError, match="共有名がありません"):
        service.add_source(ADMIN, "規程", "smb://tanaka@fileserver")
    with pytest.raises(SourceError, match="がありません"):
        service.add_source(ADMIN, "規程", str(tmp_path / "ない"))
    with pytest.raises(SourceError, match="smb://ユーザー@fileserver/共有/規程"):
        service.add_source(ADMIN, "規程", r"\\fileserver\共有\規程")
    loose = tmp_path / "password.txt"
    loose.write_text("secret", encoding="utf-8")
    loose.chmod(0o644)
    with pytest.raises(SourceError, match="chmod 600"):
        service.add_source(ADMIN, "規程", "smb://tanaka@fileserver/共有", password_file=loose)


@pytest.mark.slow
def test_the_command_line(tmp_path: Path, model_dir: Path, share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    assert run("collections", "create", "規程")[0] == 0
    status, out, err = run("sources", "add", "--collection", "規程", str(share), "--exclude", "*/総務/*")
    assert status == 0
    assert "同期元 1 を加えました" in out
    status, out, err = run("sync", "--collection", "規程", "--json")
    assert status == 0, err
    [report] = json.loads(out)
    assert sorted(report["added"]) == ["規程/人事/休暇規程.md", "規程/人事/就業規則.txt"]
    [listed] = json.loads(run("sources", "list", "--json")[1])
    assert (listed["location"], listed["exclude"], listed["outcome"]) == (str(share), ["*/総務/*"], "ok")

    for child in share.rglob("*.*"):
        if child.is_file():
            child.unlink()
    status, out, err = run("sync", "--collection", "規程")
    assert status == 2
    assert "同期元が空になりました" in err
    status, out, err = run("sync", "--allow-deletions")
    assert status == 0
    assert "削除 2" in out

    write(share / "壊れた.pdf", "%PDF-1.4 broken")
    status, out, err = run("sync")
    assert status == 1
    assert "失敗: 壊れた.pdf" in out


def test_a_deleted_collection_takes_its_sources_with_it(service: Service, share: Path) -> None:
    service.add_source(ADMIN, "規程", str(share))
    service.add_source(ADMIN, "default", str(share / "規程" / "総務"))
    service.sync(ADMIN)
    service.delete_collection(ADMIN, "規程")
    assert [s.collection for s in service.sources(ADMIN)] == ["default"]
    [report] = service.sync(ADMIN)
    assert (report.collection, report.outcome, report.unchanged) == ("default", "ok", 1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("90s", 90), ("1h", 3600), ("15", 900), ("30秒", 30), ("2時間", 7200)]
)
def test_sync_every_takes_an_interval(text: str, seconds: float) -> None:
    assert interval(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "毎時", "-5m"])
def test_an_interval_that_is_none_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="間隔"):
        interval(text)
