"""Load on the HTTP API: 20 concurrent clients × 50 searches on a 10,000-chunk collection, on loopback only.

    .venv/bin/python bench/api_load.py [--clients 20] [--searches 50] [--chunks 10000] [--mode hybrid]

The collection is filled as ``bench/search_latency.py`` fills its store: the JSQuAD articles chunked by
the product's chunker and embedded once by the GLuCoSE-shaped random-weight model (the same
computation as GLuCoSE-base-ja, meaningless vectors), copied with their own words and nudged vectors
into documents of 200 chunks. Then the real command, ``python -m pipelines serve``, starts on
127.0.0.1 in a child process on that data directory with that model (precision ``auto``, as a
deployment runs), and the clients, each its own HTTP connection in one asyncio loop, send
``POST /v1/collections/ベンチ/search`` with distinct JSQuAD questions (none repeats, so every
search embeds its question), ``k`` 5, each hit's best sentence found as ``search --json`` finds it
(from the sentences' vectors pooled at ingest, kept in the data directory's sentences file as the
product's ingest keeps them; ``--sentences-alone`` leaves that file empty, so every hit's sentences are
embedded alone the first time it is shown, as for a store built before; ``--no-best-sentences`` asks
without). A warm-up of 10 searches (the keyword index built, the HNSW
index in memory) is not counted; then one client alone asks 20 questions, for the latency of a search
without others waiting.

Prints: throughput (searches per second over the whole run), latency p50/p95/max as each client saw
it (queueing included), errors (any status but 200, or no answer within 120 s), the server's CPU
count and load. Bounded: at most clients × searches requests, each with a timeout; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from bench.search_latency import base_chunks, fill  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.model.embedder import Embedder  # noqa: E402
from pipelines.service.compose import make_collections, make_sentences  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from testkit.servers import free_port, wait_for  # noqa: E402

COLLECTION = "ベンチ"
KEY = "bench-key-0123456789abcdef"
TIMEOUT = 120.0


async def client(
    url: str, questions: list[str], body: dict[str, object], latencies: list[float], errors: list[str]
) -> None:
    """One client: its searches one after another on its own connection."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=TIMEOUT) as http:
        for question in questions:
            started = time.perf_counter()
            try:
                response = await http.post(f"/v1/collections/{COLLECTION}/search", json={"question": question, **body})
                if response.status_code != 200 or not response.json()["hits"]:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
            latencies.append((time.perf_counter() - started) * 1000)


async def load(url: str, asked: list[list[str]], body: dict[str, object]) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    await asyncio.gather(*(client(url, questions, body, latencies, errors) for questions in asked))
    return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--searches", type=int, default=50, help="per client")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument(
        "--no-best-sentences",
        dest="best",
        action="store_false",
        help='"best_sentences": false (no sentence embeddings)',
    )
    parser.add_argument(
        "--sentences-alone", action="store_true", help="no pooled sentences kept: each hit's embedded alone when shown"
    )
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    body: dict[str, object] = {"k": args.k, "mode": args.mode, "best_sentences": args.best}

    articles = read_articles(JSQUAD, None)
    model = glucose_sized_model(args.cache, "\n".join(text for _, text in articles))
    verdicts = args.cache.parent / "verdicts"
    _, questions = evaluation.load_qa(JSQUAD)
    wanted = args.clients * args.searches + 30
    if len(questions) < wanted:
        raise SystemExit(f"JSQuAD has {len(questions)} questions; {wanted} distinct ones are needed")
    texts = [q.question for q in questions[:wanted]]
    warm, alone, asked = texts[:10], texts[10:30], texts[30:]

    with tempfile.TemporaryDirectory(prefix="api-load-") as scratch:
        data = Path(scratch)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "RAG_DATA_DIR": str(data),
            "RAG_EMBEDDING_MODEL": str(model),
            "RAG_CACHE_DIR": str(verdicts),
            "RAG_API_KEY": KEY,
        }
        settings = Settings.from_env(env)
        embedder = Embedder(str(model), batch_size=16, cache_dir=verdicts)
        embedder.load()
        began = time.perf_counter()
        collections = make_collections(settings)
        collections.create(COLLECTION)
        base, pooled = base_chunks(embedder, articles, args.cache.parent / "search-latency-base.npz")
        store = collections.open(COLLECTION).store
        sentences = None if args.sentences_alone else make_sentences(settings)
        fill(store, base, args.chunks, embedder, pooled, sentences)
        store.close()
        collections.root.close()
        print(f"filled {args.chunks:,} chunks in {time.perf_counter() - began:.0f} s", flush=True)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = data / "server.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [sys.executable, "-m", "pipelines", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for(f"{url}/v1/health", server, seconds=600)
                health = httpx.get(f"{url}/v1/health", headers={"Authorization": f"Bearer {KEY}"}).json()
                print(f"server ready: precision {health['precision']['passages']} / {health['precision']['questions']}")
                began = time.perf_counter()
                _, warm_errors, _ = asyncio.run(load(url, [warm], body))
                print(f"warm-up: 10 searches in {time.perf_counter() - began:.1f} s, errors {len(warm_errors)}")
                single, _, _ = asyncio.run(load(url, [alone], body))
                print(
                    f"one client alone, 20 searches: p50 {statistics.median(single):.0f} ms, max {max(single):.0f} ms"
                )
                per_client = [asked[i :: args.clients][: args.searches] for i in range(args.clients)]
                latencies, errors, seconds = asyncio.run(load(url, per_client, body))
            finally:
                server.terminate()
                server.wait(30)
        print(
            f"\n{args.clients} clients × {args.searches} searches ({args.mode}, k {args.k}, best sentences "
            f"{'on' if args.best else 'off'}) on {args.chunks:,} chunks, "
            f"loopback, server `python -m pipelines serve` (GLuCoSE-shaped random-weight model)"
        )
        print(f"searches: {len(latencies)}, errors: {len(errors)}")
        print(f"throughput: {len(latencies) / seconds:.1f} searches/s over {seconds:.1f} s")
        print(
            f"latency ms: p50 {statistics.median(latencies):.0f}, p95 {float(np.percentile(latencies, 95)):.0f}, "
            f"max {max(latencies):.0f}"
        )
        print(f"CPUs: {os.cpu_count()}, load average at the end: {os.getloadavg()[0]:.2f}")
        for error in errors[:5]:
            print("error:", error)


if __name__ == "__main__":
    main()
