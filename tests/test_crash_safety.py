"""Crash safety: ingest in a child process, killed with SIGKILL at many points; nothing is ever half there.

Every document listed is whole, searchable and has its original file; what a killed run left (chunks
of an uncommitted version, an original no document uses) is cleaned by a later write.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Searcher
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.originals import Originals
from testkit.documents import SENTENCES

pytestmark = [pytest.mark.slow, pytest.mark.server]  # ingests in child processes, killed at many points

REPO = Path(__file__).resolve().parents[1]
KILLS = 8


def corpus(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(24):
        lines = [f"{SENTENCES[(i + j) % 5]}（文書{i}、第{j}文、版{version}）" for j in range(40)]
        (folder / f"文書{i:02d}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def ingest(folder: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pipelines", "ingest", str(folder)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def check_consistent(data_dir: Path, embedder: Embedder) -> tuple[int, int, set[str]]:
    """Every listed document is whole and searchable; anything else is invisible, then cleaned."""
    store = ChromaStore.persistent(data_dir)
    documents = store.documents()
    searcher = Searcher(embedder, store)
    for document in documents:
        hits = searcher.search(SENTENCES[0], k=500, sources=[document.source])
        assert len(hits) == document.chunks, document.source
        assert {h.chunk.version for h in hits} == {document.version}
        assert sorted(h.chunk.chunk_index for h in hits) == list(range(document.chunks))
    for document in documents:  # never visible without its original, and that is the file's bytes
        path = Originals(data_dir / "originals").path(document.content_hash)
        assert path is not None, document.source
        assert hashlib.sha256(path.read_bytes()).hexdigest() == document.content_hash
    visible = sum(d.chunks for d in documents)
    leftovers = store.count() - visible
    with store.writing():  # the next writer cleans what the killed one left
        pass
    assert store.count() == visible
    store.close()
    return len(documents), leftovers, {d.content_hash for d in documents}


def test_sigkill_at_many_points_loses_nothing(tmp_path: Path, model_dir: Path, embedder: Embedder) -> None:
    env = {
        **os.environ,
        "RAG_EMBEDDING_MODEL": str(model_dir),
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_CHUNK_TOKENS": "48",
        "RAG_CHUNK_OVERLAP": "8",
    }
    first = corpus(tmp_path / "v1", 1)
    assert ingest(first, env).wait(timeout=300) == 0
    baseline, _, _ = check_consistent(tmp_path / "data", embedder)
    assert baseline == 24

    # Now replace every document with a new version, killing the run in the middle of writing a document:
    # while it holds the store's write lock, at a point that moves through the write from one kill to the
    # next. The points are fractions of how long the run held the lock for its previous document, so they
    # span the write on a fast machine and on a slow one alike; up to 0.66 of it, since a hold can be
    # shorter than the one before (a later point could come after it ended).
    second = corpus(tmp_path / "v1", 2)
    new_hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in second.iterdir()}
    survived = []
    for kill in range(KILLS):
        process = ingest(second, env)
        landed = kill_while_writing(process, tmp_path / "data" / "write.lock", fraction=0.7 * (kill + 0.5) / KILLS)
        assert landed, f"kill {kill}: the run ended before it was caught writing"
        documents, leftovers, hashes = check_consistent(tmp_path / "data", embedder)
        assert documents == 24  # every document is there, old version or new, never missing
        survived.append((len(hashes & new_hashes), leftovers))
    # the kills landed mid-write: some left a new version's chunks written but not committed (then cleaned)
    assert any(leftovers for _, leftovers in survived), survived
    assert ingest(second, env).wait(timeout=300) == 0  # a re-run finishes the job
    store = ChromaStore.persistent(tmp_path / "data")
    assert {d.content_hash for d in store.documents()} == new_hashes
    store.close()
    print(f"killed {KILLS} times; (documents already replaced, chunks left behind and cleaned): {survived}")


def kill_while_writing(process: subprocess.Popen[bytes], lock: Path, fraction: float) -> bool:
    """SIGKILL ``process`` during its second hold of the store's write lock, ``fraction`` of the way through.

    The lock is held exactly while a document's chunks and registry record are written (store.writing),
    so a kill sent while it is held lands in the middle of a write. The first hold (the first document
    that needs writing) is timed, and the kill is sent ``fraction`` of that time into the second; a hold
    that ends before that point is not killed, and the next is aimed at by its length. Returns whether a
    kill landed: False when the run ended first.
    """
    started = 0.0
    first: float | None = None
    free = True
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        busy = lock_is_held(lock)
        now = time.monotonic()
        if busy and free:
            started = now
            if first is not None:
                time.sleep(fraction * first)
                if lock_is_held(lock):
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return True
                # this hold was shorter than the point (the first one may have cleaned up after the last
                # kill): aim at the next hold by this one's length at most
                first = time.monotonic() - started
                free = True
                continue
        elif not free and not busy and first is None:
            first = now - started
        free = not busy
        time.sleep(0.0005)
    process.kill()
    process.wait()
    return False


def lock_is_held(lock: Path) -> bool:
    """Whether another process holds the store's write lock now (a non-blocking try, released at once)."""
    try:
        handle = lock.open("a")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def kept(data_dir: Path) -> set[str]:
    """Every file under the originals' directory (temporary ones too)."""
    return {p.name for p in (data_dir / "originals").rglob("*") if p.is_file()}


