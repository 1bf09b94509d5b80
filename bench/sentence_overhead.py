"""What pooling each chunk's sentences at ingest costs: ingest time with and without it, and the file it writes.

    .venv/bin/python bench/sentence_overhead.py [--articles 5] [--rounds 3] [--paths int8 bfloat16]

The GLuCoSE-shaped random-weight model of ``bench/ingest_speed.py`` (the real cost per token), the
first ``--articles`` JSQuAD articles as text, the product's ``Indexer`` (chunking, embedding, the
store's writes, the keyword index) into a fresh store each time, in this process, both ways in turn
each round: without a sentences file (the passages' vectors only, as before) and with one (each
chunk's sentences pooled from the same forward pass, kept int8 in ``sentences.sqlite3``). Prints the
medians, their ratio, and the file's bytes per chunk and per 100,000 chunks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from pipelines.choices import Precision  # noqa: E402
from pipelines.model.embedder import Embedder  # noqa: E402
from pipelines.search.retrieval import Searcher  # noqa: E402
from pipelines.search.sentence_choice import refine_all  # noqa: E402
from pipelines.store.chroma import ChromaStore  # noqa: E402
from pipelines.store.indexing import Indexer  # noqa: E402
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer  # noqa: E402
from pipelines.store.sentences import SentenceVectors  # noqa: E402


def ingest(embedder: Embedder, articles: list[tuple[str, str]], pooled: bool) -> tuple[float, int, int, float]:
    """Seconds to ingest ``articles`` into a fresh store; its chunks; the sentences file's bytes; with ``pooled``,
    the seconds ``sentences refine`` then takes to embed every chunk's sentences alone (``refine_all``)."""
    with tempfile.TemporaryDirectory(prefix="sentence-overhead-") as scratch:
        folder = Path(scratch)
        store = ChromaStore.persistent(folder / "chroma")
        sentences = SentenceVectors(folder / "sentences.sqlite3") if pooled else None
        keyword = KeywordIndex(SudachiAnalyzer(), folder / "keyword.npz")
        indexer = Indexer(embedder, store, 128, 32, keyword=keyword, prefetch=0, sentences=sentences, context=True)
        started = time.perf_counter()
        chunks = 0
        for title, text in articles:
            chunks += indexer.ingest_text(f"{title}.txt", text).chunks
        seconds = time.perf_counter() - started
        size = sentences.size() if sentences is not None else 0
        refine = 0.0
        if sentences is not None:
            stored = [
                (Searcher.sentence_key_of(c), c.text)
                for d in store.documents()
                for c in store.reader.document_chunks(d.source, d.version)
            ]
            started = time.perf_counter()
            refine_all(stored, sentences, embedder.model_name, embedder.embed_documents)
            refine = time.perf_counter() - started
        store.close()
        return seconds, chunks, size, refine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=["int8"], choices=["int8", "bfloat16", "float32"])
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    articles = read_articles(JSQUAD, args.articles)
    model = glucose_sized_model(args.cache, "\n".join(text for _, text in read_articles(JSQUAD, None)))
    print(f"{len(articles)} articles, {sum(len(t) for _, t in articles):,} characters; {os.cpu_count()} CPUs")
    for path in args.paths:
        precision = cast(Precision, path)
        embedder = Embedder(
            str(model),
            batch_size=16,
            precision=precision,
            query_precision="int8",
            cache_dir=args.cache.parent / "verdicts",
        )
        embedder.load()
        ingest(embedder, articles[:1], True)  # warm: the model's first batches
        plain, pooled, refined, size, chunks = [], [], [], 0, 0
        for _ in range(args.rounds):
            seconds, chunks, _, _ = ingest(embedder, articles, False)
            plain.append(seconds)
            seconds, chunks, size, refine = ingest(embedder, articles, True)
            pooled.append(seconds)
            refined.append(refine)
        ratio = statistics.median(pooled) / statistics.median(plain)
        print(
            f"\n{path} ({embedder.precision.passages}): {chunks} chunks; without sentences "
            f"{statistics.median(plain):.1f} s ({', '.join(f'{s:.1f}' for s in plain)}), with them "
            f"{statistics.median(pooled):.1f} s ({', '.join(f'{s:.1f}' for s in pooled)}): ×{ratio:.3f} "
            f"({100 * (ratio - 1):+.1f} %)"
        )
        print(
            f"then `sentences refine` (each chunk's sentences embedded alone): {statistics.median(refined):.1f} s "
            f"({', '.join(f'{s:.1f}' for s in refined)}), ×{statistics.median(refined) / statistics.median(plain):.2f} "
            "of the ingest without sentences"
        )
        print(
            f"sentences file: {size:,} bytes, {size / chunks:,.0f} a chunk, "
            f"{size / chunks * 100_000 / 2**20:,.0f} MiB per 100,000 chunks"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
