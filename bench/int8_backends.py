"""Reduced-precision backends for the passages on this CPU, on the same batch: which one is fastest.

    .venv/bin/python bench/int8_backends.py [--rounds R] [--batch-size 6] [--tokens 168]

The issue asked that int8 be taken from what the field ships and that torch's own int8 be measured
too; this compares, on one batch of real Japanese text (JSQuAD paragraphs of at least ``--tokens``
tokens, cut there as the product's full chunks are, so without padding), with the GLuCoSE-shaped
random-weight model of ``bench/ingest_speed.py``:

- torch float32 (what the product computes without a faster path);
- the product's int8 path (``pipelines/model/int8.py``: ONNX export, ONNX Runtime's dynamic quantization per
  output channel, ONNX Runtime's session as the product opens it);
- torch's own dynamic int8 (``torch.ao.quantization.quantize_dynamic`` of the linear layers), with
  each quantized engine this torch has (fbgemm, x86);
- OpenVINO, when it is installed (it is not a dependency: ``pip install openvino nncf``): its float32,
  the product's int8 ONNX read by OpenVINO, and NNCF's static int8 (SmoothQuant, the transformer
  preset), calibrated on other paragraphs.

All with the product's thread count (one per usable core). Rounds are interleaved; each backend's best
round is reported as tokens per second (padding not counted), its ratio to torch float32 and its
least cosine with float32 over the batch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench import cpu_mask  # noqa: E402
from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402

Batch = dict[str, np.ndarray]


def paragraphs(tokenizer: Any, count: int, skip: int, limit: int) -> list[str]:
    """``count`` JSQuAD paragraphs of at least ``limit`` tokens, after the first ``skip`` such: full chunks, no padding."""
    texts = [p for _, article in read_articles(JSQUAD, None) for p in article.split("\n\n")]
    long = (t for t in texts if len(tokenizer(t, truncation=True, max_length=limit)["input_ids"]) >= limit)
    return [t for i, t in enumerate(long) if skip <= i < skip + count][:count]


def batch(tokenizer: Any, texts: list[str], limit: int) -> Batch:
    """Token ids and mask of ``texts`` cut at ``limit`` tokens, longest first, padded to the longest."""
    rows = sorted((tokenizer(t, truncation=True, max_length=limit)["input_ids"] for t in texts), key=len, reverse=True)
    width = len(rows[0])
    ids = np.full((len(rows), width), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def torch_runner(module: Any, feed: Batch) -> Callable[[], np.ndarray]:
    import torch

    ids, mask = torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])

    def run() -> np.ndarray:
        with torch.inference_mode():
            hidden = module(input_ids=ids, attention_mask=mask).last_hidden_state
            return ((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()

    return run


def openvino_runners(
    float_onnx: Path, int8_onnx: Path, feed: Batch, calibration: list[Batch], threads: int
) -> dict[str, Callable[[], np.ndarray]]:
    """OpenVINO's runs of the batch, or none (with a line saying why) when it is not installed."""
    try:
        import nncf
        import openvino as ov
    except ImportError as error:
        print(f"OpenVINO: skipped ({error.name} is not installed; pip install openvino nncf)")
        return {}
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}

    def runner(model: Any) -> Callable[[], np.ndarray]:
        request = core.compile_model(model, "CPU", config).create_infer_request()
        return lambda: np.array(request.infer(feed)[0])

    started = time.perf_counter()
    floats = core.read_model(str(float_onnx))
    quantized = nncf.quantize(
        floats, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
    )
    print(
        f"OpenVINO {ov.__version__}, NNCF {nncf.__version__}: static int8 calibrated in {time.perf_counter() - started:.0f} s"
    )
    return {
        "OpenVINO float32": runner(floats),
        "OpenVINO, the product's int8 ONNX": runner(core.read_model(str(int8_onnx))),
        "OpenVINO, NNCF static int8": runner(quantized),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--batch-size", type=int, default=6, help="texts (default 6: what the product batches on a CPU)"
    )
    parser.add_argument("--tokens", type=int, default=168, help="the longest text, in tokens (default 168)")
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer

    from pipelines.model import int8
    from pipelines.model.embedder import usable_cpus

    threads = usable_cpus()
    torch.set_num_threads(threads)
    print(f"machine: {threads} usable cores; torch {torch.__version__}, ONNX Runtime {onnxruntime.__version__}")
    print(cpu_mask.describe())
    corpus = "\n".join(text for _, text in read_articles(JSQUAD, 10))
    model = SentenceTransformer(str(glucose_sized_model(args.cache, corpus)), device="cpu")
    tokenizer = model.tokenizer
    feed = batch(tokenizer, paragraphs(tokenizer, args.batch_size, 0, args.tokens), args.tokens)
    calibration = [batch(tokenizer, paragraphs(tokenizer, 8, 100 + 8 * i, args.tokens), args.tokens) for i in range(4)]
    tokens = int(feed["attention_mask"].sum())
    print(f"batch: {args.batch_size} JSQuAD paragraphs, {tokens:,} tokens (padded to {feed['input_ids'].size:,})")

    transformer = model[0].auto_model.eval()
    runners: dict[str, Callable[[], np.ndarray]] = {"torch float32": torch_runner(transformer, feed)}
    with tempfile.TemporaryDirectory() as folder:
        exported = int8.export(model, Path(folder) / "int8")
        session = int8.Int8Runner(exported, threads)
        runners["ONNX Runtime int8 (the product's)"] = lambda: session(feed["input_ids"], feed["attention_mask"])
        for engine in torch.backends.quantized.supported_engines:
            if engine in ("fbgemm", "x86"):
                torch.backends.quantized.engine = engine
                quantized = torch.ao.quantization.quantize_dynamic(transformer, {torch.nn.Linear}, dtype=torch.qint8)
                runners[f"torch int8 dynamic ({engine})"] = torch_runner(quantized, feed)
        float_onnx = Path(folder) / "float.onnx"
        int8.export_float32(model, float_onnx)
        runners |= openvino_runners(float_onnx, exported.path, feed, calibration, threads)

        reference = runners["torch float32"]()
        best = {name: float("inf") for name in runners}
        cosines = {}
        for name, run in runners.items():  # a warm-up each, and its agreement with float32
            vectors = run()
            cosines[name] = float(
                np.min(
                    (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
                )
            )
        for _ in range(args.rounds):
            for name, run in runners.items():
                started = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - started)
    base = tokens / best["torch float32"]
    print(f"\nbest of {args.rounds} interleaved rounds:")
    print("| backend | tokens/s | ÷ torch float32 | least cosine with float32 |")
    print("| --- | ---: | ---: | ---: |")
    for name in sorted(runners, key=lambda n: best[n]):
        rate = tokens / best[name]
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}× | {cosines[name]:.4f} |")


if __name__ == "__main__":
    main()
