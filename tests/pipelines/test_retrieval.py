"""Retrieval extras the page uses: search within chosen documents, the text around a hit, its best sentence."""

from __future__ import annotations

import pytest

from pipelines.embedder import Embedder
from pipelines.indexing import Indexer
from pipelines.retrieval import Searcher
from tests.documents import SENTENCES


@pytest.fixture
def searcher(indexer: Indexer, embedder: Embedder) -> Searcher:
    indexer.ingest_bytes("長い.txt", "\n".join(SENTENCES).encode())
    indexer.ingest_bytes("別.txt", SENTENCES[2].encode())
    return Searcher(embedder, indexer.store)


def test_search_within_chosen_documents(searcher: Searcher) -> None:
    everywhere = searcher.search(SENTENCES[2], k=10)
    assert {h.source for h in everywhere} == {"長い.txt", "別.txt"}
    only = searcher.search(SENTENCES[2], k=10, sources=["長い.txt"])
    assert only
    assert {h.source for h in only} == {"長い.txt"}
    assert [h.rank for h in only] == list(range(1, len(only) + 1))
    assert searcher.search(SENTENCES[2], k=10, sources=[]) == []
    assert searcher.search(SENTENCES[2], k=10, sources=["ない.txt"]) == []


def test_surroundings_are_the_text_next_to_a_hit(searcher: Searcher) -> None:
    hits = sorted(searcher.search(SENTENCES[0], k=10, sources=["長い.txt"]), key=lambda h: h.chunk_index)
    assert len(hits) >= 3
    middle = hits[1]
    before, after = searcher.surroundings(middle)
    document = "\n".join(SENTENCES)
    # before + hit + after is a contiguous piece of the document, with no repeated overlap
    assert (before + middle.text + after).replace("\n", "") in document.replace("\n", "")
    assert before
    assert after
    first_before, _ = searcher.surroundings(hits[0])
    _, last_after = searcher.surroundings(hits[-1])
    assert (first_before, last_after) == ("", "")


def test_best_sentence_is_the_one_the_question_repeats(searcher: Searcher) -> None:
    hits = searcher.search("吾輩は猫である。名前はまだ無い。", k=3)
    spans = searcher.best_sentences("名前はまだ無い。", hits)
    assert len(spans) == len(hits)
    holder = next(h for h in hits if "名前はまだ無い。" in h.text)
    start, end = spans[hits.index(holder)]
    assert holder.text[start:end] == "名前はまだ無い。"
    for hit, (start, end) in zip(hits, spans, strict=True):
        assert 0 <= start < end <= len(hit.text)
