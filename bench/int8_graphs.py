"""The int8 graph written from the weights against torch's traced export, quantized by ONNX Runtime.

    .venv/bin/python bench/int8_graphs.py [--rounds 7] [--without avx512]

The GLuCoSE-shaped random-weight model of ``bench/ingest_speed.py``, written both ways into a scratch
folder: ``onnx_graph.build`` (what a first start writes now) and ``int8.export`` (torch's ONNX export
and ONNX Runtime's quantizer, what it wrote before). Both run in this process through the product's
``Int8Runner`` (ONNX Runtime's ``SkipLayerNormFusion`` left out), and the written graph also with that
rewrite, for batches shaped as ingest's (16 × 128 and 16 × 64 tokens, 8 × 256) and as questions
(1 × 20, 1 × 40): each shape ``--rounds`` times in turn (a question's ten times as many), the first of each
left out. Prints the medians
and the ratio written ÷ traced. ``--without avx512`` runs it as an AVX2-only CPU would (``bench/cpu_mask.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import cpu_mask  # noqa: E402
from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from pipelines.model import int8, onnx_graph  # noqa: E402

SHAPES = ((16, 128), (16, 64), (8, 256), (1, 20), (1, 40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--without", choices=["avx512"], default=None)
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    if args.without:
        cpu_mask.run_masked()
    print(cpu_mask.describe())
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    directory = glucose_sized_model(args.cache, "\n".join(text for _, text in read_articles(JSQUAD, 10)))
    graph, shape = onnx_graph.build(directory, int8.DATA_FILE)
    facts = int8.Int8Model(Path("memory"), shape.hidden, shape.max_tokens, shape.pooling)
    with tempfile.TemporaryDirectory(dir=REPO / "bench-out") as scratch:
        traced = int8.Int8Runner(int8.export(SentenceTransformer(str(directory), device="cpu"), Path(scratch)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    kept = graph.add_to(options)  # noqa: F841  # the session reads them
    fused = ort.InferenceSession(graph.model, options, providers=["CPUExecutionProvider"])
    runners: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
        "written": int8.Int8Runner(facts, graph=graph),
        "traced": traced,
        "written, SkipLayerNorm fused": lambda ids, mask: fused.run(
            ["sentence_embedding"], {"input_ids": ids, "attention_mask": mask}
        ),
    }
    rng = np.random.default_rng(0)
    for rows, width in SHAPES:
        ids = rng.integers(5, 32_000, (rows, width)).astype(np.int64)
        ids[:, 0] = 0
        mask = np.ones_like(ids)
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds * (10 if rows == 1 else 1)):  # a question takes milliseconds: more of them
            for name, run in runners.items():
                started = time.perf_counter()
                run(ids, mask)
                times[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(found[1:]) for name, found in times.items()}
        figures = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in medians.items())
        print(f"{rows} × {width} tokens: {figures}; written ÷ traced {medians['written'] / medians['traced']:.3f}")


if __name__ == "__main__":
    main()
