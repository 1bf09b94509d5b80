"""Search latency and memory at 10,000 and 100,000 chunks, for each retrieval mode, model loaded.

    .venv/bin/python bench/search_latency.py [--sizes 10000 100000] [--questions 200]

Embedding 100,000 chunks with a GLuCoSE-sized model takes hours on this machine, and latency does not
depend on what the vectors mean, so the store is filled like this: the JSQuAD articles are chunked by
the product's chunker (128/32 tokens) and embedded once by the GLuCoSE-shaped random-weight model of
``bench/ingest_speed.py``; then copies of those chunks, each copy with its own words (a numbered
edition and department) and its vector slightly perturbed, are written as documents of 20 chunks
through the store's own ``replace``, and the keyword index is built by its own ``sync`` (real
Sudachi analysis of every chunk). Questions are JSQuAD questions, embedded at search time by the same
model: a search's latency includes embedding the question, as a person's does.

Prints, per size: the time to fill, the process's resident memory, and per mode the median and 95th
percentile (and the median of what is left after embedding the question) of ``Searcher.search(question, k=5)`` over the questions, after a warm-up, each question
asked for the first time (the searcher keeps question vectors; a repeated question skips embedding).

Then, in hybrid mode, a search with each hit's best sentence as the page, ``search --json`` and the
API give it (``search`` + ``best_sentences``): from the sentences' vectors pooled at ingest (kept in
a ``SentenceVectors`` file: each copy's sentences with its base chunk's pooled vectors), and, for
``--alone`` questions, each hit's sentences embedded alone (the way before, and what a store built
before it gets the first time a hit is shown); with the ratio of the two, from the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from ingest.chunking import chunk_text, sentence_spans  # noqa: E402
from ingest.normalize import join_pages  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.choices import MODES  # noqa: E402
from pipelines.model.embedder import Embedder  # noqa: E402
from pipelines.search.retrieval import Searcher  # noqa: E402
from pipelines.store.chroma import ChromaStore  # noqa: E402
from pipelines.store.indexing import text_hash  # noqa: E402
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer  # noqa: E402
from pipelines.store.records import StoredDocument  # noqa: E402
from pipelines.store.sentences import Sentences, SentenceVectors  # noqa: E402
from testkit.records import chunk_record  # noqa: E402

DOCUMENT_CHUNKS = 200  # a 30-page PDF's worth; 500 documents at 100,000 chunks
DEPARTMENTS = ["総務部", "人事部", "経理部", "営業部", "開発部", "法務部", "広報部", "品質保証部"]


def resident_mib(field: str = "VmRSS") -> float:
    """The process's resident memory (VmRSS), or its anonymous part (RssAnon: what is not pages of files
    such as the model's weights file, which the kernel can drop and read again), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(
    store: ChromaStore,
    base: list[tuple[str, np.ndarray]],
    size: int,
    embedder: Embedder,
    pooled: list[np.ndarray | None] | None = None,
    sentences: SentenceVectors | None = None,
    start: int = 0,
    progress: Callable[[int], bool] | None = None,
    document_chunks: int = DOCUMENT_CHUNKS,
    number: int | None = None,
) -> int:
    """Write chunks ``start`` to ``size``: copies of the base chunks with their own words and nudged vectors;
    with ``sentences``, each copy's sentences with its base chunk's ``pooled`` vectors. After each
    document ``progress(written)`` is called, and the fill stops early when it returns False; returns
    how many chunks the store then holds. Documents hold ``document_chunks`` chunks each and are
    numbered from ``number`` (by default, as if every document before ``start`` held as many)."""
    store.writer.bind_model(embedder.model_name, embedder.dimension, embedder.fingerprint())
    written = start
    number = start // document_chunks if number is None else number
    rng = np.random.default_rng(number)
    while written < size:
        count = min(document_chunks, size - written)
        source = f"資料{number:06d}.txt"
        version = f"{number:032x}-bench"
        records = []
        rows: dict[str, Sentences] = {}
        for i in range(count):
            text, vector = base[(written + i) % len(base)]
            copy = (written + i) // len(base)
            text = f"{text}（第{copy}版・{DEPARTMENTS[copy % len(DEPARTMENTS)]}）"
            found = pooled[(written + i) % len(base)] if pooled is not None else None
            spans = tuple(sentence_spans(text))
            if (
                found is not None and len(spans) == len(found) + 1
            ):  # the copy's words may end as a sentence of their own
                found = np.vstack([found, found[-1:]])
            if found is not None and len(found) == len(spans):
                rows[text_hash(text)] = Sentences(spans, found)
            nudged = vector + rng.normal(0, 0.02, vector.shape).astype(np.float32)
            nudged /= np.linalg.norm(nudged)
            records.append(
                chunk_record(
                    source,
                    version,
                    i,
                    text,
                    nudged,
                    tokens=0,
                    text_hash=text_hash(text),
                    embedding_model=embedder.model_name,
                )
            )
        document = StoredDocument(
            source, version, version, 0, count, 0, "2026-11-26T00:00:00+00:00", embedder.model_name
        )
        if sentences is not None:
            sentences.put(embedder.model_name, rows)
        store.replace(document, records)
        written += count
        number += 1
        if progress is not None and not progress(written):
            break
    return written


