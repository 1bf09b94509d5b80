"""A first start on a new machine against the next one: the same ingest, an empty per-machine cache, then a kept one.

    .venv/bin/python bench/first_start.py [--articles N] [--rounds R] [--without avx512]

The model, corpus and command are ``bench/ingest_speed.py``'s: the GLuCoSE-shaped random-weight
model, the first N JSQuAD validation articles as text files, ``python -m pipelines ingest DOCS --json``
with ``RAG_PRECISION=auto``, each run a whole process timed from outside. Each round, with a fresh
user cache directory (``XDG_CACHE_HOME``; ``RAG_CACHE_DIR`` unset, so the product's own default is
what is measured):

1. first start: the ingest into a fresh data directory with the cache empty. With the GLuCoSE-shaped
   (LUKE) model on a CPU, the product writes the int8 and float32 graphs from the weights and checks
   int8 before it embeds anything (``pipelines/model/first_check.py``); bfloat16 is left to a serving
   process, so the command's time includes the whole check. With another model it serves float32 at
   once and waits at its end for the preparation still running, which its time then includes;
2. the next start: a fresh process into another fresh data directory, the same cache;
3. what the second data directory cost: whether it exported again (the int8 export's file and the
   verdict are the same ones, untouched) and the precisions each run's documents recorded.

Prints both times, their difference against the goal (no more than 5 s), how contended the CPUs were
(Linux PSI), and a markdown table. ``--without avx512`` runs it as an AVX2-only CPU would
(``bench/cpu_mask.py``). ``--niceness 19 0`` times one first start per niceness of the preparation's
thread (the product's is ``preparation.NICENESS``; another is set in the bench's process only, through
``python -c``), each with its own empty cache, against one next start.
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
    timed_process,
    write_articles,
)
from pipelines.model.preparation import NICENESS  # noqa: E402

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


def first_ingest(docs: Path, env: dict[str, str], niceness: int) -> Timed:
    """The product's ingest as a whole process, its preparation's thread at ``niceness``."""
    if niceness == NICENESS:
        return product_ingest(docs, env, {"added", "duplicate"})
    code = (
        "import sys\nfrom pipelines.model import preparation\n"
        f"preparation.NICENESS = {niceness}\n"
        "from pipelines.faces.cli import main\nsys.exit(main())"
    )
    return timed_process([sys.executable, "-c", code, "ingest", str(docs), "--json"], env)


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
    parser.add_argument("--niceness", type=int, nargs="+", default=[NICENESS], help="the preparation's niceness(es)")
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
        firsts: dict[int, list[Timed]] = {n: [] for n in args.niceness}
        nexts: list[Timed] = []
        for number in range(args.rounds):
            for niceness in args.niceness:
                xdg = scratch / f"xdg-{number}-{niceness}"
                first_env = environment(model, scratch / f"first-{number}-{niceness}", xdg, args)
                first = first_ingest(docs, first_env, niceness)
                firsts[niceness].append(first)
                precision = first.summary["precision"]
                print(
                    f"round {number + 1}, niceness {niceness}: first start {first.seconds:.1f} s (load average "
                    f"{os.getloadavg()[0]:.2f}, CPU wait {first.stalled:.0%}); documents recorded "
                    f"{dict(recorded(first_env))}; at its end {precision['passages']}"
                    f"{' (still preparing)' if precision.get('preparing') else ''}"
                )
            after_first = kept_files(xdg)
            next_env = environment(model, scratch / f"next-{number}", xdg, args)
            again = product_ingest(docs, next_env, {"added", "duplicate"})
            after_next = kept_files(xdg)
            nexts.append(again)
            exports = [name for name in after_next if name.endswith(".onnx")]
            print(
                f"round {number + 1}: next start {again.seconds:.1f} s (load average {os.getloadavg()[0]:.2f}, "
                f"CPU wait {again.stalled:.0%}), a second data directory: documents recorded "
                f"{dict(recorded(next_env))}; int8 exports in the cache: {len(exports)}; exported again: "
                f"{'no' if after_next == after_first else 'YES (the cache changed)'}"
            )
        next_s = statistics.median(t.seconds for t in nexts)
        features = cpu_mask.features()
        seen = "AVX512-BF16" if features.get("AVX512BF16") else "AVX2 only"
        rows = []
        for niceness, runs in firsts.items():
            first_s = statistics.median(t.seconds for t in runs)
            difference = first_s - next_s
            verdict = "met" if difference <= GOAL_SECONDS else "NOT met"
            print(
                f"niceness {niceness}: first start {first_s:.1f} s, next start {next_s:.1f} s (medians of "
                f"{args.rounds}); goal (no more than {GOAL_SECONDS:.0f} s slower): {difference:+.1f} s — {verdict}"
            )
            stalled = max(t.stalled for t in runs + nexts)
            rows.append(
                f"| {seen} | {niceness} | {first_s:.1f} s | {next_s:.1f} s | {difference:+.1f} s | ≤ {stalled:.0%} |"
            )
        print()
        print(
            "| CPU as seen | preparation's niceness | first start (empty cache) | next start (kept) | difference | CPU wait (PSI) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
