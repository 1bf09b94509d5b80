"""A hit's best sentence from vectors pooled at ingest; stores without them; the model's use at search time."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.chunking import sentence_spans
from ingest.normalize import normalize_text
from pipelines.model.embedder import Embedder, Progress
from pipelines.model.gate import QueryGate
from pipelines.model.pooling import pool_spans
from pipelines.search.retrieval import Hit, Searcher, hit_json
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer, text_hash
from pipelines.store.sentences import Sentences, SentenceVectors, dequantize, quantize
from testkit.records import stored_chunk

# (a passage of three sentences, a question that repeats one of them, that sentence)
AGREEMENT = [
    (
        "東京は日本の首都であり、政治と経済の中心地です。富士山は日本で最も高い山で、標高は三七七六メートルです。"
        "雨が降ったので、試合は翌週に延期されました。",
        "富士山は日本で最も高い山で、標高は三七七六メートルです。",
        "富士山は日本で最も高い山で、標高は三七七六メートルです。",
    ),
    (
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
        "吾輩は猫である。",
        "吾輩は猫である。",
    ),
    (
        "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。\n"
        "社内規程によると、有給休暇は入社六か月後から取得できます。\n"
        "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
        "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
        "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
    ),
    (
        "「こんにちは。」と彼女は言った。『本当に？』と私は聞き返した！機械学習を使って、日本語の文書から質問の答えを探します。",
        "機械学習を使って、日本語の文書から質問の答えを探します。",
        "機械学習を使って、日本語の文書から質問の答えを探します。",
    ),
]


@pytest.fixture
def sentences(tmp_path: Path) -> SentenceVectors:
    return SentenceVectors(tmp_path / "sentences.sqlite3")


@pytest.fixture(scope="module", params=["float32", pytest.param("int8", marks=pytest.mark.slow)])  # int8: an export
def on_each_path(request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The test model on torch (float32) and on ONNX Runtime (int8, whose export gives token states)."""
    precision = request.param
    cache = tmp_path_factory.mktemp(f"paths-{precision}")
    return Embedder(str(model_dir), precision=precision, query_precision=precision, cache_dir=cache)


@pytest.mark.parametrize(("passage", "question", "expected"), AGREEMENT)
def test_pooled_best_sentence_is_the_one_embedded_alone(
    on_each_path: Embedder, passage: str, question: str, expected: str
) -> None:
    embedder = on_each_path
    spans = sentence_spans(passage)
    assert len(spans) >= 3
    vectors, pooled = embedder.embed_passages([passage], [spans])
    assert np.allclose(vectors, embedder.embed_documents([passage]), atol=1e-5)  # the passage's vector as before
    assert pooled[0] is not None
    query = embedder.embed_query(question)
    alone = embedder.embed_documents([passage[a:b] for a, b in spans])
    by_alone = spans[int(np.argmax(alone @ query))]
    assert passage[slice(*by_alone)] == expected
    # the random-weight test model's pooled vectors do not always put it first (a real model's agree
    # with embedding alone on 60 % of JSQuAD hits, bench/sentence_agreement.py), but among the first
    # two, which ``sentence_check`` 2 embeds alone to choose from
    shortlist = [spans[j] for j in np.argsort(-(pooled[0] @ query))[:2]]
    assert by_alone in shortlist
    # kept as int8, the order is the same
    kept = dequantize(quantize(pooled[0]), pooled[0].shape[1])
    assert [spans[j] for j in np.argsort(-(kept @ query))[:2]] == shortlist


def test_passages_in_batches_keep_their_vectors_and_get_their_sentences(on_each_path: Embedder) -> None:
    texts = [passage for passage, _, _ in AGREEMENT] + ["短い文。", "東京は日本の首都です。" * 12]
    spans = [sentence_spans(t) for t in texts]
    vectors, pooled = on_each_path.embed_passages(texts, spans)
    assert np.allclose(vectors, on_each_path.embed_documents(texts), atol=1e-5)
    for found, row in zip(pooled, spans, strict=True):
        assert found is not None
        assert found.shape == (len(row), on_each_path.dimension)
        assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)


