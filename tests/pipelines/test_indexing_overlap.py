"""Reading and chunking the next files while one is embedded changes nothing in what is stored or reported.

It is done only where the embedding leaves this machine's CPU idle (a GPU, an embeddings server).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.model import hardware
from pipelines.model.embedder import Embedder
from pipelines.model.remote import RemoteEmbedder
from pipelines.service.compose import build, prefetch_for
from pipelines.settings import Settings
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import FileReport, Indexer
from testkit.documents import SENTENCES, make_pdf


def write_corpus(folder: Path) -> Path:
    """PDFs and texts of varied lengths, a copy of one file, an empty file and a broken PDF in the middle."""
    folder.mkdir(parents=True)
    for number in range(4):
        pages = [
            [SENTENCES[(number + page + line) % len(SENTENCES)] for line in range(3)] for page in range(number + 1)
        ]
        (folder / f"{number}-資料.pdf").write_bytes(make_pdf(pages))
    for number in range(4):
        text = "\n\n".join(SENTENCES[number:] * (number + 1))
        (folder / f"{number}-メモ.txt").write_text(text, encoding="cp932" if number % 2 else "utf-8")
    (folder / "2-壊れた.pdf").write_bytes(b"%PDF-1.4\n\x00\x01garbage")
    (folder / "2-空.txt").write_bytes(b"")
    (folder / "3-写し.txt").write_bytes((folder / "1-メモ.txt").read_bytes())
    (folder / "0-最初に壊れた.pdf").write_bytes(b"not a pdf")  # fails before the model is bound
    return folder


def stored_chunks(store: ChromaStore) -> dict[str, tuple[str, dict[str, Any], list[float]]]:
    """Every chunk record in the store, by id: text, metadata and vector."""
    rows = store.client.get_collection(store.name).get(include=["documents", "metadatas", "embeddings"])
    return {
        chunk_id: (text, meta, [float(x) for x in vector])
        for chunk_id, text, meta, vector in zip(
            rows["ids"], rows["documents"], rows["metadatas"], rows["embeddings"], strict=True
        )
    }


def ingest(
    embedder: Embedder, data: Path, corpus: Path, prefetch: int
) -> tuple[list[FileReport], list[tuple[str, int, int]], ChromaStore]:
    store = ChromaStore.persistent(data)
    calls: list[tuple[str, int, int]] = []

    def progress(source: str) -> Any:
        return lambda done, total: calls.append((source, done, total))

    indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, prefetch=prefetch)
    return indexer.ingest_paths([corpus], progress=progress), calls, store


@pytest.mark.slow
@pytest.mark.parametrize("prefetch", [1, 2, 5])
def test_overlap_stores_and_reports_exactly_what_the_sequential_ingest_does(
    embedder: Embedder, tmp_path: Path, prefetch: int
) -> None:
    corpus = write_corpus(tmp_path / "文書")
    plain, plain_calls, plain_store = ingest(embedder, tmp_path / "plain", corpus, prefetch=0)
    ahead, ahead_calls, ahead_store = ingest(embedder, tmp_path / "ahead", corpus, prefetch=prefetch)

    assert ahead == plain
    assert ahead_calls == plain_calls
    assert stored_chunks(ahead_store) == stored_chunks(plain_store)
    without_time = [(d.source, d.version, d.pages, d.chunks, d.tokens) for d in plain_store.documents()]
    assert [(d.source, d.version, d.pages, d.chunks, d.tokens) for d in ahead_store.documents()] == without_time
    plain_store.close()
    ahead_store.close()


def test_bad_files_in_the_middle_are_reported_in_order_and_the_others_stored(
    embedder: Embedder, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "文書")
    reports, calls, store = ingest(embedder, tmp_path / "data", corpus, prefetch=2)
    assert [(r.source, r.status) for r in reports] == [
        ("0-メモ.txt", "added"),
        ("0-最初に壊れた.pdf", "failed"),
        ("0-資料.pdf", "added"),
        ("1-メモ.txt", "added"),
        ("1-資料.pdf", "added"),
        ("2-メモ.txt", "added"),
        ("2-壊れた.pdf", "failed"),
        ("2-空.txt", "failed"),
        ("2-資料.pdf", "added"),
        ("3-メモ.txt", "added"),
        ("3-写し.txt", "duplicate"),
        ("3-資料.pdf", "added"),
    ]
    assert "PDF" in reports[1].message
    assert "PDF" in reports[6].message
    assert "空" in reports[7].message
    added = [r for r in reports if r.status == "added"]
    assert [d.source for d in store.documents()] == sorted(r.source for r in added)
    assert [source for source, done, total in calls if done == total] == [r.source for r in added]
    assert len(stored_chunks(store)) == sum(r.chunks for r in added)
    store.close()


def chunked_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the indexer cuts into chunks from now on, in order."""
    chunked: list[str] = []
    original = Indexer.chunk

    def counting(self: Indexer, loaded: Any) -> Any:
        chunked.append(loaded.source)
        return original(self, loaded)

    monkeypatch.setattr(Indexer, "chunk", counting)
    return chunked


