"""The LangChain faces on the real pipeline: retriever, embeddings and answer chain over a store in a temp dir."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.vectorstores import InMemoryVectorStore

from pipelines.answers.answer import Answerer
from pipelines.answers.conversation import Rewriter, Turn
from pipelines.faces.langchain_face import (
    EmbedderEmbeddings,
    SearcherRetriever,
    answer_chain,
    document_hit,
    history_aware_retriever,
)
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Hit, Searcher
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer

FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
BIWA = "琵琶湖は滋賀県にある日本最大の湖です。"
# The searcher here has no keyword index, so it searches by cosine similarity: mode "dense" where
# Searcher.search has modes (hybrid search), its only way before.
DENSE: dict[str, Any] = {"mode": "dense"} if "mode" in inspect.signature(Searcher.search).parameters else {}


@pytest.fixture
def searcher(embedder: Embedder, tmp_path: Path) -> Iterator[Searcher]:
    store = ChromaStore.persistent(tmp_path / "data")
    indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8)
    for name, text in [("富士山.txt", FUJI), ("東京.txt", TOKYO), ("琵琶湖.txt", BIWA)]:
        assert indexer.ingest_bytes(name, text.encode()).status == "added"
    yield Searcher(embedder, store)
    store.close()


def test_retriever_gives_documents_with_the_hits_scores_and_places(searcher: Searcher) -> None:
    documents = SearcherRetriever(searcher=searcher, k=2, search_kwargs=DENSE).invoke(FUJI)
    hits = searcher.search(FUJI, 2, **DENSE)
    assert [d.page_content for d in documents] == [h.chunk.text for h in hits]
    first = documents[0]
    assert first.page_content == FUJI
    assert (first.metadata["source"], first.metadata["page"], first.metadata["chunk_index"]) == ("富士山.txt", None, 0)
    assert first.metadata["rank"] == 1
    assert first.metadata["cosine"] == pytest.approx(hits[0].cosine)
    assert first.metadata["cosine"] > documents[1].metadata["cosine"]
    assert [document_hit(d) for d in documents] == hits  # nothing of the hit is lost


def test_retriever_passes_its_options_to_the_search(searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    search = searcher.search

    def recording(question: str, k: int, sources: Sequence[str] | None, **options: Any) -> list[Hit]:
        calls.append((question, k, sources, options))
        return search(question, k, sources, **DENSE)

    monkeypatch.setattr(searcher, "search", recording)
    retriever = SearcherRetriever(searcher=searcher, k=3, sources=["東京.txt"], search_kwargs={"mode": "keyword"})
    documents = retriever.invoke(FUJI)
    assert calls == [(FUJI, 3, ["東京.txt"], {"mode": "keyword"})]
    assert [d.metadata["source"] for d in documents] == ["東京.txt"]


def test_embeddings_are_the_products_vectors(embedder: Embedder) -> None:
    embeddings = EmbedderEmbeddings(embedder)
    vectors = embeddings.embed_documents([FUJI, TOKYO])
    assert len(vectors) == 2
    assert all(isinstance(x, float) for x in vectors[0])
    assert np.allclose(vectors, embedder.embed_documents([FUJI, TOKYO]), atol=1e-6)
    # questions are normalised as the search normalises them: full-width ＡＢＣ is ABC
    assert np.allclose(embeddings.embed_query("ＡＢＣの山は？"), embedder.embed_query("ABCの山は?"), atol=1e-6)


def test_embeddings_work_in_a_langchain_vector_store(embedder: Embedder) -> None:
    store = InMemoryVectorStore(embedding=EmbedderEmbeddings(embedder))
    store.add_texts([FUJI, TOKYO, BIWA], metadatas=[{"source": n} for n in ("富士山", "東京", "琵琶湖")])
    (found,) = store.similarity_search(TOKYO, k=1)
    assert found.metadata["source"] == "東京"


def test_answer_chain_streams_the_documents_then_the_answer(searcher: Searcher) -> None:
    reply = "富士山の標高は三七七六メートルです[1]。[9]"
    model = FakeListChatModel(responses=[reply])
    chain = answer_chain(SearcherRetriever(searcher=searcher, k=2, search_kwargs=DENSE), Answerer(model))
    chunks = list(chain.stream(FUJI))
    keys = [next(iter(chunk)) for chunk in chunks]
    assert keys.index("documents") < keys.index("answer")
    assert "".join(c["answer"] for c in chunks if "answer" in c) == reply
    assert keys.count("answer") == len(reply)  # this fake streams one character at a time

    result = chain.invoke(FUJI)
    assert result["question"] == FUJI
    assert [d.page_content for d in result["documents"]] == [p.text for p in result["passages"]]
    assert result["answer"] == reply
    assert [(c.n, c.source) for c in result["citations"]] == [(1, "富士山.txt")]
    assert result["dropped"] == [9]


def test_history_aware_retriever_searches_the_follow_up_made_standalone(searcher: Searcher) -> None:
    model = FakeListChatModel(responses=["富士山の標高は？", "二度目"])
    retriever = SearcherRetriever(searcher=searcher, k=1, search_kwargs=DENSE)
    chain = history_aware_retriever(Rewriter(model), retriever)
    (first,) = chain.invoke({"question": TOKYO, "turns": []})  # nothing earlier: searched as typed
    assert first.page_content == TOKYO
    assert model.i == 0
    earlier = [Turn("日本一高い山は？", "日本一高い山は？", "富士山です[1]。")]
    (found,) = chain.invoke({"question": "その高さは？", "turns": earlier})
    assert model.i == 1
    assert found.page_content == retriever.invoke("富士山の標高は？")[0].page_content