def test_pooling_table() -> None:
    states = np.array([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [9.0, 9.0]])
    offsets = [(-1, -1), (0, 2), (2, 4), (4, 6), (-1, -1)]  # special tokens at both ends are left out
    pooled = pool_spans(states, offsets, [(0, 4), (4, 6), (1, 3)])
    assert pooled is not None
    assert np.allclose(pooled, [[0.70710678, 0.70710678], [0.6, 0.8], [0.70710678, 0.70710678]])
    assert pool_spans(states, offsets, [(6, 9)]) is None  # past the model's limit: no token
    assert pool_spans(states, offsets[:3], [(0, 2)]) is None  # offsets that do not match the states


def test_luke_offsets_are_characters(embedder: Embedder) -> None:
    tokens = embedder._counter()
    text = "東京は日本の首都です。「本当？」"
    offsets = tokens.offsets(text, 512)
    assert offsets is not None
    ids, _ = tokens.feed([text], 512)
    assert len(offsets) == ids.shape[1]
    assert offsets[0] == offsets[-1] == (-1, -1)
    assert "".join(text[a:b] for a, b in offsets[1:-1]) == text
    cut = tokens.offsets(text, 6)
    assert cut is not None
    assert len(cut) == 6


@pytest.mark.slow
def test_checking_the_pooled_shortlist_gives_the_sentence_embedded_alone(
    embedder: Embedder, store: ChromaStore, sentences: SentenceVectors
) -> None:
    indexer = Indexer(embedder, store, chunk_tokens=128, chunk_overlap=0, sentences=sentences)
    for number, (passage, _, _) in enumerate(AGREEMENT):
        indexer.ingest_bytes(f"{number}.txt", passage.encode())
    checked = Searcher(embedder, store, sentences=sentences, sentence_check=2)
    alone = Searcher(embedder, store)
    for _, question, expected in AGREEMENT:
        hits = checked.search(question, k=len(AGREEMENT))
        expected = normalize_text(expected)  # stored texts are normalised: ！ is !
        holder = next(i for i, h in enumerate(hits) if expected in h.chunk.text)
        before = embedder.stats.texts
        spans = checked.best_sentences(question, hits)
        assert embedder.stats.texts - before == 2 * sum(len(sentence_spans(h.chunk.text)) > 1 for h in hits)
        assert hits[holder].chunk.text[slice(*spans[holder])] == expected
        assert spans[holder] == alone.best_sentences(question, hits)[holder]


def test_ingest_keeps_each_chunks_sentences_and_search_embeds_none_of_them(
    embedder: Embedder, store: ChromaStore, sentences: SentenceVectors
) -> None:
    indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, sentences=sentences)
    text = "\n".join(passage for passage, _, _ in AGREEMENT)
    indexer.ingest_bytes("文書.txt", text.encode())
    searcher = Searcher(embedder, store, sentences=sentences)
    hits = searcher.search("吾輩は猫である。", k=3)
    kept = sentences.get(embedder.model_name, [h.chunk.text_hash for h in hits])
    assert set(kept) == {h.chunk.text_hash for h in hits}
    assert all(kept[h.chunk.text_hash].spans == tuple(sentence_spans(h.chunk.text)) for h in hits)
    before = embedder.stats.texts
    spans = searcher.best_sentences("吾輩は猫である。", hits)
    assert embedder.stats.texts == before  # the question was embedded by the search, the sentences at ingest
    holder = next(i for i, h in enumerate(hits) if "吾輩は猫である。" in h.chunk.text)
    start, end = spans[holder]
    assert hits[holder].chunk.text[start:end] == "吾輩は猫である。"
    # the same spans as embedding each sentence alone
    assert spans == Searcher(embedder, store).best_sentences("吾輩は猫である。", hits)


