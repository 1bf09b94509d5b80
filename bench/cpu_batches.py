"""The embedder's batches on a CPU, compared in one process on the product's own passages.

    .venv/bin/python bench/cpu_batches.py [--articles N] [--rounds R] [--precision int8]

The first ``--articles`` JSQuAD articles (10 by default) are written as text files, read and chunked
by the product (``Indexer.chunk``, the context line included, ``Indexer.passages``), and each
article's passages are embedded through the product's ``Embedder`` (the GLuCoSE-shaped random-weight
model of ``bench/ingest_speed.py``, ``--precision`` forced, int8 by default) in each of these ways:

- **16 only**: batches of ``RAG_BATCH_SIZE`` (16) texts, longest first: the product before 2026-12-07;
- **1,024 tokens**: also ending before a batch holds more than 1,024 tokens with its padding;
- **the product's**: that, and ending where the texts get 10 % shorter than the batch's first.

The ways take turns article by article, in the opposite order in every other round, so that a slower
minute of a shared machine falls on all of them. Printed per way: the embedding's seconds over all
rounds, tokens per second (the passages' tokens, padding not counted), the share of padding in what
was computed, the batches, and the time as a share of the first way's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import cpu_mask  # noqa: E402
from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles, write_articles  # noqa: E402

WAYS = {  # (SAME_LENGTH, BATCH_TOKENS) of pipelines.embedder
    "16 only": (0.0, 1 << 30),
    "1,024 tokens": (0.0, 1024),
    "the product's": (0.9, 1024),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="int8", choices=["int8", "float32", "bfloat16"])
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    from ingest.loaders import load_file
    from pipelines.model import batching
    from pipelines.service.compose import make_embedder
    from pipelines.settings import Settings
    from pipelines.store.chroma import ChromaStore
    from pipelines.store.indexing import Indexer
    from pipelines.store.paths import collect_paths

    print(cpu_mask.describe())
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        write_articles(JSQUAD, scratch / "docs", args.articles)
        corpus = "\n".join(text for _, text in read_articles(JSQUAD, 10))
        model = glucose_sized_model(args.cache, corpus)
        environment = {"RAG_EMBEDDING_MODEL": str(model), "RAG_DATA_DIR": str(scratch / "data")}
        cache = REPO / "bench-out" / "verdicts"
        settings = Settings.from_env(environment, precision=args.precision, cache_dir=cache)
        embedder = make_embedder(settings)
        embedder.load()
        print(f"precision: {embedder.precision.passages} ({embedder.precision.passages_reason})")
        indexer = Indexer(
            embedder, ChromaStore.persistent(settings.data_dir), settings.chunk_tokens, settings.chunk_overlap
        )
        articles: list[tuple[list[str], list[int]]] = []
        for path, source in collect_paths([scratch / "docs"]):
            _, texts, tokens = indexer.passages(source, indexer.chunk(load_file(path, source)))
            articles.append((texts, tokens))
        total = sum(sum(tokens) for _, tokens in articles)
        print(f"{len(articles)} articles, {sum(len(t) for t, _ in articles):,} passages, {total:,} tokens")

        batches: dict[str, list[int]] = {way: [] for way in WAYS}  # padded tokens of each batch
        seconds = dict.fromkeys(WAYS, 0.0)
        counting = Counting(
            embedder, batches, {t: n for texts, tokens in articles for t, n in zip(texts, tokens, strict=True)}
        )
        for round_ in range(args.rounds):
            for number, (texts, tokens) in enumerate(articles):
                ways = list(WAYS) if (round_ + number) % 2 == 0 else list(reversed(WAYS))
                for way in ways:
                    batching.SAME_LENGTH, batching.BATCH_TOKENS = WAYS[way]
                    counting.way = way
                    started = time.perf_counter()
                    embedder.embed_documents(texts, tokens)
                    seconds[way] += time.perf_counter() - started
        counting.restore()

    first = next(iter(WAYS))
    print(f"\n{args.rounds} rounds, ways interleaved article by article:")
    print("| batches | seconds | tokens/s | padding | batches per round | time ÷ 16 only |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for way in WAYS:
        computed = sum(batches[way])
        print(
            f"| {way} | {seconds[way]:.1f} | {args.rounds * total / seconds[way]:,.0f} | "
            f"{1 - args.rounds * total / computed:.1%} | {len(batches[way]) // args.rounds} | "
            f"{seconds[way] / seconds[first]:.3f} |"
        )


class Counting:
    """Records each batch's padded tokens (its texts × its longest) while the embedder encodes."""

    def __init__(self, embedder: Any, batches: dict[str, list[int]], tokens: dict[str, int]) -> None:
        self.embedder = embedder
        self.batches = batches
        self.tokens = tokens  # each passage's, as the indexer counted them
        self.way = ""
        self._encode = embedder._encode
        embedder._encode = self

    def __call__(self, texts: Sequence[str], precision: str | None = None) -> Any:
        longest = max(min(self.tokens[t], self.embedder.max_tokens) for t in texts)
        self.batches[self.way].append(longest * len(texts))
        return self._encode(texts, precision)

    def restore(self) -> None:
        del self.embedder._encode


if __name__ == "__main__":
    main()
