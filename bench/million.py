"""A million passages on one machine: fill a data directory, build its keyword index, measure serving it.

    .venv/bin/python bench/million.py fill --data /work/million/data --size 1000000
    .venv/bin/python bench/million.py keyword --data /work/million/data
    .venv/bin/python bench/million.py measure --data /work/million/data [--questions 200]

``fill`` writes copies of the JSQuAD chunks with nudged vectors into the default collection of a data
directory through the store's own ``replace`` (``search_latency.fill``: documents of 200 chunks, each
copy's sentences with its base chunk's pooled vectors). It can be stopped (``touch DATA/../STOP``, or a
kill between documents: each ``replace`` is atomic) and started again; it goes on where the store ends,
logging each 10,000 chunks with the time taken.

``keyword`` brings the collection's keyword index (``DATA/keyword/documents.npz``) up to date by the
index's own ``sync``, reading every chunk from the store; the analyser is Sudachi, run once for each
distinct base chunk and once for each copy's own words (a copy is its base chunk plus ``（第N版・部署）``,
words Sudachi cuts apart from the rest), so the index holds what Sudachi gives each copy's text.

``measure`` serves the directory as a person meets it, with the product's own code: the time until a
freshly started process answers its first search (the API: ``python -m pipelines serve``, timed to the
first ``/v1`` search; the page: a process that builds the page's ``Library`` and searches), hybrid
search with best sentences (k 5) p50/p95 over JSQuAD questions in the API process, and the resident
memory (VmRSS and RssAnon) of each serving process after its searches; and the keyword index's and the
store's size on disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from bench.search_latency import base_chunks, fill  # noqa: E402
from pipelines.model.embedder import Embedder  # noqa: E402
from pipelines.store.chroma import ChromaStore  # noqa: E402
from pipelines.store.sentences import FILE_NAME, SentenceVectors  # noqa: E402


def model(cache: Path) -> Embedder:
    """The GLuCoSE-shaped random-weight model of the other benches, loaded (precision verdicts kept in ``cache``)."""
    corpus = "\n".join(text for _, text in read_articles(JSQUAD, None))
    embedder = Embedder(str(glucose_sized_model(cache / "glucose-sized-model", corpus)), batch_size=16, cache_dir=cache / "verdicts")
    embedder.load()
    return embedder


def disk_mib(path: Path) -> float:
    """Bytes under ``path`` (a file or a folder), in MiB."""
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def rss_mib(pid: int | str = "self") -> tuple[float, float]:
    """VmRSS and RssAnon of a process, in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", float("nan")), found.get("RssAnon", float("nan"))


def do_fill(args: argparse.Namespace) -> None:
    embedder = model(args.cache)
    started = time.perf_counter()
    base, pooled = base_chunks(embedder, read_articles(JSQUAD, None), args.cache / "search-latency-base.npz")
    print(f"base: {len(base)} chunks in {time.perf_counter() - started:.0f} s", flush=True)
    store = ChromaStore.persistent(args.data)
    sentences = SentenceVectors(args.data / FILE_NAME)
    start = store.count()
    start -= start % 200
    print(f"store holds {start:,} chunks; filling to {args.size:,}", flush=True)
    began = last = time.perf_counter()
    mark = start
    stop = args.data.parent / "STOP"

    def progress(written: int) -> bool:
        nonlocal last, mark
        if written - mark >= args.every or written >= args.size:
            now = time.perf_counter()
            rss, anon = rss_mib()
            print(
                f"{time.strftime('%H:%M:%S')} {written:,} chunks; {now - began:,.0f} s this run, the last "
                f"{written - mark:,} in {now - last:.0f} s; RSS {rss:,.0f} MiB (anon {anon:,.0f}); "
                f"chroma.sqlite3 {disk_mib(args.data / 'chroma.sqlite3'):,.0f} MiB; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            last, mark = now, written
        return not stop.exists()

    written = fill(store, base, args.size, embedder, pooled, sentences, start=start, progress=progress)
    store.close()
    print(f"filled: {written:,} chunks, {time.perf_counter() - began:,.0f} s this run", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["fill", "keyword", "measure"])
    parser.add_argument("--data", type=Path, default=Path("/work/million/data"))
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    if args.step == "fill":
        do_fill(args)


if __name__ == "__main__":
    main()
