"""A first start's check without torch: int8 against float32, both written from the weights, in seconds.

A first start on a machine (``RAG_PRECISION=auto``, no verdict kept) of a LUKE model (GLuCoSE) on a
CPU reads the weights once (``onnx_graph.read_weights``), writes the model twice as ONNX graphs, in
float32 and in int8, and runs the precision policy on those two (``PrecisionPolicy.choose``: the
same calibration texts, cosines and rankings, and the same 10 % speed margin) before it embeds
anything: about 4 s on two cores, where loading torch, exporting and checking took 20 s. float32 here
is the model itself, computed by ONNX Runtime instead of torch (the same numbers to 1e-6: a test
compares them). The float32 graph is let go afterwards; the int8 one is kept as the export.

bfloat16 needs torch: where the CPU computes it natively, it is checked later, in the background
(``preparation.Preparation`` with ``after``), and the verdict written here is kept as pending until then.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.model import int8, onnx_graph
from pipelines.model.int8_session import Int8Session
from pipelines.model.precision import RANKING_PASSAGES, PrecisionChoice, PrecisionPolicy
from pipelines.model.tokens import Tokens

logger = logging.getLogger(__name__)

# paths this check does not consider (they need torch): checked later, in the background
LATER = ("bfloat16",)
CHECKED_LATER = "bfloat16 はバックグラウンドで確かめます"


class GraphPaths:
    """The policy's paths (``precision.Paths``) over the two graphs: float32 and int8."""

    def __init__(self, float32: int8.Int8Runner, quantized: Int8Session, tokens: Tokens) -> None:
        self.float32 = float32
        self.quantized = quantized
        self.tokens = tokens
        self._speeds: dict[str, float] = {}  # tokens per second of each precision's last ``encode``

    def unavailable(self, precision: str) -> str | None:
        return None if precision in ("float32", "int8") else CHECKED_LATER

    def encode(self, texts: Sequence[str], precision: str) -> np.ndarray:
        """Unit vectors of ``texts`` in ``precision``, in batches of similar length.

        One batch would pad the calibration's short texts to its longest passage: the same vectors at
        three times the work.
        """
        limit = self.float32.model.max_tokens
        counts = [min(self.tokens.count(t), limit) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: counts[i])
        vectors = np.zeros((len(texts), self.float32.model.dimension), dtype=np.float32)
        started = time.perf_counter()
        for start in range(0, len(order), 8):
            batch = order[start : start + 8]
            vectors[batch] = self._run([texts[i] for i in batch], precision, limit)
        self._speeds[precision] = sum(counts) / (time.perf_counter() - started)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def _run(self, texts: Sequence[str], precision: str, limit: int) -> np.ndarray:
        if precision == "int8":
            return self.quantized.encode(texts, self.tokens)
        return self.float32(*self.tokens.feed(texts, limit))

    def tokens_per_second(self, precision: str) -> float:
        """How fast ``precision`` embedded the calibration texts (``encode``), which the policy computes before
        it asks: both paths timed on the same texts in the same batches, without running them again.
        Where they were not computed, ``RANKING_PASSAGES`` as one batch, once."""
        if precision in self._speeds:
            return self._speeds[precision]
        limit = self.float32.model.max_tokens
        tokens = sum(min(self.tokens.count(t), limit) for t in RANKING_PASSAGES)
        started = time.perf_counter()
        self._run(RANKING_PASSAGES, precision, limit)
        return tokens / (time.perf_counter() - started)


def check(
    directory: Path, policy: PrecisionPolicy, quantized: Int8Session, tokens: Tokens, threads: int
) -> PrecisionChoice:
    """Write both graphs of the model in ``directory``, keep and open the int8 one in ``quantized``, and choose.

    Raises ``ValueError`` (Japanese) for a model ``onnx_graph`` does not write, ``OSError`` for files
    that cannot be read; the caller then loads torch as before.
    """
    started = time.perf_counter()
    shape = onnx_graph.shape_of(directory)
    weights = onnx_graph.read_weights(directory)
    quantized.open_built(onnx_graph.build_from(weights, shape, int8.DATA_FILE, quantized=True), shape)
    reference = onnx_graph.build_from(weights, shape, "float32.data", quantized=False)  # in memory only
    del weights
    facts = int8.Int8Model(Path("float32"), shape.hidden, shape.max_tokens, shape.pooling)
    float32 = int8.Int8Runner(facts, threads, graph=reference)
    written = time.perf_counter() - started
    choice = policy.choose("cpu", GraphPaths(float32, quantized, tokens), exclude=LATER)
    del float32, reference
    _give_back_memory()
    logger.info(
        "first start: graphs written in %.1f s, checked in %.1f s: %s",
        written,
        time.perf_counter() - started - written,
        choice,
    )
    return choice


def _give_back_memory() -> None:
    """The float32 graph's and the weights' memory handed back to the system (glibc keeps freed memory
    for the process otherwise: 0.4 GB that a serving process would hold for nothing)."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):  # another C library (musl): its memory is its own business
        ctypes.CDLL("libc.so.6").malloc_trim(0)
