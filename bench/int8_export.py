"""The int8 export's quantizer: ONNX Runtime's loop over output channels against the product's, all at once.

    .venv/bin/python bench/int8_export.py [--rounds 2]

Exports the GLuCoSE-shaped random-weight model of ``bench/ingest_speed.py`` to float32 ONNX once (as
the product's export does, pooling included), then quantizes it both ways in turn, ``--rounds``
times, in this process: ``int8.quantize(at_once=False)`` is ONNX Runtime's ``quantize_dynamic`` as it
ships, ``at_once=True`` the product's. Prints each time, the medians and their ratio, and whether the
two files are the same bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_speed import JSQUAD, glucose_sized_model, read_articles  # noqa: E402
from pipelines.model import int8  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    corpus = "\n".join(text for _, text in read_articles(JSQUAD, 10))  # as int8_backends builds it
    model = SentenceTransformer(str(glucose_sized_model(args.cache, corpus)), device="cpu")
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(dir=REPO / "bench-out") as scratch:
        float_path = Path(scratch) / "model.onnx"
        started = time.perf_counter()
        int8.export_float32(model, float_path)
        print(f"torch's ONNX export: {time.perf_counter() - started:.1f} s")
        for round_ in range(args.rounds):
            for at_once in (False, True):
                started = time.perf_counter()
                int8.quantize(float_path, Path(scratch) / f"at-once-{at_once}.onnx", at_once=at_once)
                times[at_once].append(time.perf_counter() - started)
            print(f"round {round_ + 1}: ONNX Runtime's loop {times[False][-1]:.1f} s, at once {times[True][-1]:.1f} s")
        same = (Path(scratch) / "at-once-True.onnx").read_bytes() == (Path(scratch) / "at-once-False.onnx").read_bytes()
    loop, once = statistics.median(times[False]), statistics.median(times[True])
    print(f"medians: ONNX Runtime's loop {loop:.1f} s, at once {once:.1f} s = {once / loop:.2f} of the loop's time")
    print(f"the same file byte for byte: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
