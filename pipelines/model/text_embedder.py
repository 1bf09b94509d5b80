"""What the pipelines need from an embedding model: the ``TextEmbedder`` protocol, its statistics and callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipelines.model.precision import PrecisionChoice

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each embedding batch."""
Stage = Callable[[str], None]
"""Called with what loading is doing now, in Japanese, for a face to show while a model loads."""

# The sentence whose embedding identifies a model in the store's metadata.
FINGERPRINT_TEXT = "この文は、保存されたベクトルがどの埋め込みモデルで作られたかを確かめるためのものです。"


@dataclass
class EmbeddingStats:
    """What the embedder has done since it was created: texts, their tokens, and seconds spent.

    Only the texts it was asked to embed (passages and questions) count; what loading embeds to check
    the model (the fingerprint sentence, calibration texts) does not.
    """

    texts: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class TextEmbedder(Protocol):
    """What the pipelines need from an embedding model; ``Embedder`` is the in-process one."""

    model_name: str
    stats: EmbeddingStats

    def load(self, stage: Stage | None = None) -> None: ...

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded (or, for a server, has answered): a command that embeds nothing leaves it False."""
        ...

    @property
    def precision(self) -> PrecisionChoice: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def counting(self) -> str:
        """How ``count_tokens`` counts, in Japanese, for the CLI and the page."""
        ...

    def fingerprint(self) -> list[float]: ...

    def embed_documents(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> np.ndarray:
        """Unit vectors of passages, all computed in ``precision`` (a value ``precision.passages`` had; None:
        the one it has when the call begins), so that a caller records what its vectors were computed in."""
        ...

    def embed_passages(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """``embed_documents``, and for each text a unit vector per span (its sentences) pooled from the same
        pass, or None where this embedder cannot pool them (then they are embedded alone when needed)."""
        ...

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...
