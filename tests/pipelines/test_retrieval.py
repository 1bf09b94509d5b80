"""Retrieval: the three modes and their scores, the reranker, and the extras the page uses (filters, surroundings, best sentence)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.document import Place
from ingest.normalize import normalize_text
from pipelines.choices import MODES, Mode
from pipelines.errors import ModelLoadError, RagError
from pipelines.model.embedder import Embedder
from pipelines.search.rerank import CrossEncoderReranker
from pipelines.search.retrieval import Fusion, Hit, Searcher, hit_json
from pipelines.store.indexing import Indexer
from pipelines.store.records import StoredChunk
from testkit.documents import SENTENCES
from testkit.offline_model import build_offline_reranker
from testkit.records import stored_chunk


@pytest.fixture
def searcher(indexer: Indexer, embedder: Embedder) -> Searcher:
    indexer.ingest_bytes("長い.txt", "\n".join(SENTENCES).encode())
    indexer.ingest_bytes("別.txt", SENTENCES[2].encode())
    return Searcher(embedder, indexer.store)


def test_search_within_chosen_documents(searcher: Searcher) -> None:
    everywhere = searcher.search(SENTENCES[2], k=10)
    assert {h.chunk.source for h in everywhere} == {"長い.txt", "別.txt"}
    only = searcher.search(SENTENCES[2], k=10, sources=["長い.txt"])
    assert only
    assert {h.chunk.source for h in only} == {"長い.txt"}
    assert [h.rank for h in only] == list(range(1, len(only) + 1))
    assert searcher.search(SENTENCES[2], k=10, sources=[]) == []
    assert searcher.search(SENTENCES[2], k=10, sources=["ない.txt"]) == []


def test_surroundings_are_the_text_next_to_a_hit(searcher: Searcher) -> None:
    hits = sorted(searcher.search(SENTENCES[0], k=10, sources=["長い.txt"]), key=lambda h: h.chunk.chunk_index)
    assert len(hits) >= 3
    middle = hits[1]
    before, after = searcher.surroundings(middle.chunk)
    document = "\n".join(SENTENCES)
    # before + hit + after is a contiguous piece of the document, with no repeated overlap
    assert (before + middle.chunk.text + after).replace("\n", "") in document.replace("\n", "")
    assert before
    assert after
    first_before, _ = searcher.surroundings(hits[0].chunk)
    _, last_after = searcher.surroundings(hits[-1].chunk)
    assert (first_before, last_after) == ("", "")


def test_best_sentence_is_the_one_the_question_repeats(searcher: Searcher) -> None:
    hits = searcher.search("吾輩は猫である。名前はまだ無い。", k=3)
    spans = searcher.best_sentences("名前はまだ無い。", hits)
    assert len(spans) == len(hits)
    holder = next(h for h in hits if "名前はまだ無い。" in h.chunk.text)
    start, end = spans[hits.index(holder)]
    assert holder.chunk.text[start:end] == "名前はまだ無い。"
    for hit, (start, end) in zip(hits, spans, strict=True):
        assert 0 <= start < end <= len(hit.chunk.text)


# Modes and honest scores ------------------------------------------------------------------------

LIBRARY = {
    "規程.txt": "有給休暇は入社6か月後から取得できます。在宅勤務は週三日まで認められます。",
    "富士山.txt": "富士山は日本で最も高い山で、標高は3776メートルです。",
    "京都.txt": "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
    "会議.txt": "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。",
}


@pytest.fixture
def library(indexer: Indexer, embedder: Embedder) -> Searcher:
    for name, text in LIBRARY.items():
        indexer.ingest_bytes(name, text.encode())
    return Searcher(embedder, indexer.store, candidates=3)


def _cosine(embedder: Embedder, question: str, text: str) -> float:
    return float(embedder.embed_query(question) @ embedder.embed_documents([text])[0])


@pytest.mark.parametrize("mode", MODES)
def test_every_hit_carries_every_score(library: Searcher, embedder: Embedder, mode: Mode) -> None:
    question = "富士山の標高は何メートルですか？"
    hits = library.search(question, k=4, mode=mode)
    assert hits
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    # each list is max(k, candidates) = 4 long
    dense = {h.chunk_id: h.rank for h in library.search(question, k=4, mode="dense")}
    keyword = library.keyword.search(normalize_text(question), 4)
    for hit in hits:
        # the cosine is the real one, also for a hit that only keyword search found
        assert hit.cosine == pytest.approx(_cosine(embedder, question, hit.chunk.text), abs=1e-4)
        assert hit.keyword_score == pytest.approx(keyword.score(hit.chunk_id), abs=1e-5)
        assert hit.dense_rank == dense.get(hit.chunk_id)
        assert hit.keyword_rank == next((k.rank for k in keyword.hits if k.chunk_id == hit.chunk_id), None)
        assert hit.dense_rank is not None or hit.keyword_rank is not None
        assert hit.rerank_score is None
    assert hits[0].chunk.source == "富士山.txt" or mode == "dense"  # random weights: only words are reliable


def test_modes_order_by_their_own_rule(library: Searcher) -> None:
    question = "在宅勤務と有給休暇"
    dense = library.search(question, k=3, mode="dense")
    assert [h.cosine for h in dense] == sorted((h.cosine for h in dense), reverse=True)
    keyword = library.search(question, k=3, mode="keyword")
    assert [h.chunk.source for h in keyword] == ["規程.txt"]  # only chunks sharing a word
    assert keyword[0].keyword_rank == 1
    assert (keyword[0].keyword_score or 0) > 0
    hybrid = library.search(question, k=4, mode="hybrid")
    assert hybrid[0].chunk.source == "規程.txt"
    assert {h.chunk_id for h in hybrid} >= {h.chunk_id for h in keyword}
    assert {h.chunk_id for h in hybrid} >= {h.chunk_id for h in dense}
    assert library.search("宇宙船の燃料", k=3, mode="keyword") == []
    with pytest.raises(RagError, match="検索方式"):
        library.search(question, mode="fuzzy")  # type: ignore[arg-type]


def test_fusion_prefers_what_both_lists_rank_high() -> None:
    """The hybrid rule on hand-made candidates: BM25 divided by its best, the cosine stretched from the
    pool's least similar (0) to its most similar (1), then mixed."""

    def hit(name: str, cosine: float, bm25: float) -> Hit:
        return Hit(stored_chunk(name, "s", chunk_id=name), 0, cosine, keyword_score=bm25)

    pool = [hit("words", 0.50, 10.0), hit("meaning", 0.90, 0.0), hit("both", 0.85, 8.0)]
    assert [h.chunk_id for h in Fusion(0.6).order(pool)] == ["both", "words", "meaning"]
    # 0.5: words 0.5·1 + 0.5·0, meaning 0.5·0 + 0.5·1; the tie goes to the higher cosine
    assert [h.chunk_id for h in Fusion(0.5).order(pool)] == ["both", "meaning", "words"]
    # cosines divided by the best alone, words (0.45 + 0.55·0.56 = 0.76) would come before meaning (0.55)
    assert [h.chunk_id for h in Fusion(0.45).order(pool)] == ["both", "meaning", "words"]
    assert [h.chunk_id for h in Fusion(0.0).order(pool)] == ["meaning", "both", "words"]
    assert [h.chunk_id for h in Fusion(1.0).order(pool)] == ["words", "both", "meaning"]
    assert Fusion().order([]) == []


