"""The keyword index alone at a million chunks: its form before (one file, every chunk's word ids) and now.

    .venv/bin/python bench/keyword_scale.py [--rows 1000000] [--before OLD_keyword.py]

The chunks are the copies ``bench/million.py fill`` writes (JSQuAD chunks with a numbered edition and
department, documents of 200 chunks), analysed by ``million.CopyAnalyzer`` (Sudachi once per base
chunk and per copy's own words), added to the index without a store. For each form: the time to add
them and save, the file's size, and in a fresh process the time to open it, the first keyword search,
the median and 95th percentile of keyword searches after it and the resident memory; then a document of
200 chunks replaced and saved (what each ingested file costs), and the search after it.

``--before`` is the module of the form before (``git show COMMIT:pipelines/store/keyword.py > FILE``);
without it only the current form is measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.million import CopyAnalyzer, disk_mib, questions, rss_mib  # noqa: E402
from bench.search_latency import DEPARTMENTS, DOCUMENT_CHUNKS  # noqa: E402


def form(module_file: str) -> ModuleType:
    """The keyword module of one form: the current one (``""``) or a saved file of another."""
    if not module_file:
        from pipelines.store import keyword

        return keyword
    spec = importlib.util.spec_from_file_location("keyword_before", module_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def documents(base: list[str], rows: int, first: int = 0) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """``(source, version, chunks)`` of the copies ``search_latency.fill`` writes."""
    found = []
    for number, start in enumerate(range(first, first + rows, DOCUMENT_CHUNKS), first // DOCUMENT_CHUNKS):
        version = f"{number:032x}-bench"
        chunks = []
        for i in range(min(DOCUMENT_CHUNKS, first + rows - start)):
            copy = (start + i) // len(base)
            text = f"{base[(start + i) % len(base)]}（第{copy}版・{DEPARTMENTS[copy % len(DEPARTMENTS)]}）"
            chunks.append((f"{version}-{i:05d}", text))
        found.append((f"資料{number:06d}.txt", version, chunks))
    return found


def base_texts() -> list[str]:
    """The JSQuAD chunks as ``million.py fill`` cut them (kept by it beside the model)."""
    from bench.million import model
    from bench.search_latency import base_chunks

    cache = Path(os.environ.get("MILLION_CACHE", REPO / "bench-out"))
    from bench.ingest_speed import JSQUAD, read_articles

    base, _ = base_chunks(model(cache), read_articles(JSQUAD, None), cache / "search-latency-base.npz")
    return [text for text, _ in base]


def serve(args: argparse.Namespace) -> None:
    """In a fresh process: open the saved index, search, change one document; JSON on stdout."""
    keyword = form(args.before_module)
    started = time.perf_counter()
    index = keyword.KeywordIndex(CopyAnalyzer(), Path(args.path))
    opened = time.perf_counter() - started
    asked = questions(args.questions + 1)
    t0 = time.perf_counter()
    index.search(asked[0], 100)
    first = time.perf_counter() - t0
    times = []
    for question in asked[1:]:
        t0 = time.perf_counter()
        index.search(question, 100)
        times.append((time.perf_counter() - t0) * 1000)
    rss, anon = rss_mib()
    base = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    (source, version, chunks), *_ = documents(base, DOCUMENT_CHUNKS, first=DOCUMENT_CHUNKS * 7)
    t0 = time.perf_counter()
    index.add_document(source, version + "-2", [(cid + "-2", text + "改") for cid, text in chunks])
    index.save()
    saved = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.search(asked[1], 100)
    after = time.perf_counter() - t0
    print(
        json.dumps(
            {"opened": opened, "first": first, "times": times, "rss": rss, "anon": anon, "saved": saved, "after": after}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--before", default="", help="the keyword module of the form before, as a file")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--serve", dest="path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--before-module", default="", help=argparse.SUPPRESS)
    parser.add_argument("--texts", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        serve(args)
        return
    base = base_texts()
    docs = documents(base, args.rows)
    print(
        f"{args.rows:,} chunks in {len(docs):,} documents of {DOCUMENT_CHUNKS}; load average {os.getloadavg()[0]:.2f} (2 shared cores)"
    )
    print(
        "\n| form | add s | save s | on disk MiB | open s | first search s | search p50 / p95 ms | VmRSS (RssAnon) MiB | a document replaced and saved, s | the search after it, s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(dir=args.scratch, prefix="keyword-scale-") as scratch:
        texts = Path(scratch) / "base.json"
        texts.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
        for label, module in (("before (one file)", args.before), ("now (mapped base + delta)", "")):
            if label.startswith("before") and not module:
                continue
            keyword = form(module)
            folder = Path(scratch) / label.split()[0]
            folder.mkdir()
            path = folder / "documents.npz"
            index = keyword.KeywordIndex(CopyAnalyzer(), path)
            t0 = time.perf_counter()
            for source, version, chunks in docs:
                index.add_document(source, version, chunks)
            added = time.perf_counter() - t0
            t0 = time.perf_counter()
            index.save()
            saved = time.perf_counter() - t0
            del index
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--serve",
                    str(path),
                    "--before-module",
                    module,
                    "--texts",
                    str(texts),
                    "--questions",
                    str(args.questions),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            found = json.loads(child.stdout.strip().splitlines()[-1])
            times = found["times"]
            print(
                f"| {label} | {added:.0f} | {saved:.1f} | {disk_mib(folder):,.0f} | {found['opened']:.2f} | {found['first']:.2f} | "
                f"{statistics.median(times):.1f} / {float(np.percentile(times, 95)):.1f} | {found['rss']:,.0f} ({found['anon']:,.0f}) | "
                f"{found['saved']:.2f} | {found['after']:.2f} |",
                flush=True,
            )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (2 shared cores)")


if __name__ == "__main__":
    main()