def test_sigkill_after_the_original_is_written_leaves_an_orphan_that_a_later_write_sweeps(
    tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "RAG_EMBEDDING_MODEL": str(model_dir),
        "RAG_DATA_DIR": str(data),
        "RAG_CHUNK_TOKENS": "48",
        "RAG_CHUNK_OVERLAP": "8",
    }
    first = corpus(tmp_path / "v1", 1)
    assert ingest(first, env).wait(timeout=300) == 0
    second = corpus(tmp_path / "v1", 2)
    new_hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in second.iterdir()}

    # Kill a replacing run the moment a new version's original appears: after it is written, before
    # (or just after) its document's commit.
    orphans: set[str] = set()
    for kill in range(3):
        process = ingest(second, env)
        written = kill_when_kept(process, data / "originals", new_hashes - kept(data))
        assert written is not None, f"kill {kill}: the run ended before it wrote an original"
        documents, _, live = check_consistent(data, embedder)
        assert documents == 24
        orphans |= kept(data) - live
    assert orphans & new_hashes, "no kill landed between an original and its commit"

    # A later write (here with no grace, as if the orphans were old) sweeps them; the live keep theirs.
    extra = SENTENCES[1].encode()
    store = ChromaStore.persistent(data)
    indexer = Indexer(embedder, store, 48, 8, originals=Originals(data / "originals", grace=0))
    assert indexer.ingest_bytes("追加.txt", extra).status == "added"
    assert kept(data) == {d.content_hash for d in store.documents()}
    store.close()

    assert ingest(second, env).wait(timeout=300) == 0  # a re-run finishes the job
    store = ChromaStore.persistent(data)
    live = {d.content_hash for d in store.documents()}
    store.close()
    assert live == new_hashes | {hashlib.sha256(extra).hexdigest()}
    assert kept(data) == live  # each old version's original went as it was replaced
    print(f"killed 3 times after an original was written; orphans swept: {len(orphans)}")


def kill_when_kept(process: subprocess.Popen[bytes], root: Path, hashes: set[str]) -> str | None:
    """SIGKILL ``process`` as soon as the original of one of ``hashes`` is in ``root``; returns that hash."""
    paths = {root / h[:2] / h: h for h in hashes}
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        for path, digest in paths.items():
            if path.exists():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return digest
        time.sleep(0.0005)
    process.kill()
    process.wait()
    return None