def test_rules_are_written_for_each_mode(library: Searcher) -> None:
    assert "コサイン類似度" in library.rule("dense")
    assert "BM25" in library.rule("keyword")
    hybrid = library.rule("hybrid")
    assert "BM25" in hybrid
    assert "コサイン類似度" in hybrid
    assert "上位 3 件" in hybrid


def test_reranker_reorders_the_first_candidates(
    library: Searcher, embedder: Embedder, model_dir: Path, tmp_path: Path
) -> None:
    """A real cross-encoder (tiny, built offline) loaded by the product reorders the head of the list."""
    from sentence_transformers import CrossEncoder

    reranker_dir = build_offline_reranker(tmp_path / "reranker", model_dir)
    question = "富士山の標高は何メートルですか？"
    plain = library.search(question, k=4, mode="dense")
    reranked = Searcher(
        embedder,
        library.store,
        candidates=3,
        reranker=CrossEncoderReranker(str(reranker_dir)),
        rerank_candidates=3,
    )
    hits = reranked.search(question, k=4, mode="dense")
    head = hits[:3]
    expected = CrossEncoder(str(reranker_dir)).predict([(question, h.chunk.text) for h in head])
    assert [h.rerank_score for h in head] == pytest.approx([float(x) for x in expected], abs=1e-5)
    assert [h.rerank_score for h in head] == sorted((h.rerank_score or 0.0 for h in head), reverse=True)
    assert {h.chunk_id for h in head} == {h.chunk_id for h in plain[:3]}  # the same candidates, reordered
    assert hits[3].chunk_id == plain[3].chunk_id
    assert hits[3].rerank_score is None
    assert "再ランキング" in reranked.rule("dense")


def test_missing_reranker_is_a_clear_error(library: Searcher, embedder: Embedder, tmp_path: Path) -> None:
    searcher = Searcher(embedder, library.store, reranker=CrossEncoderReranker(str(tmp_path / "ない")))
    with pytest.raises(ModelLoadError, match="再ランキングモデル"):
        searcher.search("富士山", k=2)