def test_a_store_built_before_gets_best_sentences_embedded_once(
    embedder: Embedder, store: ChromaStore, sentences: SentenceVectors
) -> None:
    Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8).ingest_bytes(
        "古い.txt", "\n".join(passage for passage, _, _ in AGREEMENT).encode()
    )
    searcher = Searcher(embedder, store, sentences=sentences)
    question = "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。"
    hits = searcher.search(question, k=2)
    assert sentences.get(embedder.model_name, [h.chunk.text_hash for h in hits]) == {}
    before = embedder.stats.texts
    spans = searcher.best_sentences(question, hits)
    holder = next(i for i, h in enumerate(hits) if question in h.chunk.text)
    assert hits[holder].chunk.text[slice(*spans[holder])] == question
    embedded = embedder.stats.texts - before
    assert embedded == sum(len(sentence_spans(h.chunk.text)) for h in hits)  # each sentence alone, once
    assert searcher.best_sentences(question, hits) == spans
    assert embedder.stats.texts - before == embedded  # kept: not embedded again


def test_a_chunk_without_its_text_hash_still_gets_its_best_sentence(embedder: Embedder, store: ChromaStore) -> None:
    searcher = Searcher(embedder, store)
    passage, question, expected = AGREEMENT[1]
    hit = Hit(stored_chunk(passage), 1, 0.5)
    assert hit.chunk.text_hash == ""
    (span,) = searcher.best_sentences(question, [hit])
    assert passage[slice(*span)] == expected


def test_json_of_a_hit_is_unchanged(embedder: Embedder, store: ChromaStore, sentences: SentenceVectors) -> None:
    Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, sentences=sentences).ingest_bytes(
        "文書.txt", AGREEMENT[0][0].encode()
    )
    searcher = Searcher(embedder, store, sentences=sentences)
    hits = searcher.search(AGREEMENT[0][1], k=1)
    (span,) = searcher.best_sentences(AGREEMENT[0][1], hits)
    fields = hit_json(hits[0], span)
    assert "text_hash" not in fields
    assert fields["best_sentence"] == list(span)
    assert set(fields) == set(hit_json(hits[0], None))


def test_sentences_file_keeps_rows_by_model_and_digest(sentences: SentenceVectors) -> None:
    assert sentences.get("モデル", ["a"]) == {}
    assert not sentences.path.exists()  # reading makes no file
    vectors = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    sentences.put("モデル", {text_hash("本文"): Sentences(((0, 3), (3, 5)), vectors)})
    kept = sentences.get("モデル", [text_hash("本文"), "ない"])
    assert list(kept) == [text_hash("本文")]
    assert kept[text_hash("本文")].spans == ((0, 3), (3, 5))
    assert np.allclose(kept[text_hash("本文")].vectors, vectors, atol=0.01)
    assert sentences.get("別のモデル", [text_hash("本文")]) == {}
    assert sentences.size() > 0


def test_identical_questions_at_once_are_embedded_once(embedder: Embedder) -> None:
    gate = QueryGate(embedder, slots=1)
    question = "同時に届いた同じ質問は一度だけ埋め込まれますか？"
    results: list[np.ndarray] = []
    before = embedder.stats.texts
    with gate.slot():  # the model is busy: the first asker waits inside, the others wait for its vector
        threads = [threading.Thread(target=lambda: results.append(gate.queries([question])[0])) for _ in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while gate.in_flight() != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the other seven reach the vector in flight
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    assert embedder.stats.texts - before == 1
    assert all(np.array_equal(r, results[0]) for r in results)
    assert np.allclose(results[0], embedder.embed_query(question), atol=1e-6)
    assert gate.in_flight() == 0


class _Watched(Embedder):
    """The real embedder, counting how many of its question batches run at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = self.most = 0
        self._count = threading.Lock()

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        with self._count:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.02)  # long enough for the others to try
            return super().embed_queries(texts, progress)
        finally:
            with self._count:
                self.now -= 1


def test_questions_run_no_more_at_once_than_the_cap(model_dir: Path) -> None:
    watched = _Watched(str(model_dir), precision="float32", query_precision="float32")
    watched.load()
    gate = QueryGate(watched, slots=2)
    threads = [threading.Thread(target=gate.queries, args=([f"質問 {i} はいつ届きましたか？"],)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert watched.stats.texts == 12
    assert watched.most == 2
    assert QueryGate(watched).slots >= 1
