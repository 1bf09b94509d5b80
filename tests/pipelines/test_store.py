"""The store's write protocol: ``replace`` switches versions in one step, ``writing()`` nests within a thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pipelines.store.chroma import ChromaStore
from pipelines.store.records import ChunkRecord, StoredChunk, StoredDocument, chunk_id
from testkit.records import chunk_record

SOURCE = "規程.txt"
MODEL = "test-model"
OLD = ["第一条　この規程は社員の出張に適用する。", "第二条　出張の前に申請する。"]
NEW = ["第一条　この規程は全ての出張に適用する。"]


def document(version: str, chunks: int) -> StoredDocument:
    return StoredDocument(SOURCE, version, version, 0, chunks, 0, "2026-01-01T00:00:00+00:00", MODEL)


def records(version: str, texts: list[str], source: str = SOURCE) -> list[ChunkRecord]:
    """Chunks of one version with unit vectors of their own (the store compares vectors, not meanings)."""
    return [chunk_record(source, version, i, text, np.eye(3, dtype=np.float32)[i % 3]) for i, text in enumerate(texts)]


@pytest.fixture
def bound(store: ChromaStore) -> ChromaStore:
    store.writer.bind_model(MODEL, 3, [1.0, 0.0, 0.0])
    return store


def test_replace_shows_the_new_version_and_drops_the_old(bound: ChromaStore) -> None:
    bound.replace(document("v1", 2), records("v1", OLD))
    assert bound.documents() == [document("v1", 2)]
    bound.replace(document("v2", 1), records("v2", NEW))
    assert bound.documents() == [document("v2", 1)]
    assert bound.count() == 1  # the old version's chunks are deleted, not just hidden
    assert bound.reader.chunk_texts(SOURCE, "v1") == []
    new_id = chunk_id("v2", 0)
    assert bound.chunks_by_id([chunk_id("v1", 0), new_id]) == {
        new_id: StoredChunk(NEW[0], SOURCE, 0, 0, len(NEW[0]), "v2", "v2", new_id)
    }
    assert bound.chunks_at(SOURCE, "v2", [0, 1]) == [bound.chunks_by_id([new_id])[new_id]]


def test_replace_refuses_chunks_of_another_document(bound: ChromaStore) -> None:
    """Recovery finds chunks by document and version: a stray chunk would be neither shown nor cleaned."""
    with pytest.raises(ValueError, match="v1-00000"):
        bound.replace(document("v1", 1), records("v1", NEW, source="他.txt"))
    assert bound.count() == 0
    assert bound.documents() == []


def test_writing_nests_within_a_thread(bound: ChromaStore) -> None:
    """The indexer holds ``writing()`` around ``replace``, which takes it too: the inner one joins the outer."""

    def nested() -> None:
        with bound.writing(), bound.writing():
            bound.replace(document("v1", 2), records("v1", OLD))

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "writing() inside writing() waited for itself"
    assert bound.documents() == [document("v1", 2)]


def test_writing_still_excludes_another_thread(tmp_path: Path) -> None:
    store = ChromaStore.persistent(tmp_path / "data")
    entered = threading.Event()

    def other() -> None:
        with store.writing():
            entered.set()

    with store.writing():
        worker = threading.Thread(target=other, daemon=True)
        worker.start()
        assert not entered.wait(0.5)  # the lock is this thread's, not the store's
    assert entered.wait(30)
    worker.join()
    store.close()


def test_searches_in_threads_survive_reopenings_after_another_process_writes(tmp_path: Path) -> None:
    """Another process's writes make the client reopen; calls in other threads meanwhile never find it closed."""
    import time
    import uuid

    store = ChromaStore.persistent(tmp_path / "data")
    store.writer.bind_model(MODEL, 3, [1.0, 0.0, 0.0])
    store.replace(document("v1", 2), records("v1", OLD))
    other = store.sibling("other")  # a second collection on the same client: reopened with it
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                live = store.reader.live_versions()
                assert [r[0][0] for r in store.nearest_many(np.eye(3, dtype=np.float32)[:1], 1, live)] == ["v1-00000"]
                assert other.documents() == []
        except BaseException as error:  # noqa: BLE001 - reported below, whatever it is
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    epoch = store.connection.epoch
    for _ in range(20):  # what another process's commit leaves behind
        (tmp_path / "data" / "generation").write_text(uuid.uuid4().hex, encoding="ascii")
        time.sleep(0.05)
    done.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert store.connection.epoch > epoch  # the client was reopened meanwhile
    store.close()
