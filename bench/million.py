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
store's size on disk. Then ``--clients`` clients ask the API at once (5 questions each, none asked
before): searches a second and each one's wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from bench.search_latency import base_chunks, fill  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.model.embedder import Embedder  # noqa: E402
from pipelines.store.chroma import ChromaStore  # noqa: E402
from pipelines.store.collections import keyword_path  # noqa: E402
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer  # noqa: E402
from pipelines.store.sentences import FILE_NAME, SentenceVectors  # noqa: E402

# a copy's own words, after its base chunk's text (search_latency.fill)
COPY = re.compile(r"(.*)(（第\d+版・[^（）]+）)", re.DOTALL)


def model(cache: Path) -> Embedder:
    """The GLuCoSE-shaped random-weight model of the other benches, loaded (precision verdicts kept in ``cache``)."""
    corpus = "\n".join(text for _, text in read_articles(JSQUAD, None))
    embedder = Embedder(
        str(glucose_sized_model(cache / "glucose-sized-model", corpus)), batch_size=16, cache_dir=cache / "verdicts"
    )
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
    documents = len(store.documents())
    print(f"store holds {start:,} chunks in {documents:,} documents; filling to {args.size:,}", flush=True)
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
                f"on disk {disk_mib(args.data):,.0f} MiB; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            last, mark = now, written
        return not stop.exists()

    written = fill(
        store, base, args.size, embedder, pooled, sentences, start, progress, args.document_chunks, documents
    )
    store.close()
    print(f"filled: {written:,} chunks, {time.perf_counter() - began:,.0f} s this run", flush=True)


class CopyAnalyzer:
    """Sudachi, run once per distinct base chunk and once per copy's own words; the words of the whole
    text where the two parts would not give them (checked on each base chunk's first copy)."""

    def __init__(self) -> None:
        self.sudachi = SudachiAnalyzer()
        self.name = self.sudachi.name
        self._parts: dict[str, list[str] | None] = {}  # None: this base chunk's copies analysed whole
        self.whole = 0

    def words(self, text: str) -> list[str]:
        found = COPY.fullmatch(text)
        if found is None:
            return self.sudachi.words(text)
        base, own = found.groups()
        if base not in self._parts:
            parts = self.sudachi.words(base) + self.sudachi.words(own)
            self._parts[base] = (
                parts[: len(parts) - len(self.sudachi.words(own))] if parts == self.sudachi.words(text) else None
            )
        kept = self._parts[base]
        if kept is None:
            self.whole += 1
            return self.sudachi.words(text)
        return kept + self._own(own)

    def _own(self, own: str) -> list[str]:
        if own not in self._parts:
            self._parts[own] = self.sudachi.words(own)
        return list(self._parts[own] or [])


def do_keyword(args: argparse.Namespace) -> None:
    path = keyword_path(args.data / "keyword", "documents")
    analyzer = CopyAnalyzer()
    began = time.perf_counter()
    index = KeywordIndex(analyzer, path)
    opened = time.perf_counter() - began
    store = ChromaStore.persistent(args.data)
    changed = index.sync(store.reader)
    store.close()
    print(
        f"keyword index: opened in {opened:.1f} s, synced ({changed}) in {time.perf_counter() - began:,.0f} s: "
        f"{len(index):,} chunks, {disk_mib(path.parent):,.0f} MiB on disk; copies analysed whole: {analyzer.whole:,}",
        flush=True,
    )


def percentiles(times: list[float]) -> str:
    return f"p50 {statistics.median(times):.1f} ms, p95 {float(np.percentile(times, 95)):.1f} ms"


