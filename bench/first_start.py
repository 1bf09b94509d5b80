"""A first start on a new machine against the next one: the same ingest, an empty per-machine cache, then a kept one.

    .venv/bin/python bench/first_start.py [--articles N] [--rounds R] [--without avx512]

The model, corpus and command are ``bench/ingest_speed.py``'s: the GLuCoSE-shaped random-weight
model, the first N JSQuAD validation articles as text files, ``python -m pipelines ingest DOCS --json``
with ``RAG_PRECISION=auto``, each run a whole process timed from outside. Each round, with a fresh
user cache directory (``XDG_CACHE_HOME``; ``RAG_CACHE_DIR`` unset, so the product's own default is
what is measured):

1. first start: the ingest into a fresh data directory with the cache empty. The product serves
   float32 at once and prepares the faster precision in the background; the process waits for that
   preparation at its end, if it is still running, so its time includes all of it;
2. the next start: a fresh process into another fresh data directory, the same cache;
3. what the second data directory cost: whether it exported again (the int8 export's file and the
   verdict are the same ones, untouched) and the precisions each run's documents recorded.

Prints both times, their difference against the goal (no more than 5 s), how contended the CPUs were
(Linux PSI), and a markdown table. ``--without avx512`` runs it as an AVX2-only CPU would
(``bench/cpu_mask.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import cpu_mask  # noqa: E402
from bench.ingest_speed import (  # noqa: E402
    JSQUAD,
    Timed,
    clean_environment,
    glucose_sized_model,
    product_ingest,
    write_articles,
)

GOAL_SECONDS = 5.0


def environment(model: Path, data: Path, xdg: Path, args: argparse.Namespace) -> dict[str, str]:
    """One product run: ``auto``, this data directory, this user cache directory (no ``RAG_CACHE_DIR``)."""
    return {
        **clean_environment(),
        "XDG_CACHE_HOME": str(xdg),
        "RAG_EMBEDDING_MODEL": str(model),
        "RAG_DATA_DIR": str(data),
        "RAG_PRECISION": "auto",
        "RAG_BATCH_SIZE": str(args.batch_size),
    }


def recorded(env: dict[str, str]) -> Counter[str]:
    """How many documents of the run's data directory recorded each precision (``documents --json``)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "documents", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return Counter(d.get("precision", "") for d in json.loads(done.stdout))


def kept_files(xdg: Path) -> dict[str, int]:
    """The cache's int8 exports and verdicts, each with its modification time (ns)."""
    return {
        str(p.relative_to(xdg)): p.stat().st_mtime_ns
        for pattern in ("*/*/model.int8.onnx", "*/*/verdict-*.json")
        for p in xdg.glob(pattern)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10, help="the first N articles (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each with an empty cache (default 1)")
    parser.add_argument("--without", choices=["avx512"], help="avx512: as a CPU with AVX2 and FMA only would")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    if args.without == "avx512":
        cpu_mask.run_masked()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    print(cpu_mask.describe())

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        docs = scratch / "docs"
        chars = write_articles(JSQUAD, docs, args.articles)
        corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(docs.iterdir()))
        model = glucose_sized_model(args.cache, corpus)
        print(f"corpus: {len(list(docs.iterdir()))} JSQuAD articles as text files, {chars:,} characters")
        firsts: list[Timed] = []
        nexts: list[Timed] = []
        for number in range(args.rounds):
            xdg = scratch / f"xdg-{number}"
            first_env = environment(model, scratch / f"first-{number}", xdg, args)
            first = product_ingest(docs, first_env, {"added", "duplicate"})
            after_first = kept_files(xdg)
            next_env = environment(model, scratch / f"next-{number}", xdg, args)
            again = product_ingest(docs, next_env, {"added", "duplicate"})
            after_next = kept_files(xdg)
            firsts.append(first)
            nexts.append(again)
            exports = [name for name in after_next if name.endswith(".onnx")]
            print(
                f"round {number + 1}: first start {first.seconds:.1f} s (load average {os.getloadavg()[0]:.2f}, "
                f"CPU wait {first.stalled:.0%}), next start {again.seconds:.1f} s (CPU wait {again.stalled:.0%}), "
                f"difference {first.seconds - again.seconds:+.1f} s"
            )
            print(
                f"  first start: documents recorded {dict(recorded(first_env))}; precision at its end: "
                f"{first.summary['precision']['passages']} ({first.summary['precision']['passages_reason'][:120]})"
            )
            print(
                f"  next start, a second data directory: documents recorded {dict(recorded(next_env))}; "
                f"int8 exports in the cache: {len(exports)}; exported again: "
                f"{'no' if after_next == after_first else 'YES (the cache changed)'}"
            )
        first_s = statistics.median(t.seconds for t in firsts)
        next_s = statistics.median(t.seconds for t in nexts)
        difference = first_s - next_s
        verdict = "met" if difference <= GOAL_SECONDS else "NOT met"
        print(f"first start {first_s:.1f} s, next start {next_s:.1f} s (medians of {args.rounds})")
        print(
            f"goal: the first ingest no more than {GOAL_SECONDS:.0f} s slower than the next: {difference:+.1f} s — {verdict}"
        )
        print()
        print("| CPU as seen | first start (empty cache) | next start (kept) | difference | CPU wait (PSI) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        features = cpu_mask.features()
        seen = "AVX512-BF16" if features.get("AVX512BF16") else "AVX2 only"
        stalled = max(t.stalled for t in firsts + nexts)
        print(f"| {seen} | {first_s:.1f} s | {next_s:.1f} s | {difference:+.1f} s | ≤ {stalled:.0%} |")


if __name__ == "__main__":
    main()
