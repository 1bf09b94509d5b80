"""Ingest and search on the offline model with a real Chroma in a temp dir: round trip, re-ingest, replace, delete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import DocumentNotFoundError, ModelMismatchError, RagError, SettingsError
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Searcher
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.records import ChunkRecord, StoredDocument, chunk_id
from testkit.documents import make_pdf
from testkit.offline_model import build_offline_model

TOKYO = "東京は日本の首都であり、政治と経済の中心地です。人口はおよそ千四百万人です。"
KYOTO = "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。"
FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
CAT = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"


class Killed(Exception):
    """The process dying between writing a new version's chunks and committing it."""


def interrupted_replace(store: ChromaStore, embedder: Embedder, chunks: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a replace of 規程.txt that died before its commit leaves: the new version's chunks (FUJI) written,
    the registry not switched."""
    version = "deadbeef-c1"
    vector = embedder.embed_documents([FUJI])[0]
    meta: dict[str, str | int | float | bool] = {"source": "規程.txt", "version": version, "content_hash": "deadbeef"}
    meta |= {"page": 0, "page_end": 0, "char_start": 0, "char_end": len(FUJI), "text_hash": "x"}
    records = [ChunkRecord(chunk_id(version, i), FUJI, vector, meta | {"chunk_index": i}) for i in range(chunks)]
    document = StoredDocument("規程.txt", version, "deadbeef", 0, chunks, 0, "", embedder.model_name)

    def killed(document: StoredDocument) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(store.writer, "_commit", killed)
        with pytest.raises(Killed):
            store.replace(document, records)


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "文書"
    write(folder, "東京.txt", TOKYO + "\n\n" + FUJI, encoding="cp932")
    write(folder, "京都.md", "# 京都\n" + KYOTO, encoding="euc_jp")
    write(folder, "sub/猫.txt", CAT, encoding="utf-16")
    write(folder, "無視される.exe", "MZ")
    write(folder, ".hidden.txt", "隠しファイル")
    return folder


def test_round_trip_finds_each_passage_with_its_cosine(indexer: Indexer, corpus: Path, embedder: Embedder) -> None:
    reports = indexer.ingest_paths([corpus])
    assert [(r.source, r.status) for r in reports] == [
        ("sub/猫.txt", "added"),
        ("京都.md", "added"),
        ("東京.txt", "added"),
        ("無視される.exe", "skipped"),
    ]
    assert reports[-1].message == "対応していない形式（.exe）"
    searcher = Searcher(embedder, indexer.store)
    for passage, source in [(CAT, "sub/猫.txt"), (FUJI, "東京.txt"), (KYOTO, "京都.md")]:
        hits = searcher.search(passage, k=3, mode="dense")
        best = hits[0]
        assert passage in best.chunk.text
        assert best.chunk.source == source
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].cosine >= hits[1].cosine >= hits[2].cosine
        # the score is the cosine similarity of the question and the passage, not a distance
        expected = float(embedder.embed_query(passage) @ embedder.embed_documents([best.chunk.text])[0])
        assert best.cosine == pytest.approx(expected, abs=1e-4)


def test_hits_carry_page_and_position(indexer: Indexer, embedder: Embedder) -> None:
    pdf = make_pdf([["表紙です。"], ["二ページ目には", "富士山の話があります。"], [FUJI]])
    report = indexer.ingest_bytes("資料.pdf", pdf)
    assert (report.status, report.chunks) == ("added", 2)
    hit = Searcher(embedder, indexer.store).search(FUJI, k=1)[0]
    assert (hit.chunk.source, hit.chunk.page, hit.chunk.page_end) == ("資料.pdf", 3, 3)
    assert hit.chunk.text == FUJI
    first = Searcher(embedder, indexer.store).search("表紙です。二ページ目には富士山の話があります。", k=1)[0]
    assert (first.chunk.page, first.chunk.page_end, first.chunk.chunk_index, first.chunk.char_start) == (1, 2, 0, 0)
    assert first.chunk.text == "表紙です。\n\n二ページ目には富士山の話があります。"
    assert indexer.store.document("資料.pdf").pages == 3  # type: ignore[union-attr]


def test_full_width_question_matches_half_width_text(indexer: Indexer, embedder: Embedder) -> None:
    indexer.ingest_bytes("規程.txt", "ＧＰＵサーバーはＡ棟にあります。".encode())
    hit = Searcher(embedder, indexer.store).search("GPUサーバーはA棟にあります。", k=1)[0]
    assert hit.chunk.text == "GPUサーバーはA棟にあります。"
    assert hit.cosine == pytest.approx(1.0, abs=1e-4)


def test_unchanged_files_embed_nothing(indexer: Indexer, corpus: Path, embedder: Embedder) -> None:
    indexer.ingest_paths([corpus])
    before = embedder.stats.texts
    reports = indexer.ingest_paths([corpus])
    assert {r.status for r in reports} == {"unchanged", "skipped"}
    assert embedder.stats.texts == before


def test_changed_file_replaces_its_chunks(indexer: Indexer, tmp_path: Path, embedder: Embedder) -> None:
    path = write(tmp_path, "メモ.txt", TOKYO + "\n" + KYOTO)
    indexer.ingest_paths([path])
    write(tmp_path, "メモ.txt", TOKYO + "\n" + FUJI)
    before = embedder.stats.texts
    (report,) = indexer.ingest_paths([path])
    assert report.status == "replaced"
    assert embedder.stats.texts - before == 1  # the unchanged first chunk reuses its stored vector
    documents = indexer.store.documents()
    assert [(d.source, d.chunks) for d in documents] == [("メモ.txt", 2)]
    assert indexer.store.count() == 2  # old chunks gone
    texts = [h.chunk.text for h in Searcher(embedder, indexer.store).search(KYOTO, k=5)]
    assert texts == [TOKYO, FUJI]


def test_identical_texts_are_embedded_once(indexer: Indexer, embedder: Embedder) -> None:
    before = embedder.stats.texts
    first = indexer.ingest_bytes("一.txt", ((KYOTO + "\n\n") * 9 + CAT).encode())
    second = indexer.ingest_bytes("二.txt", (CAT + "\n\n" + FUJI + "\n\n" + (KYOTO + "\n\n") * 9).encode())
    embedded = embedder.stats.texts - before
    hits = Searcher(embedder, indexer.store).search(CAT, k=100)
    assert len(hits) == first.chunks + second.chunks
    distinct = {h.chunk.text for h in hits}
    assert len(distinct) < len(hits)
    assert embedded == len(distinct)


def test_same_content_under_another_name_is_a_duplicate(indexer: Indexer) -> None:
    indexer.ingest_bytes("元.txt", TOKYO.encode())
    report = indexer.ingest_bytes("写し.txt", TOKYO.encode())
    assert report.status == "duplicate"
    assert "元.txt" in report.message
    assert [d.source for d in indexer.store.documents()] == ["元.txt"]


def test_delete_removes_document_and_chunks(indexer: Indexer, corpus: Path, embedder: Embedder) -> None:
    indexer.ingest_paths([corpus])
    removed = indexer.delete("東京.txt")
    assert removed.source == "東京.txt"
    assert [d.source for d in indexer.store.documents()] == ["sub/猫.txt", "京都.md"]
    assert all(h.chunk.source != "東京.txt" for h in Searcher(embedder, indexer.store).search(TOKYO, k=10))
    assert indexer.store.count() == sum(d.chunks for d in indexer.store.documents())
    with pytest.raises(DocumentNotFoundError, match=r"東京\.txt"):
        indexer.delete("東京.txt")


def test_bad_files_are_reported_and_the_others_stored(indexer: Indexer, tmp_path: Path) -> None:
    good = write(tmp_path, "良い.txt", TOKYO)
    empty = write(tmp_path, "空.txt", "")
    broken = tmp_path / "壊れた.pdf"
    broken.write_bytes(b"%PDF-1.4\n\x00\x01garbage")
    missing = tmp_path / "ない.txt"
    reports = indexer.ingest_paths([empty, broken, missing, good])
    assert [(r.source, r.status) for r in reports] == [
        ("空.txt", "failed"),
        ("壊れた.pdf", "failed"),
        ("ない.txt", "failed"),
        ("良い.txt", "added"),
    ]
    assert "空" in reports[0].message
    assert "PDF" in reports[1].message
    assert [d.source for d in indexer.store.documents()] == ["良い.txt"]


def test_a_failed_replacement_keeps_the_old_version(indexer: Indexer, embedder: Embedder, tmp_path: Path) -> None:
    indexer.ingest_bytes("規程.txt", TOKYO.encode())
    report = indexer.ingest_bytes("規程.txt", b"\x00\x00\x00")  # unreadable new version
    assert report.status == "failed"
    assert indexer.store.document("規程.txt") is not None
    assert Searcher(embedder, indexer.store).search(TOKYO, k=1)[0].chunk.text == TOKYO


def test_interrupted_replace_shows_one_version_and_is_cleaned_up(
    indexer: Indexer, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that died after writing new chunks but before the commit leaves the old version visible."""
    indexer.ingest_bytes("規程.txt", TOKYO.encode())
    store = indexer.store
    old = store.document("規程.txt")
    assert old is not None
    interrupted_replace(store, embedder, 1, monkeypatch)
    assert store.count() == 2
    hits = Searcher(embedder, store).search(FUJI, k=5)
    assert [h.chunk.text for h in hits] == [TOKYO]  # the half-written version is invisible
    assert store.document("規程.txt") == old
    with store.writing():  # the next writer finishes the job
        pass
    assert store.count() == 1


def test_store_refuses_vectors_from_another_model(indexer: Indexer, tmp_path: Path, store: ChromaStore) -> None:
    indexer.ingest_bytes("一.txt", TOKYO.encode())
    other = Embedder(str(build_offline_model(tmp_path / "other", seed=1)))
    with pytest.raises(ModelMismatchError, match="tiny-glucose"):
        Indexer(other, store, 48, 8).ingest_bytes("二.txt", KYOTO.encode())
    with pytest.raises(ModelMismatchError):
        Searcher(other, store).search(TOKYO)
    assert [d.source for d in store.documents()] == ["一.txt"]


@pytest.mark.slow
def test_same_model_under_another_path_is_accepted(
    indexer: Indexer, model_dir: Path, tmp_path: Path, store: ChromaStore
) -> None:
    import shutil

    indexer.ingest_bytes("一.txt", TOKYO.encode())
    copy = Embedder(str(shutil.copytree(model_dir, tmp_path / "local-copy")))
    assert Indexer(copy, store, 48, 8).ingest_bytes("二.txt", KYOTO.encode()).status == "added"
    assert Searcher(copy, store).search(KYOTO, k=1)[0].chunk.source == "二.txt"


def test_each_document_records_its_precision_and_a_mixed_store_says_so(
    indexer: Indexer, model_dir: Path, store: ChromaStore
) -> None:
    from pipelines.store.indexing import mixed_precisions

    indexer.ingest_bytes("一.txt", TOKYO.encode())  # the shared embedder computes in float32
    assert mixed_precisions(store.documents()) == ""
    fast = Embedder(str(model_dir), precision="int8", query_precision="int8")
    assert Indexer(fast, store, 48, 8).ingest_bytes("二.txt", KYOTO.encode()).status == "added"
    assert {d.source: d.precision for d in store.documents()} == {"一.txt": "float32", "二.txt": "int8"}
    warning = mixed_precisions(store.documents())
    assert warning.startswith("保存済みの文書は違う精度で埋め込まれています（")
    assert "float32 1 件" in warning
    assert "int8 1 件" in warning
    # both are found: the paths differ by rounding, within the guard
    assert Searcher(fast, store).search(TOKYO, k=1)[0].chunk.source == "一.txt"
    assert Searcher(indexer.embedder, store).search(KYOTO, k=1)[0].chunk.source == "二.txt"


def test_chunk_budget_above_the_model_limit_is_refused(embedder: Embedder, store: ChromaStore) -> None:
    with pytest.raises(SettingsError, match="512"):
        Indexer(embedder, store, chunk_tokens=600, chunk_overlap=0).ingest_bytes("a.txt", TOKYO.encode())


def test_search_edge_cases(indexer: Indexer, embedder: Embedder) -> None:
    searcher = Searcher(embedder, indexer.store)
    assert searcher.search(TOKYO) == []  # nothing stored yet
    indexer.ingest_bytes("一.txt", TOKYO.encode())
    assert len(searcher.search(TOKYO, k=50)) == 1  # k above the number of chunks
    with pytest.raises(RagError, match="空"):
        searcher.search(" \u3000\n")
    with pytest.raises(RagError, match="k"):
        searcher.search(TOKYO, k=0)


def test_long_document_chunks_fit_the_budget(indexer: Indexer, embedder: Embedder) -> None:
    text = "\n".join([TOKYO, KYOTO, FUJI, CAT] * 20)
    report = indexer.ingest_bytes("長い.txt", text.encode())
    assert report.chunks > 5
    hits = Searcher(embedder, indexer.store).search(TOKYO, k=100)
    assert len(hits) == report.chunks
    assert all(embedder.count_tokens(h.chunk.text) <= 48 for h in hits)
    vectors = embedder.embed_documents([h.chunk.text for h in hits])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.server
def test_page_process_sees_documents_the_cli_adds(tmp_path: Path, model_dir: Path, embedder: Embedder) -> None:
    """A long-running process (the page) finds what another process (the CLI) ingested, without a restart."""
    import os
    import subprocess
    import sys

    data = tmp_path / "shared-data"
    page_store = ChromaStore.persistent(data)
    Indexer(embedder, page_store, 48, 8).ingest_bytes("ページから.txt", TOKYO.encode())
    searcher = Searcher(embedder, page_store)
    assert [h.chunk.source for h in searcher.search(FUJI, k=5)] == ["ページから.txt"]
    path = write(tmp_path, "CLIから.txt", FUJI)
    env = {**os.environ, "RAG_EMBEDDING_MODEL": str(model_dir), "RAG_DATA_DIR": str(data)}
    env |= {"RAG_CHUNK_TOKENS": "48", "RAG_CHUNK_OVERLAP": "8"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "ingest", str(path)], env=env, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert searcher.search(FUJI, k=1)[0].chunk.source == "CLIから.txt"
    assert [d.source for d in page_store.documents()] == ["CLIから.txt", "ページから.txt"]
    page_store.close()


def test_many_hidden_chunks_nearer_than_the_live_one_are_skipped(
    indexer: Indexer, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vector search reads ids and distances only, and asks for more until k visible chunks are found."""
    indexer.ingest_bytes("規程.txt", TOKYO.encode())
    store = indexer.store
    interrupted_replace(store, embedder, 30, monkeypatch)  # 30 hidden chunks, all nearer to FUJI than TOKYO
    live = store.reader.live_versions()
    nearest = store.nearest_many(embedder.embed_queries([FUJI]), 1, live)
    live_id = chunk_id(live["規程.txt"], 0)
    assert [i for i, _ in nearest[0]] == [live_id]
    cosine = float(embedder.embed_queries([FUJI])[0] @ embedder.embed_documents([TOKYO])[0])
    assert nearest[0][0][1] == pytest.approx(cosine, abs=1e-5)
    hits = Searcher(embedder, store).search(FUJI, k=3, mode="dense")
    assert [h.chunk.text for h in hits] == [TOKYO]
    assert store.nearest_many(embedder.embed_queries([FUJI]), 5, live, sources=["ない.txt"]) == [[]]
    assert store.nearest_many(embedder.embed_queries([FUJI]), 5, {}) == [[]]


def test_a_moved_document_keeps_its_chunks_and_vectors(indexer: Indexer, embedder: Embedder) -> None:
    """``move``: the same chunk records under the new name, nothing embedded; a move cut short is finished by the next."""
    text = "就業規則。始業は午前九時、終業は午後六時とする。休憩は一時間とする。"
    indexer.ingest_data("規程/人事/就業規則.txt", text.encode("utf-8"))
    before = indexer.store.reader.chunk_texts("規程/人事/就業規則.txt", indexer.store.documents()[0].version)
    embedded = embedder.stats.texts

    moved = indexer.move("規程/人事/就業規則.txt", "規程/旧/就業規則.txt")
    assert moved.source == "規程/旧/就業規則.txt"
    assert [d.source for d in indexer.store.documents()] == ["規程/旧/就業規則.txt"]
    assert indexer.store.reader.chunk_texts("規程/旧/就業規則.txt", moved.version) == before  # the same records
    assert embedder.stats.texts == embedded
    assert indexer.store.count() == moved.chunks

    # killed after the new name was registered, before the chunks were renamed: both names, one content
    registry = indexer.store.pair.registry()
    meta = registry.get(ids=["規程/旧/就業規則.txt"], include=["metadatas"])["metadatas"][0]
    registry.upsert(ids=["就業規則.txt"], embeddings=[[1.0]], metadatas=[meta])
    assert len(indexer.store.documents()) == 2
    indexer.move("規程/旧/就業規則.txt", "就業規則.txt")  # the sync's next run moves it again: finished
    assert [d.source for d in indexer.store.documents()] == ["就業規則.txt"]
    assert indexer.store.reader.chunk_texts("就業規則.txt", moved.version) == before

    indexer.ingest_data("別の規程.txt", "別の規程。内容が違う。".encode())
    with pytest.raises(ValueError, match="another version"):
        indexer.move("就業規則.txt", "別の規程.txt")
