"""Originals: each stored document's file kept by content hash, written before it is visible, removed after it is gone."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from ingest.errors import IngestError
from ingest.isolation import InProcessReader
from ingest.limits import Limits
from ingest.loaders import LoadedFile
from pipelines.errors import DocumentNotFoundError, FileChangedError
from pipelines.model.embedder import Embedder
from pipelines.service.compose import build
from pipelines.settings import Settings
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.originals import Originals

TOKYO = "東京は日本の首都であり、政治と経済の中心地です。".encode()
KYOTO = "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。".encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def kept(originals: Originals) -> set[str]:
    """The names of every file under the originals' directory."""
    return {p.name for p in originals.root.rglob("*") if p.is_file()}


# Unit ------------------------------------------------------------------------------------------


def test_put_get_path_and_layout(tmp_path: Path) -> None:
    originals = Originals(tmp_path / "originals")
    digest = sha(TOKYO)
    assert originals.get(digest) is None
    assert originals.path(digest) is None
    originals.put(digest, TOKYO)
    originals.put(digest, TOKYO)  # again: nothing to do
    assert originals.get(digest) == TOKYO
    assert originals.path(digest) == tmp_path / "originals" / digest[:2] / digest
    assert kept(originals) == {digest}  # no temporary file left


def test_nothing_is_created_before_the_first_put(tmp_path: Path) -> None:
    originals = Originals(tmp_path / "originals")
    assert originals.get(sha(TOKYO)) is None
    assert originals.sweep(set(), older_than=0) == 0
    assert not (tmp_path / "originals").exists()


def test_bytes_of_another_hash_are_refused(tmp_path: Path) -> None:
    originals = Originals(tmp_path / "originals")
    with pytest.raises(ValueError, match="hash"):
        originals.put(sha(KYOTO), TOKYO)
    assert originals.get(sha(KYOTO)) is None
    assert kept(originals) == set()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../../etc/passwd",
        sha(TOKYO)[:63],
        sha(TOKYO) + "0",
        sha(TOKYO).upper(),
        "/" + sha(TOKYO)[1:],
        sha(TOKYO)[:62] + "/.",
        sha(TOKYO)[:63] + "\n",
        "ｆ" * 64,  # full-width hex digits
    ],
)
def test_only_a_content_hash_becomes_a_path(tmp_path: Path, bad: str) -> None:
    originals = Originals(tmp_path / "originals")
    for call in (originals.get, originals.path, originals.remove):
        with pytest.raises(ValueError, match="content hash"):
            call(bad)
    with pytest.raises(ValueError, match="content hash"):
        originals.put(bad, TOKYO)
    with pytest.raises(ValueError, match="content hash"):
        originals.put_file(bad, tmp_path / "x")