def test_a_question_is_embedded_once(library: Searcher, embedder: Embedder) -> None:
    """The page searches again on every interaction; the question's vector is kept, and is the same."""
    first = library.search("富士山の標高は？", k=3)
    before = embedder.stats.texts
    again = library.search("富士山の標高は？", k=3, mode="hybrid")
    other_mode = library.search("富士山の標高は？", k=3, mode="dense")
    assert embedder.stats.texts == before
    assert again == first
    assert other_mode
    library.search("京都の寺", k=3)
    assert embedder.stats.texts == before + 1


def test_only_the_shown_hits_are_read_and_a_vanished_one_gives_way(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Texts are read for the k hits shown; a chunk replaced by another process meanwhile is skipped, the next one shown."""
    question = SENTENCES[3]
    full = searcher.search(question, k=4)
    store = searcher.store
    read: list[list[str]] = []
    real = store.chunks_by_id

    def vanishing(ids: list[str], live: dict[str, str] | None = None) -> dict[str, StoredChunk]:
        read.append(list(ids))
        found = real(ids, live)
        found.pop(full[0].chunk_id, None)  # gone between the search and the read
        return found

    monkeypatch.setattr(store, "chunks_by_id", vanishing)
    searcher._cache.clear()
    hits = searcher.search(question, k=3)
    assert read[0] == [h.chunk_id for h in full[:3]]  # the first read: exactly the three to show
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in full[1:4]]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert [(h.cosine, h.keyword_score) for h in hits] == [(h.cosine, h.keyword_score) for h in full[1:4]]


# ``search --json`` and the API's hits as they were when ``Hit`` still repeated its chunk's fields: a public format
HITS_JSON = [
    {
        "rank": 2,
        "cosine": 0.75,
        "text": "テキスト",
        "source": "a.pptx",
        "page": None,
        "page_end": None,
        "chunk_index": 3,
        "char_start": 10,
        "char_end": 14,
        "content_hash": "h",
        "version": "h-v",
        "chunk_id": "h-v-00003",
        "keyword_score": 1.5,
        "dense_rank": 2,
        "keyword_rank": None,
        "rerank_score": 0.25,
        "breaks": [[2, 5]],
        "location": "スライド 4–5",
        "slide": 4,
        "slide_end": 5,
        "sheet": None,
        "row": None,
        "row_end": None,
        "heading": ["第1章", "目的"],
        "ocr": True,
        "best_sentence": [0, 2],
        "best_location": "スライド 4",
        "best_page": None,
        "best_slide": 4,
        "best_row": None,
    },
    {
        "rank": 1,
        "cosine": 0.5,
        "text": "x",
        "source": "b.xlsx",
        "page": None,
        "page_end": None,
        "chunk_index": 0,
        "char_start": 0,
        "char_end": 1,
        "content_hash": "c",
        "version": "c-v",
        "chunk_id": "",
        "keyword_score": None,
        "dense_rank": None,
        "keyword_rank": None,
        "rerank_score": None,
        "breaks": [],
        "location": "シート 売上 ・ 3–7 行",
        "slide": None,
        "slide_end": None,
        "sheet": "売上",
        "row": 3,
        "row_end": 7,
        "heading": [],
        "ocr": False,
    },
    {
        "rank": 1,
        "cosine": 0.5,
        "text": "x",
        "source": "c.pdf",
        "page": 2,
        "page_end": 3,
        "chunk_index": 0,
        "char_start": 0,
        "char_end": 1,
        "content_hash": "c",
        "version": "c-v",
        "chunk_id": "",
        "keyword_score": None,
        "dense_rank": None,
        "keyword_rank": None,
        "rerank_score": None,
        "breaks": [],
        "location": "2–3 ページ",
        "slide": None,
        "slide_end": None,
        "sheet": None,
        "row": None,
        "row_end": None,
        "heading": [],
        "ocr": False,
    },
]


def test_hit_json_keeps_its_public_keys_and_values() -> None:
    heading = ("第1章", "目的")
    slides = StoredChunk(
        "テキスト", "a.pptx", 3, 10, 14, "h", "h-v", "h-v-00003",
        Place(slide=4, heading=heading, ocr=True), Place(slide=5, heading=heading), ((2, 5),),
    )  # fmt: skip
    rows = StoredChunk("x", "b.xlsx", 0, 0, 1, "c", "c-v", "", Place(sheet="売上", row=3), Place(sheet="売上", row=7))
    pages = StoredChunk("x", "c.pdf", 0, 0, 1, "c", "c-v", "", Place(page=2), Place(page=3))
    hits = [
        Hit(slides, 2, 0.75, keyword_score=1.5, dense_rank=2, keyword_rank=None, rerank_score=0.25),
        Hit(rows, 1, 0.5),
        Hit(pages, 1, 0.5),
    ]
    found = [hit_json(hits[0], (0, 2)), hits[1].to_dict(), hits[2].to_dict()]
    assert [list(d) for d in found] == [list(d) for d in HITS_JSON]  # the same keys in the same order
    assert found == HITS_JSON
    assert [Hit.from_dict(d).to_dict() for d in found[1:]] == HITS_JSON[1:]
