"""A sync killed halfway (SIGKILL) is finished by the next one: no document twice, none lost, no chunk left over."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.store.chroma import ChromaStore

FILES = 24


def start_sync(env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pipelines", "sync", "--collection", "default"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sync_to_the_end(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "pipelines", "sync", "--collection", "default"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def recorded(data: Path, prefix: str) -> int:
    """How many of the source's files the sync has recorded under names starting with ``prefix``."""
    try:
        with sqlite3.connect(f"file:{data / 'sources.sqlite3'}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM files WHERE name LIKE ?", (prefix + "%",)).fetchone()[0])
    except sqlite3.Error:
        return 0


def kill_after(process: subprocess.Popen[bytes], data: Path, prefix: str, count: int) -> bool:
    """SIGKILL the sync once it has recorded ``count`` files; False when it ended first."""
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if recorded(data, prefix) >= count:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


def check_store(data: Path, names: set[str]) -> None:
    store = ChromaStore.persistent(data)
    try:
        documents = store.documents()
        assert {d.source for d in documents} == names
        assert len({d.content_hash for d in documents}) == len(documents)  # nothing stored twice
        assert store.count() == sum(d.chunks for d in documents)  # no chunk left over, none missing
    finally:
        store.close()


@pytest.mark.slow
def test_a_sync_killed_halfway_resumes_without_duplicates_or_losses(tmp_path: Path, model_dir: Path) -> None:
    share = tmp_path / "共有"
    for number in range(FILES):
        path = share / "規程" / f"規程{number:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"第{number}条。この規程は番号{number}の手続きを定める。申請は{number}日前までに行う。", encoding="utf-8"
        )
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path.cwd()),
        "RAG_DATA_DIR": str(data),
        "RAG_EMBEDDING_MODEL": str(model_dir),
        "RAG_DEVICE": "cpu",
        "RAG_CHUNK_TOKENS": "48",
        "RAG_CHUNK_OVERLAP": "8",
    }
    assert (
        subprocess.run(
            [sys.executable, "-m", "pipelines", "sources", "add", str(share)], env=env, capture_output=True
        ).returncode
        == 0
    )

    # killed three times as files are added: each run goes on where the last was killed
    kills = sum(kill_after(start_sync(env), data, "規程/", count) for count in (3, 9, 15))
    assert kills >= 2, "the syncs ended before they could be killed"
    sync_to_the_end(env)
    names = {f"規程/規程{number:02d}.txt" for number in range(FILES)}
    check_store(data, names)
    assert recorded(data, "規程/") == FILES

    # the folder renamed on the share: every document moves; killed halfway through the moves
    (share / "規程").rename(share / "社内規程")
    killed = kill_after(start_sync(env), data, "社内規程/", FILES // 2)
    sync_to_the_end(env)
    moved = {name.replace("規程/", "社内規程/", 1) for name in names}
    check_store(data, moved)
    assert (recorded(data, "社内規程/"), recorded(data, "規程/")) == (FILES, 0)
    print(f"killed {kills} times while adding, {int(killed)} while moving")