def test_put_file_copies_a_large_file_in_pieces(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # over the copy's 1 MiB block
    source = tmp_path / "大きい.pdf"
    source.write_bytes(data)
    originals = Originals(tmp_path / "originals")
    originals.put_file(sha(data), source)
    assert originals.get(sha(data)) == data


def test_put_file_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    source = tmp_path / "報告書.txt"
    source.write_bytes(TOKYO)
    read = sha(source.read_bytes())
    source.write_bytes(KYOTO)  # someone saves the file after it was read
    originals = Originals(tmp_path / "originals")
    with pytest.raises(FileChangedError, match="読み込み中にファイルが変更されました") as caught:
        originals.put_file(read, source)
    assert isinstance(caught.value, IngestError)
    assert "報告書.txt" in str(caught.value)
    assert kept(originals) == set()  # neither the wrong bytes nor a temporary file


def test_remove(tmp_path: Path) -> None:
    originals = Originals(tmp_path / "originals")
    originals.put(sha(TOKYO), TOKYO)
    originals.remove(sha(TOKYO))
    originals.remove(sha(TOKYO))  # again: nothing to do
    assert originals.get(sha(TOKYO)) is None


def test_sweep_removes_only_old_orphans_and_old_temporary_files(tmp_path: Path) -> None:
    originals = Originals(tmp_path / "originals")
    live_old, orphan_old, orphan_new = b"live", b"orphan old", b"orphan new"
    for data in (live_old, orphan_old, orphan_new):
        originals.put(sha(data), data)
    shard = originals.root / sha(orphan_old)[:2]
    stray = shard / f"{sha(orphan_old)}.tmp-0123"  # what a writer killed mid-copy leaves
    stray.write_bytes(b"half")
    stranger = shard / "メモ.txt"  # not ours: never touched
    stranger.write_bytes(b"x")
    for path in (originals.path(sha(live_old)), originals.path(sha(orphan_old)), stray, stranger):
        assert path is not None
        age(path, 700)

    assert originals.sweep({sha(live_old)}) == 2  # default: older than 600 seconds
    assert kept(originals) == {sha(live_old), sha(orphan_new), "メモ.txt"}
    # a writer that has written its original but not yet committed its document is younger: kept
    assert originals.sweep({sha(live_old)}, older_than=0) == 1
    assert kept(originals) == {sha(live_old), "メモ.txt"}


def test_putting_a_kept_original_again_makes_it_young(tmp_path: Path) -> None:
    """A writer about to commit a document whose content an old orphan has: no sweep takes it meanwhile."""
    originals = Originals(tmp_path / "originals")
    source = tmp_path / "東京.txt"
    source.write_bytes(TOKYO)
    for put in (lambda: originals.put(sha(TOKYO), TOKYO), lambda: originals.put_file(sha(TOKYO), source)):
        put()
        path = originals.path(sha(TOKYO))
        assert path is not None
        age(path, 700)
        put()
        assert originals.sweep(set()) == 0
        assert originals.sweep(set(), older_than=0) == 1


def test_grace_is_the_default_age(tmp_path: Path) -> None:
    originals = Originals(tmp_path / "originals", grace=0)
    originals.put(sha(TOKYO), TOKYO)
    assert originals.sweep(set()) == 1


# Through the indexer -------------------------------------------------------------------------


def test_an_upload_keeps_its_bytes(indexer: Indexer, originals: Originals) -> None:
    report = indexer.ingest_bytes("東京.txt", TOKYO)
    assert report.status == "added"
    document = indexer.store.document("東京.txt")
    assert document is not None
    assert document.content_hash == sha(TOKYO)
    assert originals.get(document.content_hash) == TOKYO


def test_a_replacement_swaps_the_originals(indexer: Indexer, originals: Originals) -> None:
    indexer.ingest_bytes("規程.txt", TOKYO)
    assert indexer.ingest_bytes("規程.txt", KYOTO).status == "replaced"
    assert originals.get(sha(TOKYO)) is None
    assert originals.get(sha(KYOTO)) == KYOTO
    assert kept(originals) == {sha(KYOTO)}


def test_a_failed_replacement_keeps_the_old_original(indexer: Indexer, originals: Originals) -> None:
    indexer.ingest_bytes("規程.txt", TOKYO)
    assert indexer.ingest_bytes("規程.txt", b"\x00\x00\x00").status == "failed"
    assert kept(originals) == {sha(TOKYO)}


def test_delete_removes_the_original(indexer: Indexer, originals: Originals) -> None:
    indexer.ingest_bytes("東京.txt", TOKYO)
    indexer.ingest_bytes("京都.txt", KYOTO)
    indexer.delete("東京.txt")
    assert originals.get(sha(TOKYO)) is None
    assert originals.get(sha(KYOTO)) == KYOTO


def test_a_duplicate_shares_the_original(indexer: Indexer, originals: Originals) -> None:
    indexer.ingest_bytes("元.txt", TOKYO)
    assert indexer.ingest_bytes("写し.txt", TOKYO).status == "duplicate"
    assert kept(originals) == {sha(TOKYO)}
    with pytest.raises(DocumentNotFoundError):
        indexer.delete("写し.txt")  # a duplicate is not stored: nothing of 元.txt goes
    assert originals.get(sha(TOKYO)) == TOKYO
    indexer.delete("元.txt")
    assert originals.get(sha(TOKYO)) is None


def test_two_documents_with_the_same_content_keep_it_until_the_last_goes(
    indexer: Indexer, embedder: Embedder, store: ChromaStore, originals: Originals
) -> None:
    # the same bytes stored twice: two names cut with different chunk sizes are two versions
    other = Indexer(embedder, store, chunk_tokens=64, chunk_overlap=8, originals=originals)
    indexer.ingest_bytes("一.txt", TOKYO)
    assert other.ingest_bytes("二.txt", TOKYO).status == "added"
    indexer.delete("一.txt")
    assert originals.get(sha(TOKYO)) == TOKYO
    other.delete("二.txt")
    assert originals.get(sha(TOKYO)) is None


def test_a_folder_keeps_each_file_as_it_was(indexer: Indexer, originals: Originals, tmp_path: Path) -> None:
    folder = tmp_path / "文書"
    files = {"東京.txt": "東京は首都です。".encode("cp932"), "sub/猫.txt": "吾輩は猫である。".encode("utf-16")}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    reports = indexer.ingest_paths([folder])
    assert {r.status for r in reports} == {"added"}
    for document in indexer.store.documents():
        assert originals.get(document.content_hash) == files[document.source]
    assert kept(originals) == {sha(data) for data in files.values()}


class ChangingReader(InProcessReader):
    """Reads a file, then someone saves a new version of it before its original is kept."""

    def load_file(self, path: Path, source: str, limits: Limits) -> LoadedFile:
        loaded = super().load_file(path, source, limits)
        path.write_bytes(KYOTO)
        return loaded


def test_a_file_changed_after_it_was_read_is_refused(
    embedder: Embedder, store: ChromaStore, originals: Originals, tmp_path: Path
) -> None:
    indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, originals=originals, reader=ChangingReader())
    path = tmp_path / "報告書.txt"
    path.write_bytes(TOKYO)
    (report,) = indexer.ingest_paths([path])
    assert report.status == "failed"
    assert "読み込み中にファイルが変更されました" in report.message
    assert "報告書.txt" in report.message
    assert store.documents() == []  # nothing visible whose original does not match what was indexed
    assert kept(originals) == set()


