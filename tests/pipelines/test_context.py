"""Context in the chunk: the title and heading path are embedded and keyword-indexed with each chunk, not shown."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.document import Place
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Searcher
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import CONTEXT_CHARACTERS, Indexer, chunk_context, document_title, text_hash
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer

RULES = "# 出張旅費規程\n\n## 第3条 申請\n\n申請は出発の一週間前までに所属長へ提出する。\n\n## 第4条 精算\n\n帰着後は速やかに領収書を添えて届け出る。\n"


def test_the_context_is_the_title_sheet_and_heading_path() -> None:
    assert document_title("出張旅費規程.pdf") == "出張旅費規程"
    assert document_title("Mr.Children") == "Mr.Children"  # not an extension the readers know
    assert document_title("議事録.2024.docx") == "議事録.2024"
    assert chunk_context("規程.md", Place(heading=("第2章　申請", "2.1 手続き"))) == "規程 > 第2章 申請 > 2.1 手続き"
    assert chunk_context("売上.xlsx", Place(sheet="ＡＢＣ支店", row=3)) == "売上 > ABC支店"  # NFKC, as the text
    assert chunk_context("報告.pptx", Place(slide=2, heading=("報告",))) == "報告"  # a repeat is said once
    assert chunk_context("メモ.txt", Place()) == "メモ"
    assert len(chunk_context("長い.md", Place(heading=("見出し" * 100,)))) == CONTEXT_CHARACTERS


@pytest.fixture
def contextual(embedder: Embedder, store: ChromaStore) -> Indexer:
    return Indexer(embedder, store, 64, 0, keyword=KeywordIndex(SudachiAnalyzer()), context=True)


def test_chunks_are_embedded_with_their_context_and_shown_without(contextual: Indexer, embedder: Embedder) -> None:
    assert contextual.ingest_bytes("出張旅費規程.md", RULES.encode()).status == "added"
    store = contextual.store
    searcher = Searcher(embedder, store, contextual.keyword)
    hit = searcher.search("申請は出発の一週間前までに所属長へ提出する。", k=1, mode="dense")[0]
    context = chunk_context("出張旅費規程.md", hit.chunk.place)
    assert context.startswith("出張旅費規程 > ")
    assert not hit.chunk.text.startswith(context)  # shown as written
    # the stored vector is the one of the text with its context before it, kept under that text's digest
    embedded = f"{context}\n{hit.chunk.text}"
    stored = store.reader.vectors_for([text_hash(embedded), text_hash(hit.chunk.text)])
    assert list(stored) == [text_hash(embedded)]
    expected = embedder.embed_documents([embedded])[0]
    assert np.allclose(stored[text_hash(embedded)], expected, atol=1e-5)
    assert not np.allclose(embedder.embed_documents([hit.chunk.text])[0], expected, atol=1e-3)


def test_a_word_only_in_the_title_finds_the_chunk_by_keyword(contextual: Indexer, embedder: Embedder) -> None:
    text = "申請は出発の一週間前までに所属長へ提出する。"
    contextual.ingest_bytes("旅費規程.txt", text.encode())
    hits = Searcher(embedder, contextual.store, contextual.keyword).search("旅費", k=1, mode="keyword")
    assert [h.chunk.text for h in hits] == [text]  # 旅費 is in its title only
    # a keyword index rebuilt from the store alone (another process, a Chroma server) indexes the same words
    rebuilt = KeywordIndex(SudachiAnalyzer())
    assert [
        h.chunk.text for h in Searcher(embedder, contextual.store, rebuilt).search("旅費", k=1, mode="keyword")
    ] == [text]
    # without the context, the title's words are not the chunk's
    plain = KeywordIndex(SudachiAnalyzer())
    Indexer(embedder, contextual.store, 64, 0, keyword=plain).ingest_bytes("旅費規程.txt", text.encode())
    assert Searcher(embedder, contextual.store, plain).search("旅費", k=1, mode="keyword") == []


def test_turning_the_context_on_rebuilds_the_document(embedder: Embedder, store: ChromaStore) -> None:
    plain = Indexer(embedder, store, 64, 0)
    assert plain.ingest_bytes("規程.md", RULES.encode()).status == "added"
    assert plain.ingest_bytes("規程.md", RULES.encode()).status == "unchanged"
    with_context = Indexer(embedder, store, 64, 0, context=True)
    assert with_context.ingest_bytes("規程.md", RULES.encode()).status == "replaced"
    assert with_context.ingest_bytes("規程.md", RULES.encode()).status == "unchanged"


def test_a_context_that_does_not_fit_beside_a_full_chunk_is_left_out(embedder: Embedder, store: ChromaStore) -> None:
    limit = embedder.max_tokens
    indexer = Indexer(embedder, store, limit, 0, context=True)
    long_text = "申請は出発の一週間前までに所属長へ提出する。" * 200
    indexer.ingest_bytes("出張旅費規程と海外出張の取扱いに関する細則.txt", long_text.encode())
    version = store.reader.live_versions()["出張旅費規程と海外出張の取扱いに関する細則.txt"]
    texts = store.reader.chunk_texts("出張旅費規程と海外出張の取扱いに関する細則.txt", version)
    # every embedded text fits the model: the full chunks go without their context
    assert all(embedder.count_tokens(text) <= limit for _, text in texts)