def questions(count: int) -> list[str]:
    _, qa = evaluation.load_qa(JSQUAD)
    return [q.question for q in qa[:: max(1, len(qa) // count)]][:count]


def serving_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAG_DATA_DIR": str(args.data),
        "RAG_EMBEDDING_MODEL": str(args.cache / "glucose-sized-model"),
        "RAG_CACHE_DIR": str(args.cache / "verdicts"),
        "RAG_BATCH_SIZE": "16",
    }


def do_page(args: argparse.Namespace) -> None:
    """A page's server process, as ``app.open_service`` sets it up (``Library``, ``Service``), its searches timed; JSON on stdout."""
    from pipelines.service.library import Library
    from pipelines.service.results import Caller, Question
    from pipelines.service.service import Service
    from pipelines.settings import Settings

    asked = questions(args.questions + 1)
    service = Service(Library(Settings.from_env()))
    caller = Caller("page", "bench")
    service.search(caller, "default", Question(asked[0], k=5, mode="hybrid"))
    first = time.time()  # the wall clock: the parent compares it with its own
    times = []
    for question in asked[1:]:
        t0 = time.perf_counter()
        service.search(caller, "default", Question(question, k=5, mode="hybrid"))
        times.append((time.perf_counter() - t0) * 1000)
    rss, anon = rss_mib()
    print(json.dumps({"first": first, "times": times, "rss": rss, "anon": anon}))


async def crowd(url: str, asked: list[list[str]]) -> tuple[list[float], float, int]:
    """Clients asking at once, each on its own connection: each search's milliseconds, the seconds for
    all, and how many failed."""
    import httpx

    times: list[float] = []
    failed = 0

    async def client(questions: list[str]) -> None:
        nonlocal failed
        async with httpx.AsyncClient(timeout=120) as http:
            for question in questions:
                t0 = time.perf_counter()
                answer = await http.post(url, json={"question": question, "k": 5, "mode": "hybrid"})
                failed += answer.status_code != 200
                times.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client(questions) for questions in asked))
    return times, time.perf_counter() - started, failed


def do_measure(args: argparse.Namespace) -> None:
    import httpx

    env = serving_env(args)
    asked = questions(args.questions + 1)
    store = ChromaStore.persistent(args.data)
    chunks = store.count()
    store.close()
    print(f"{chunks:,} chunks in {args.data}; load average {os.getloadavg()[0]:.2f} (2 shared cores)", flush=True)

    # the API: from the command to its first answered search
    port = 8765
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(args.data.parent / "serve.log", "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}/v1/collections/default/search"
    try:
        with httpx.Client(timeout=120) as http:
            while True:
                try:
                    answer = http.post(url, json={"question": asked[0], "k": 5, "mode": "hybrid"})
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            ready = time.perf_counter() - started
            times = []
            for question in asked[1:]:
                t0 = time.perf_counter()
                answer = http.post(url, json={"question": question, "k": 5, "mode": "hybrid"})
                answer.raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            hits = answer.json()["hits"]
        rss, anon = rss_mib(server.pid)
        more = questions(args.questions + 1 + args.clients * 5)[args.questions + 1 :]
        together, took, failed = asyncio.run(crowd(url, [more[i :: args.clients] for i in range(args.clients)]))
    finally:
        server.terminate()
        server.wait()
    print(
        f"API (python -m pipelines serve): first search answered {ready:.1f} s after the start; "
        f"hybrid k 5 with best sentences over HTTP, {len(times)} questions: {percentiles(times)}; "
        f"VmRSS {rss:,.0f} MiB, RssAnon {anon:,.0f} MiB; best sentence of the last hit: {bool(hits and hits[0].get('best_sentence'))}",
        flush=True,
    )
    print(
        f"API, {args.clients} clients at once, {len(together)} searches (each client's one after another): "
        f"{len(together) / took:.1f} searches/s, {percentiles(together)} as each client waited; errors {failed}",
        flush=True,
    )

    # the page: a process that sets up the service as the page does and searches
    started = time.time()
    page = subprocess.run(
        [
            sys.executable,
            __file__,
            "page",
            "--data",
            str(args.data),
            "--cache",
            str(args.cache),
            "--questions",
            str(args.questions),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(page.stdout.strip().splitlines()[-1])
    print(
        f"page (Library + Service, as app.open_service): first search answered "
        f"{found['first'] - started:.1f} s after the start (process start to answer); hybrid k 5 with best sentences, "
        f"{len(found['times'])} questions: {percentiles(found['times'])}; VmRSS {found['rss']:,.0f} MiB, "
        f"RssAnon {found['anon']:,.0f} MiB",
        flush=True,
    )
    print(
        f"on disk: keyword index {disk_mib(args.data / 'keyword'):,.0f} MiB, Chroma {disk_mib(args.data / 'chroma'):,.0f} MiB, "
        f"sentences {disk_mib(args.data / FILE_NAME):,.0f} MiB; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["fill", "keyword", "measure", "page"])
    parser.add_argument("--data", type=Path, default=Path("/work/million/data"))
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--document-chunks", type=int, default=200, help="chunks a document (fewer, larger writes)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20, help="API clients asking at once, 5 questions each")
    args = parser.parse_args()
    {"fill": do_fill, "keyword": do_keyword, "measure": do_measure, "page": do_page}[args.step](args)


if __name__ == "__main__":
    main()
