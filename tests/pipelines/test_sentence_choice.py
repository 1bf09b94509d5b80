"""The best sentence's shared characters, and the sentences made exact in idle time or by ``sentences refine``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import sentence_spans
from pipelines.errors import PermissionDeniedError
from pipelines.faces import cli
from pipelines.model.embedder import Embedder
from pipelines.model.gate import QueryGate
from pipelines.search.retrieval import Searcher
from pipelines.search.sentence_choice import (
    LEXICAL_WEIGHT,
    Pending,
    SentenceRefiner,
    bigrams,
    refine_all,
    sentence_scores,
    shared_shares,
)
from pipelines.service.audit import AuditLog
from pipelines.service.keys import LEGACY
from pipelines.service.library import Library
from pipelines.service.policy import Grant
from pipelines.service.results import Caller
from pipelines.service.service import Service
from pipelines.settings import Settings
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.sentences import Sentences, SentenceVectors

PASSAGE = (
    "東京は日本の首都であり、政治と経済の中心地です。富士山は日本で最も高い山で、標高は三七七六メートルです。"
    "雨が降ったので、試合は翌週に延期されました。"
)


def test_bigrams_read_full_and_half_width_alike_and_leave_punctuation_out() -> None:
    assert bigrams("ＧＰＵサーバー。") == bigrams("GPUｻｰﾊﾞｰ")
    assert "。" not in "".join(bigrams("富士山。標高！"))
    assert bigrams("山") == set()


def test_shares_count_the_questions_bigrams_a_sentence_holds() -> None:
    shares = shared_shares("富士山の標高は？", ["富士山は高い。", "標高は三七七六メートル。", "雨が降った。"])
    assert shares[0] > 0
    assert shares[1] > 0
    assert shares[2] == 0
    assert shared_shares("？", ["富士山"]).tolist() == [0.0]


def test_shared_characters_count_for_pooled_vectors_only() -> None:
    texts = ("雨が降った。", "富士山の標高は三七七六メートル。")
    query = np.array([1.0, 0.0], dtype=np.float32)
    vectors = np.array([[1.0, 0.0], [0.999, 0.0447]], dtype=np.float32)  # the first a hair closer by cosine
    pooled = sentence_scores("富士山の標高は？", query, Sentences(((0, 6), (6, 22)), vectors, True), texts)
    exact = sentence_scores("富士山の標高は？", query, Sentences(((0, 6), (6, 22)), vectors, False), texts)
    assert int(np.argmax(pooled)) == 1  # the shared words decide between pooled vectors this close
    assert pooled[1] - exact[1] == pytest.approx(LEXICAL_WEIGHT * shared_shares("富士山の標高は？", texts[1:])[0])
    assert int(np.argmax(exact)) == 0  # sentences embedded alone: the cosine alone, as it is exact


def test_shown_hits_become_exact_when_the_model_is_idle(embedder: Embedder, store: ChromaStore, tmp_path: Path) -> None:
    sentences = SentenceVectors(tmp_path / "sentences.sqlite3")
    Indexer(embedder, store, chunk_tokens=128, chunk_overlap=0, sentences=sentences).ingest_bytes(
        "富士山.txt", PASSAGE.encode()
    )
    searcher = Searcher(embedder, store, sentences=sentences, refine=True)
    assert searcher.refiner is not None
    question = "富士山の標高は何メートルですか"
    hits = searcher.search(question, k=1)
    key = hits[0].chunk.text_hash
    assert sentences.get(embedder.model_name, [key])[key].pooled
    searcher.best_sentences(question, hits)
    assert searcher.refiner.drain(30)
    row = sentences.get(embedder.model_name, [key])[key]
    assert not row.pooled
    assert row.spans == tuple(sentence_spans(hits[0].chunk.text))
    alone = embedder.embed_documents([hits[0].chunk.text[a:b] for a, b in row.spans])
    assert np.allclose(row.vectors, alone, atol=0.02)  # int8 kept
    # exact now: the choice is the one embedding each alone makes, and nothing more is embedded or queued
    each_alone = Searcher(embedder, store).best_sentences(question, hits)
    before = embedder.stats.texts
    assert searcher.best_sentences(question, hits) == each_alone
    assert embedder.stats.texts == before
    assert searcher.refiner.waiting() == 0
    assert searcher.refiner.refined == 1


def test_the_refiner_waits_while_searches_use_the_model(embedder: Embedder, tmp_path: Path) -> None:
    sentences = SentenceVectors(tmp_path / "sentences.sqlite3")
    gate = QueryGate(embedder, slots=1)
    refiner = SentenceRefiner(gate, sentences, embedder.model_name, idle_seconds=0.3)
    with gate.slot():  # a search holds the model
        refiner.offer([Pending("k", ("吾輩は猫である。", "名前はまだ無い。"), ((0, 8), (8, 16)))])
        time.sleep(0.6)
        assert refiner.waiting() == 1
        assert sentences.get(embedder.model_name, ["k"]) == {}
    started = time.monotonic()
    assert refiner.drain(30)
    assert time.monotonic() - started >= 0.25  # it let the model rest first
    assert not sentences.get(embedder.model_name, ["k"])["k"].pooled
    refiner.offer([Pending("k2", (), ())])  # nothing to embed: not queued
    assert refiner.waiting() == 0


def test_refine_all_goes_on_where_a_stopped_run_left(embedder: Embedder, tmp_path: Path) -> None:
    sentences = SentenceVectors(tmp_path / "sentences.sqlite3")
    chunks = [("a", PASSAGE), ("b", "吾輩は猫である。名前はまだ無い。"), ("c", "一文だけです。"), ("a", PASSAGE)]
    calls: list[int] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped after its first batch
        return embedder.embed_documents(texts)

    with pytest.raises(KeyboardInterrupt):
        refine_all(chunks, sentences, embedder.model_name, embed, batch_sentences=1)
    assert set(sentences.get(embedder.model_name, ["a", "b"])) == {"a"}
    report = refine_all(chunks, sentences, embedder.model_name, embedder.embed_documents)
    assert (report.refined, report.already, report.sentences) == (1, 2, 2)  # "a" kept, "c" has one sentence
    again = refine_all(chunks, sentences, embedder.model_name, embedder.embed_documents)
    assert again.to_dict() == {"refined": 0, "already": 3, "sentences": 0}
    # read one passage at a time (a large collection is never all in memory): the same outcome
    one_by_one = SentenceVectors(tmp_path / "one.sqlite3")
    heard: list[tuple[int, int]] = []
    report = refine_all(
        iter(chunks),
        one_by_one,
        embedder.model_name,
        embedder.embed_documents,
        total=4,
        group=1,
        progress=lambda done, total: heard.append((done, total)),
    )
    assert report.to_dict() == {"refined": 2, "already": 1, "sentences": 5}  # a repeated passage counted once
    assert heard == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_sentences_refine_from_the_cli_is_an_audited_admin_act(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "富士山.txt").write_text(PASSAGE, encoding="utf-8")
    assert cli.main(["ingest", str(docs)]) == 0
    capsys.readouterr()
    assert cli.main(["sentences", "refine", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["refined"] >= 1
    assert report["sentences"] >= 3
    assert cli.main(["sentences", "refine"]) == 0
    assert "0 件の文章" in capsys.readouterr().out
    settings = Settings.from_env()
    rows = AuditLog(settings.data_dir / "audit.sqlite3").entries()
    assert [r.action for r in rows if r.action == "refine_sentences"] == ["refine_sentences"] * 2
    monkeypatch.delenv("RAG_SENTENCE_REFINE")  # the default: a serving process refines what it shows
    assert Library(Settings.from_env()).pipelines("default").searcher.refiner is not None
    reader = Caller("api", "key:r", "127.0.0.1", (Grant("r" * 16, "*", LEGACY["read"]),))
    with pytest.raises(PermissionDeniedError):
        Service(Library(settings)).refine_sentences(reader, "default")
