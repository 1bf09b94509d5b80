"""Whole ingest of big and hostile files, as a person runs it: ``python -m pipelines ingest``, one process per file.

    .venv/bin/python bench/ingest_whole.py [--sizes 1 5] [--pages 1000] [--model DIR]

Writes Japanese texts of each size in MB (UTF-8) in the three shapes of ``bench/ingest_scaling.py`` (as written;
one line without 。！？; one line without commas either) and a PDF of ``--pages`` pages, then ingests each
into a fresh data directory with the product's CLI and the offline test model (``testkit/offline_model.py``,
GLuCoSE's architecture at a fraction of its size: the embedding is cheaper than GLuCoSE's, so the share of
reading, normalising and chunking in the total is larger than with the real model, which is what this
measures), or ``--model``. Prints per file: wall seconds of the whole process (start, model load, read in
the child process, normalise, chunk, embed, store), seconds per MB, the time against the text with sentence
ends of the same size, chunks and tokens embedded, and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_scaling import VARIANTS, sized  # noqa: E402
from testkit.documents import SENTENCES, make_pdf  # noqa: E402
from testkit.offline_model import build_offline_model  # noqa: E402

MB = 1_000_000


def ingest(path: Path, data: Path, model: str) -> tuple[float, dict[str, object], float]:
    """Seconds, the CLI's JSON summary and the child's peak resident MB of one ``ingest`` run."""
    env = {**os.environ, "RAG_EMBEDDING_MODEL": model, "RAG_DATA_DIR": str(data), "RAG_MAX_UPLOAD_MB": "100"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "ingest", str(path), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{path.name}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, json.loads(done.stdout), max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 5], help="text sizes in MB")
    parser.add_argument("--pages", type=int, default=1000, help="pages of the PDF (0: none)")
    parser.add_argument("--model", help="a model directory (default: the offline test model, built here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-whole-") as scratch:
        root = Path(scratch)
        model = args.model or str(build_offline_model(root / "tiny-glucose"))
        files: list[tuple[str, Path, float]] = []
        for megabytes in args.sizes:
            for name, make in VARIANTS.items():
                path = root / f"{name.replace(' ', '-').replace(',', '')}-{megabytes:g}MB.txt"
                path.write_text(sized(make(), megabytes), encoding="utf-8")
                files.append((name, path, megabytes))
        if args.pages:
            pdf = root / f"{args.pages}-pages.pdf"
            lines = [s for s in SENTENCES]
            pdf.write_bytes(make_pdf([[lines[i % len(lines)], lines[(i + 1) % len(lines)]] for i in range(args.pages)]))
            files.append((f"PDF, {args.pages} pages", pdf, pdf.stat().st_size / MB))
        print(f"model: {model}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start")
        reference: dict[float, float] = {}
        for number, (name, path, megabytes) in enumerate(files):
            seconds, summary, peak = ingest(path, root / f"data-{number}", model)
            per_mb = seconds / megabytes
            if name == "sentences":
                reference[megabytes] = per_mb
            against = f" (×{per_mb / reference[megabytes]:.2f} the sentences')" if megabytes in reference else ""
            report = summary["files"][0]  # type: ignore[index]
            print(
                f"  {name:<20} {megabytes:6.2f} MB: {seconds:6.1f} s = {per_mb:5.1f} s/MB{against}, "
                f"{report['chunks']:,} chunks, {summary['embedded_tokens']:,} tokens embedded, "
                f"peak resident {peak:,.0f} MB (the largest of the runs so far)",
                flush=True,
            )
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