def base_chunks(
    embedder: Embedder, articles: list[tuple[str, str]], saved: Path
) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray | None]]:
    """The JSQuAD articles cut by the product's chunker (128/32 tokens), with their vectors and their
    sentences' pooled vectors, kept in ``saved`` between runs."""
    chunks = [
        c.text for _, text in articles for c in chunk_text(join_pages(((None, text),)), embedder.count_tokens, 128, 32)
    ]
    spans = [sentence_spans(c) for c in chunks]
    digest = text_hash("\n".join(chunks) + "+sentences")
    if saved.exists() and str(np.load(saved)["digest"]) == digest:
        kept = np.load(saved)
        vectors, flat, counts = kept["vectors"], kept["sentences"], kept["counts"]
        pooled: list[np.ndarray | None] = []
        at = 0
        for n in counts:
            pooled.append(flat[at : at + n] if n >= 0 else None)
            at += max(int(n), 0)
    else:
        vectors, pooled = embedder.embed_passages(chunks, spans)
        counts = np.array([len(p) if p is not None else -1 for p in pooled])
        flat = np.concatenate([p for p in pooled if p is not None])
        np.savez(saved, digest=np.array(digest), vectors=vectors, sentences=flat, counts=counts)
    return list(zip(chunks, vectors, strict=True)), pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="modes timed without sentences")
    parser.add_argument(
        "--alone", type=int, default=30, help="questions timed with sentences embedded alone (the way before)"
    )
    parser.add_argument("--check", type=int, nargs="*", default=[2], help="RAG_SENTENCE_CHECK values also timed")
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()

    articles = read_articles(JSQUAD, None)
    corpus = "\n".join(text for _, text in articles)
    # the precision verdict and int8 export kept between runs, as the product keeps them in its data directory
    verdicts = args.cache.parent / "verdicts"
    embedder = Embedder(str(glucose_sized_model(args.cache, corpus)), batch_size=16, cache_dir=verdicts)
    embedder.load()
    print(
        f"model: GLuCoSE-shaped, random weights; passages {embedder.precision.passages} ({embedder.precision.passages_reason}); "
        f"questions {embedder.precision.questions} ({embedder.precision.questions_reason})"
    )
    started = time.perf_counter()
    base, pooled = base_chunks(embedder, articles, args.cache.parent / "search-latency-base.npz")
    print(
        f"base: {len(base)} distinct chunks chunked and embedded (or read back) in {time.perf_counter() - started:.0f} s"
    )
    _, questions = evaluation.load_qa(JSQUAD)
    asked = [q.question for q in questions[:: max(1, len(questions) // args.questions)]][: args.questions]

    print(
        "\n| chunks | mode | median ms | p95 ms | median ms without embedding the question "
        "| resident MiB (of it anonymous) | fill s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="search-latency-") as scratch:
            store = ChromaStore.persistent(Path(scratch))
            sentences = SentenceVectors(Path(scratch) / "sentences.sqlite3")
            began = time.perf_counter()
            fill(store, base, size, embedder, pooled, sentences)
            keyword = KeywordIndex(SudachiAnalyzer(), Path(scratch) / "keyword.npz")
            keyword.sync(store.reader)
            filled = time.perf_counter() - began
            warm = Searcher(embedder, store, keyword)
            for question in asked[-10:]:  # warm-up: the HNSW index in memory, the BM25 matrix
                warm.search(question, args.k, mode="hybrid")
            for mode in args.modes:
                # a fresh searcher per mode: every question is embedded, none comes from the question cache
                searcher = Searcher(embedder, store, keyword)
                times, rest = [], []
                for question in asked:
                    t0 = time.perf_counter()
                    embedding = embedder.stats.seconds
                    searcher.search(question, args.k, mode=mode)
                    elapsed = time.perf_counter() - t0
                    times.append(elapsed * 1000)
                    rest.append((elapsed - (embedder.stats.seconds - embedding)) * 1000)
                p95 = float(np.percentile(times, 95))
                print(
                    f"| {size:,} | {mode} | {statistics.median(times):.1f} | {p95:.1f} | "
                    f"{statistics.median(rest):.1f} | {resident_mib():,.0f} ({resident_mib('RssAnon'):,.0f}) | "
                    f"{filled:.0f} |",
                    flush=True,
                )
            with_best = best_sentence_latency(embedder, store, keyword, sentences, asked, args.k)
            alone = best_sentence_latency(embedder, store, keyword, None, asked[: args.alone], args.k)
            checked = [
                (
                    f"pooled, the first {n} embedded alone",
                    best_sentence_latency(embedder, store, keyword, sentences, asked[: args.alone], args.k, n),
                )
                for n in args.check
            ]
            for label, (times, best) in (("pooled at ingest", with_best), ("each embedded alone", alone), *checked):
                print(
                    f"| {size:,} | hybrid + best sentences, {label} ({len(times)} questions) | "
                    f"{statistics.median(times):.1f} | {float(np.percentile(times, 95)):.1f} | "
                    f"best sentences alone: median {statistics.median(best):.1f} | {resident_mib():,.0f} | |",
                    flush=True,
                )
            print(
                f"\nsentences file: {sentences.size() / 2**20:.1f} MiB for {size:,} chunks "
                f"({sentences.size() / size:,.0f} bytes a chunk); search with best sentences, "
                f"alone ÷ pooled: {statistics.median(alone[0]) / statistics.median(with_best[0]):.1f}×"
            )
            store.close()
    print(
        f"\nload average at the end: {os.getloadavg()[0]:.2f} (2 cores; other work on the machine slows every figure)"
    )


def best_sentence_latency(
    embedder: Embedder,
    store: ChromaStore,
    keyword: KeywordIndex,
    sentences: SentenceVectors | None,
    asked: list[str],
    k: int,
    check: int = 0,
) -> tuple[list[float], list[float]]:
    """Milliseconds of a hybrid search with its hits' best sentences, and of the best sentences alone, per question."""
    searcher = Searcher(embedder, store, keyword, sentences=sentences, sentence_check=check)
    times, best = [], []
    for question in asked:
        t0 = time.perf_counter()
        hits = searcher.search(question, k, mode="hybrid")
        t1 = time.perf_counter()
        searcher.best_sentences(question, hits)
        t2 = time.perf_counter()
        times.append((t2 - t0) * 1000)
        best.append((t2 - t1) * 1000)
    return times, best


if __name__ == "__main__":
    main()
