"""SMB shares kept in sync against a real Samba server: Japanese names, changes, moves, a server that goes down, a wrong password."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from pipelines.model.embedder import Embedder
from pipelines.service.library import Library
from pipelines.service.results import Caller
from pipelines.service.service import Service
from pipelines.settings import Settings
from testkit.cli import run
from testkit.smb import PASSWORD, Smbd

ADMIN = Caller("cli")
WORK_RULES = "就業規則。始業は午前九時、終業は午後六時とする。"
TRAVEL = "出張旅費規程。日当は一日三千円とし、宿泊費は実費を支給する。"
LEAVE = "休暇規程。年次有給休暇は入社六か月後に十日付与する。"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def fill(share: Path) -> None:
    write(share / "規程" / "人事" / "就業規則.txt", WORK_RULES)
    write(share / "規程" / "総務" / "出張旅費規程.txt", TRAVEL)
    write(share / "規程" / "人事" / "休暇規程.md", LEAVE)
    write(share / "規程" / "人事" / "~$就業規則.docx", "lock")
    write(share / "規程" / "Thumbs.db", "thumbs")


def make_service(tmp_path: Path, model_dir: Path, embedder: Embedder, password: str = PASSWORD) -> Service:
    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        embedding_model=str(model_dir),
        chunk_tokens=48,
        chunk_overlap=8,
        smb_password=password,
        smb_timeout=5,
        sentence_refine=False,  # the tests count what a sync embeds; a search's idle-time refining would add to it
    )
    return Service(Library(settings, embedder=embedder))


def synced(smbd: Smbd, service: Service) -> Service:
    """The service with the share filled, attached to ``default`` and synced once."""
    fill(smbd.share)
    service.add_source(ADMIN, "default", smbd.url())
    [report] = service.sync(ADMIN, "default")
    assert report.outcome == "ok", report.error
    return service


def names(service: Service) -> list[str]:
    return [d.source for d in service.documents(ADMIN, "default")]


def test_a_share_with_japanese_names_is_kept_in_sync(
    smbd: Smbd, tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    fill(smbd.share)
    service = make_service(tmp_path, model_dir, embedder)
    info = service.add_source(ADMIN, "default", smbd.url())
    assert info.location == smbd.url()
    assert info.kind == "smb"

    [first] = service.sync(ADMIN, "default")
    assert first.outcome == "ok", first.error
    assert sorted(first.added) == ["規程/人事/休暇規程.md", "規程/人事/就業規則.txt", "規程/総務/出張旅費規程.txt"]
    assert names(service) == sorted(first.added)  # neither the lock file nor Thumbs.db
    where = service.origins(ADMIN, "default", ["規程/人事/就業規則.txt"])
    assert where == {"規程/人事/就業規則.txt": "\\\\127.0.0.1\\bunsho\\規程\\人事\\就業規則.txt"}

    embedded = embedder.stats.texts
    [unchanged] = service.sync(ADMIN, "default")
    assert (unchanged.outcome, unchanged.unchanged, unchanged.added) == ("ok", 3, [])
    assert embedder.stats.texts == embedded

    write(smbd.share / "規程" / "総務" / "出張旅費規程.txt", "出張旅費規程（改定）。日当は一日五千円とする。")
    (smbd.share / "規程" / "人事" / "休暇規程.md").rename(smbd.share / "規程" / "休暇規程（旧）.md")
    (smbd.share / "規程" / "人事" / "就業規則.txt").unlink()
    [changed] = service.sync(ADMIN, "default")
    assert changed.outcome == "ok"
    assert changed.replaced == ["規程/総務/出張旅費規程.txt"]
    assert changed.moved == [("規程/人事/休暇規程.md", "規程/休暇規程（旧）.md")]
    assert changed.removed == ["規程/人事/就業規則.txt"]
    assert names(service) == ["規程/休暇規程（旧）.md", "規程/総務/出張旅費規程.txt"]


def test_a_server_that_stops_mid_sync_loses_nothing(
    smbd: Smbd, tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    for number in range(6):
        write(smbd.share / "規程" / f"規程{number}.txt", f"第{number}条。規程の本文その{number}です。")
    service = make_service(tmp_path, model_dir, embedder)
    service.add_source(ADMIN, "default", smbd.url("規程"))

    def stop_the_server(name: str, done: int, total: int) -> None:
        if done == 2:
            smbd.stop()

    [stopped] = service.sync(ADMIN, "default", progress=stop_the_server)
    assert stopped.outcome == "unreachable"
    assert "ファイルサーバー 127.0.0.1" in stopped.error
    assert "接続できません" in stopped.error
    assert stopped.added == ["規程0.txt", "規程1.txt"]
    assert stopped.removed == []

    [down] = service.sync(ADMIN, "default")  # down for the night: nothing deleted, the reason said
    assert down.outcome == "unreachable"
    assert "接続できません" in down.error
    assert names(service) == ["規程0.txt", "規程1.txt"]
    assert service.sources(ADMIN, "default")[0].outcome == "unreachable"

    smbd.start()
    [back] = service.sync(ADMIN, "default")
    assert back.outcome == "ok", back.error
    assert back.added == ["規程2.txt", "規程3.txt", "規程4.txt", "規程5.txt"]
    assert back.unchanged == 2
    assert len(names(service)) == 6


def test_a_share_that_comes_back_empty_deletes_nothing(
    smbd: Smbd, tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    service = synced(smbd, make_service(tmp_path, model_dir, embedder))
    for child in sorted(smbd.share.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    [held] = service.sync(ADMIN, "default")
    assert held.outcome == "held"
    assert "同期元が空になりました（前回は 3 件）" in held.held
    assert len(names(service)) == 3


def test_a_wrong_password_or_share_says_so_and_deletes_nothing(
    smbd: Smbd, tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    service = synced(smbd, make_service(tmp_path, model_dir, embedder))

    wrong = make_service(tmp_path, model_dir, embedder, password="違うパスワード")
    [refused] = wrong.sync(ADMIN, "default")
    assert refused.outcome == "unreachable"
    assert f"ユーザー「{smbd.user}」でログオンできません" in refused.error
    assert len(names(wrong)) == 3

    wrong.add_source(ADMIN, "default", f"smb://{smbd.user}@127.0.0.1:{smbd.port}/ない共有")
    reports = service.sync(ADMIN, "default")
    assert [r.outcome for r in reports] == ["ok", "unreachable"]
    assert "共有「ない共有」がファイルサーバー 127.0.0.1 にありません" in reports[1].error

    # the password is in no row of the audit log, no source and no report
    shown = json.dumps(
        [r.to_dict() for r in reports] + [s.to_dict() for s in service.sources(ADMIN)], ensure_ascii=False
    )
    logged = json.dumps([list(map(str, vars(row).values())) for row in service.audit(ADMIN)], ensure_ascii=False)
    assert PASSWORD not in shown
    assert PASSWORD not in logged
    assert PASSWORD not in repr(service.settings)


@pytest.mark.slow
def test_the_command_line_with_a_password_file(
    smbd: Smbd, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(smbd.share)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    secret = tmp_path / "smb-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    os.chmod(secret, 0o600)
    status, out, err = run("sources", "add", "--json", smbd.url("規程"), "--password-file", str(secret))
    assert status == 0, err
    assert json.loads(out)["password_file"] == str(secret)
    status, out, err = run("sync", "--json")
    assert status == 0, err
    [report] = json.loads(out)
    assert report["counts"]["added"] == 3
    assert PASSWORD not in out + err
    assert PASSWORD not in run("sources", "list", "--json")[1]


def test_a_share_is_reached_from_a_process_with_many_files_open(
    smbd: Smbd, tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    """A socket numbered past 1023 (a server up for weeks, or this suite late in its run) still reaches the share:
    smbprotocol's own ``select`` would refuse it (``ValueError``) and the share read as unreachable."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"only {hard} files may be open here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if soft != resource.RLIM_INFINITY else soft, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        service = make_service(tmp_path, model_dir, embedder)
        fill(smbd.share)
        service.add_source(ADMIN, "default", smbd.url())
        [report] = service.sync(ADMIN, "default")
        assert report.outcome == "ok", report.error
        assert len(report.added) == 3
        service.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
