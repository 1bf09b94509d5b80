"""Ingest speed of the product on a GLuCoSE-sized model: tokens and chunks per second, end to end.

    .venv/bin/python bench/ingest_speed.py [--articles N] [--batch-size B]

Builds, offline, a random-weight model with GLuCoSE-base-ja's architecture and size (LUKE, 768 hidden,
12 layers, 12 heads, 3072 intermediate, 32,772-token vocabulary), so the cost per token is the real
one; writes the JSQuAD articles of ``../shared/data`` as text files (one per article, its paragraphs
joined, the title as the name); and times the product's ingest (load, normalise, chunk, embed,
store) into a fresh Chroma store, then a second ingest of the unchanged files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.embedder import Embedder  # noqa: E402
from pipelines.indexing import Indexer  # noqa: E402
from pipelines.store import ChromaStore  # noqa: E402
from tests.offline_model import build_offline_model  # noqa: E402

JSQUAD = REPO.parent / "shared" / "data" / "jsquad-v1.3-valid.json"
GLUCOSE_SHAPE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072}


def write_articles(source: Path, folder: Path, limit: int | None) -> int:
    """One text file per JSQuAD article; returns the number of characters written."""
    articles = json.loads(source.read_text(encoding="utf-8"))["data"][:limit]
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for article in articles:
        paragraphs = [p["context"].split("[SEP]", 1)[-1].strip() for p in article["paragraphs"]]
        text = "\n\n".join(paragraphs)
        (folder / f"{article['title'].replace('/', '／')}.txt").write_text(text, encoding="utf-8")
        written += len(text)
    return written


def glucose_sized_model(cache: Path, corpus: str) -> Path:
    """A GLuCoSE-shaped model with random weights; its sentencepiece vocabulary is trained on the corpus."""
    if (cache / "model.safetensors").exists():
        return cache
    # GLuCoSE has 32,768 pieces + 4 fairseq ids; a small corpus trains fewer pieces, so the embedding
    # matrix is padded to GLuCoSE's 32,772 rows.
    return build_offline_model(cache, vocab_size=32_000, embedding_rows=32_772, text=corpus, **GLUCOSE_SHAPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=None, help="only the first N articles (default: all 59)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--chunk-overlap", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as scratch:
        docs = Path(scratch) / "docs"
        chars = write_articles(JSQUAD, docs, args.articles)
        corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(docs.iterdir()))
        model = glucose_sized_model(args.cache, corpus)

        started = time.perf_counter()
        embedder = Embedder(str(model), device="cpu", batch_size=args.batch_size, precision=args.precision)
        embedder.load()
        load_seconds = time.perf_counter() - started
        parameters = sum(p.numel() for p in embedder.model.parameters())
        store = ChromaStore.persistent(Path(scratch) / "data")
        indexer = Indexer(embedder, store, args.chunk_tokens, args.chunk_overlap)

        started = time.perf_counter()
        reports = indexer.ingest_paths([docs])
        first = time.perf_counter() - started
        stats = embedder.stats
        tokens = sum(r.tokens for r in reports)
        chunks = sum(r.chunks for r in reports)

        started = time.perf_counter()
        again = indexer.ingest_paths([docs])
        second = time.perf_counter() - started

    failed = [r for r in reports if r.status != "added"]
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"model: GLuCoSE-shaped, {parameters / 1e6:.0f}M parameters, random weights; loaded in {load_seconds:.1f} s")
    print(f"corpus: {len(reports)} JSQuAD articles, {chars:,} characters, {chunks:,} chunks, {tokens:,} tokens")
    print(f"chunking: {args.chunk_tokens} tokens, overlap {args.chunk_overlap}; batch size {args.batch_size}")
    print(f"precision: {embedder.precision} ({embedder.precision_reason})")
    print(f"ingest end to end: {first:.1f} s = {tokens / first:,.0f} tokens/s, {chunks / first:.1f} chunks/s")
    print(
        f"embedding alone: {stats.seconds:.1f} s = {stats.tokens / stats.seconds:,.0f} tokens/s "
        f"({stats.texts:,} texts embedded; {stats.seconds / first:.0%} of the ingest)"
    )
    print(
        f"re-ingest unchanged: {second:.2f} s = {second / first:.1%} of the first ingest, "
        f"statuses {sorted({r.status for r in again})}"
    )
    if failed:
        print(f"not added: {[(r.source, r.status, r.message) for r in failed]}")


if __name__ == "__main__":
    main()