def test_an_unchanged_file_gets_the_original_an_older_store_lacks(
    indexer: Indexer, originals: Originals, tmp_path: Path
) -> None:
    path = tmp_path / "東京.txt"
    path.write_bytes(TOKYO)
    indexer.ingest_paths([path])
    originals.remove(sha(TOKYO))  # stored before originals were kept
    assert [r.status for r in indexer.ingest_paths([path])] == ["unchanged"]
    assert originals.get(sha(TOKYO)) == TOKYO
    originals.remove(sha(TOKYO))
    assert indexer.ingest_bytes("東京.txt", TOKYO).status == "unchanged"
    assert originals.get(sha(TOKYO)) == TOKYO


def test_a_text_that_is_no_file_has_no_original(indexer: Indexer, originals: Originals) -> None:
    indexer.ingest_text("記事", TOKYO.decode())
    document = indexer.store.document("記事")
    assert document is not None
    assert originals.get(document.content_hash) is None
    assert kept(originals) == set()


def test_a_write_sweeps_what_a_dead_run_left(indexer: Indexer, originals: Originals) -> None:
    indexer.ingest_bytes("東京.txt", TOKYO)
    originals.put(sha(b"orphan"), b"orphan")  # written by a run that died before its commit
    indexer.ingest_bytes("京都.txt", KYOTO)
    assert kept(originals) == {sha(TOKYO), sha(KYOTO)}


# Wiring --------------------------------------------------------------------------------------


def test_build_keeps_originals_in_the_data_dir_or_the_configured_one(tmp_path: Path, embedder: Embedder) -> None:
    store = ChromaStore.persistent(tmp_path / "data")
    try:
        parts = build(Settings.from_env({"RAG_DATA_DIR": str(tmp_path / "data")}), embedder=embedder, store=store)
        assert parts.originals.root == tmp_path / "data" / "originals"
        assert parts.indexer.originals is parts.originals
        shared = Settings.from_env({"RAG_ORIGINALS_DIR": str(tmp_path / "共有")})
        assert build(shared, embedder=embedder, store=store).originals.root == tmp_path / "共有"
        assert Settings.from_env({"RAG_ORIGINALS_DIR": ""}).originals_dir is None
    finally:
        store.close()
