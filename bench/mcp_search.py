"""A search through each face an assistant or a system uses: MCP over stdio, MCP over Streamable HTTP, the HTTP API.

    .venv/bin/python bench/mcp_search.py [--rounds 30] [--documents 40]

One data directory, filled once with ``--documents`` Japanese texts of a few paragraphs each (about
ten chunks each) and the small offline model of GLuCoSE's architecture in float32 (the real model
cannot be downloaded here: the figures are the faces' and the service's own costs around a small
model's embedding of the question, not GLuCoSE's). Then the real processes on it: ``python -m
pipelines mcp`` (driven by the SDK's client over its stdin and stdout) and ``python -m pipelines
serve`` (its /mcp through the SDK's Streamable HTTP client, and ``POST /v1/collections/default/search``
through httpx), each asked the same question in turn, ``--rounds`` rounds of the three after a
warm-up of 3 rounds (the model loaded, the keyword index built). Every call is the same search (k 5,
hybrid, each hit's best sentence), so the differences are the transports' and the faces' (JSON-RPC,
the SDK's validation of arguments and results, sessions). Prints the median, p90 and minimum of each
in milliseconds, and checks that the three returned the same passages. Bounded: 3 × (rounds + 3)
searches on loopback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.service.library import Library
from pipelines.service.results import machine_caller
from pipelines.service.service import Service
from pipelines.settings import Settings
from testkit import mcp
from testkit.offline_model import build_offline_model

KEY = "bench-key-0123456789abcdef"
QUESTION = "有給休暇は入社後いつから取れますか"
WARM_UP = 3
PARAGRAPHS = [
    "社内規程によると、年次有給休暇は入社六か月後から取得できます。付与日数は勤続年数に応じて増えます。",
    "出張旅費は、出発の三日前までに申請書を上長に提出し、承認を受けてから手配してください。",
    "情報セキュリティ規程では、社外に持ち出すパソコンは必ずディスクを暗号化することと定めています。",
    "育児休業は子が一歳に達するまで取得でき、事情により最長二歳まで延長できます。",
    "経費精算は月末締めで、領収書の原本を添えて翌月五日までに経理部へ提出します。",
]


def fill(settings: Settings, documents: int) -> None:
    """``documents`` texts in the default collection, each the paragraphs in another order with its number."""
    service = Service(Library(settings))
    files = []
    for n in range(documents):
        turned = PARAGRAPHS[n % len(PARAGRAPHS) :] + PARAGRAPHS[: n % len(PARAGRAPHS)]
        text = "\n\n".join(f"第{n + 1}編 第{i + 1}条 {p}" for i, p in enumerate(turned * 2))
        files.append((f"規程{n + 1:03d}.txt", text.encode()))
    result = service.upload(machine_caller("cli"), "default", files)
    service.close()
    if result.error:
        raise SystemExit(result.error)


def sources(hits: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(hit["source"], hit["chunk_index"]) for hit in hits]


async def measure(stdio: Any, url: str, rounds: int) -> dict[str, tuple[list[float], list[tuple[str, int]]]]:
    """Each face asked in turn, round after round (so a busy moment of the machine falls on all three alike)."""
    async with (
        mcp.connect(stdio) as local,
        mcp.connect(f"{url}/mcp", KEY) as remote,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as api,
    ):

        async def tool(client: Any) -> list[dict[str, Any]]:
            found = mcp.structured(await client.call_tool("search", {"question": QUESTION, "k": 5}))
            return list(found["hits"])

        async def route() -> list[dict[str, Any]]:
            response = await api.post("/v1/collections/default/search", json={"question": QUESTION, "k": 5})
            response.raise_for_status()
            return list(response.json()["hits"])

        faces = {
            "MCP stdio": lambda: tool(local),
            "MCP Streamable HTTP": lambda: tool(remote),
            "HTTP API": route,
        }
        times: dict[str, list[float]] = {face: [] for face in faces}
        found: dict[str, list[tuple[str, int]]] = {}
        for n in range(WARM_UP + rounds):
            for face, search in faces.items():
                started = time.perf_counter()
                hits = await search()
                if n >= WARM_UP:
                    times[face].append(time.perf_counter() - started)
                found[face] = sources(hits)
        return {face: (times[face], found[face]) for face in faces}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--documents", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        env = {
            "RAG_EMBEDDING_MODEL": str(build_offline_model(root / "model")),
            "RAG_DATA_DIR": str(root / "data"),
            "RAG_API_KEY": KEY,
            "RAG_PRECISION": "float32",  # no precision calibration at the first start: the same model in every process
            "RAG_QUERY_LOG": os.environ.get("RAG_QUERY_LOG", "on"),
        }
        fill(Settings.from_env(env), args.documents)
        server = mcp.serve(env).start()
        try:
            results = anyio.run(measure, mcp.stdio(env), f"http://127.0.0.1:{server.port}", args.rounds)
        finally:
            server.stop()
    print(
        f"{args.rounds} searches each (k 5, hybrid, best sentences), {args.documents} documents, CPUs {os.cpu_count()}"
    )
    print("| face | median ms | p90 ms | min ms |")
    print("| --- | ---: | ---: | ---: |")
    for face, (times, _) in results.items():
        ms = sorted(t * 1000 for t in times)
        p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
        print(f"| {face} | {statistics.median(ms):.1f} | {p90:.1f} | {ms[0]:.1f} |")
    found = {face: hits for face, (_, hits) in results.items()}
    same = len({tuple(hits) for hits in found.values()}) == 1
    print("same passages on every face:", "yes" if same else f"NO: {found}")


if __name__ == "__main__":
    main()