@pytest.mark.slow
def test_unchanged_files_are_not_chunked_again(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "文書")
    ingest(embedder, tmp_path / "data", corpus, prefetch=2)[2].close()
    chunked = chunked_files(monkeypatch)
    (corpus / "2-メモ.txt").write_text("\n\n".join(SENTENCES[::-1]), encoding="utf-8")  # changed
    reports, _, store = ingest(embedder, tmp_path / "data", corpus, prefetch=2)
    assert {r.status for r in reports} == {"unchanged", "failed", "replaced", "duplicate"}
    assert [r.source for r in reports if r.status == "replaced"] == ["2-メモ.txt"]
    assert chunked == ["2-メモ.txt"]  # the only file cut again
    store.close()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_copies_in_one_run_are_cut_once(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefetch: int
) -> None:
    """A file is chunked only when it will be written: a copy of one just added is a duplicate, never cut."""
    corpus = tmp_path / "写し"
    corpus.mkdir()
    for name in ("一.txt", "二.txt", "三.txt"):
        (corpus / name).write_text("\n\n".join(SENTENCES[:4]), encoding="utf-8")
    (corpus / "四.txt").write_text(SENTENCES[5], encoding="utf-8")
    chunked = chunked_files(monkeypatch)
    reports, _, store = ingest(embedder, tmp_path / "data", corpus, prefetch=prefetch)
    assert [(r.source, r.status) for r in reports] == [
        ("一.txt", "added"),
        ("三.txt", "duplicate"),
        ("二.txt", "duplicate"),
        ("四.txt", "added"),
    ]
    assert chunked == ["一.txt", "四.txt"]
    store.close()


@pytest.mark.slow
def test_prefetch_zero_chunks_in_the_calling_thread(embedder: Embedder, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "文書")
    seen: set[str] = set()
    original = Indexer.chunk

    def recording(self: Indexer, loaded: Any) -> Any:
        seen.add(threading.current_thread().name)
        return original(self, loaded)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Indexer, "chunk", recording)
        ingest(embedder, tmp_path / "zero", corpus, prefetch=0)[2].close()
        assert seen == {threading.current_thread().name}
        seen.clear()
        ingest(embedder, tmp_path / "two", corpus, prefetch=2)[2].close()
        assert any(name.startswith("ingest-prepare") for name in seen)
    with pytest.raises(ValueError, match="prefetch"):
        Indexer(embedder, ChromaStore.persistent(tmp_path / "x"), 48, 8, prefetch=-1)


@pytest.mark.slow
def test_counting_tokens_in_another_thread_while_encoding_with_a_fast_tokenizer(tmp_path: Path) -> None:
    """A fast (Rust) tokenizer used from two threads fails with "Already borrowed"; counting has its own copy."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    from testkit.offline_model import build_offline_model

    pieces = build_offline_model(tmp_path / "luke") / "sentencepiece.bpe.model"
    backbone = tmp_path / "backbone"
    tokenizer = XLMRobertaTokenizerFast(vocab_file=str(pieces))
    tokenizer.save_pretrained(backbone)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    XLMRobertaModel(config).save_pretrained(backbone)
    word = Transformer(str(backbone), max_seq_length=256)
    SentenceTransformer(modules=[word, Pooling(16)]).save(str(tmp_path / "fast"))

    embedder = Embedder(str(tmp_path / "fast"), batch_size=32, precision="float32")
    embedder.load()
    assert embedder.model.tokenizer.is_fast
    text = "".join(SENTENCES) * 4
    errors: list[BaseException] = []
    stop = threading.Event()

    def count() -> None:
        try:
            while not stop.is_set():
                embedder.count_tokens(text)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            errors.append(error)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        for _ in range(40):
            vectors = embedder.embed_documents([text] * 32, [256] * 32)
    finally:
        stop.set()
        counter.join()
    assert errors == []
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_files_are_read_ahead_only_where_the_embedding_leaves_this_cpu_idle(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU the model takes every core, and a file read beside it slows it: each file in turn there."""
    assert prefetch_for(Embedder(str(model_dir), device="cpu")) == 0
    assert prefetch_for(Embedder(str(model_dir), device="cuda")) == 2  # decided without loading the model
    assert prefetch_for(RemoteEmbedder("http://127.0.0.1:9/v1", "test-model")) == 2
    with monkeypatch.context() as patch:  # a machine with a GPU's device file: torch is not asked here
        patch.setattr(hardware, "maybe_gpu", lambda: True)
        undecided = Embedder(str(model_dir))
        assert prefetch_for(undecided) == 2
        assert undecided.device is None
    environ = {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_EMBEDDING_MODEL": str(model_dir), "RAG_DEVICE": "cpu"}
    parts = build(Settings.from_env(environ))
    assert parts.indexer.prefetch == 0
    assert not parts.embedder.loaded
    parts.store.close()
