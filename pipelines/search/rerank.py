"""Optional reranking: a sentence-transformers CrossEncoder reads question and passage together."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pipelines.errors import ModelLoadError
from pipelines.model import hub


class CrossEncoderReranker:
    """Scores (question, passage) pairs with a cross-encoder, e.g. ``hotchpotch/japanese-reranker-cross-encoder-xsmall-v1``.

    Loaded on first use (a hub name downloads once into the Hugging Face cache; a directory loads
    from disk). Slower than the first stage by far, so it only reorders the first candidates.
    """

    def __init__(self, model_name: str, device: str = "", batch_size: int = 16, max_length: int = 512) -> None:
        self.model_name = model_name
        self.device = device or None
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the cross-encoder now (otherwise on first use)."""
        with self._lock:
            if self._model is not None:
                return
            from sentence_transformers import CrossEncoder

            source = hub.locate(self.model_name, hub.RERANKER)  # fails in seconds when it cannot be had
            try:
                with hub.quiet():
                    self._model = CrossEncoder(
                        source.target,
                        device=self.device,
                        max_length=self.max_length,
                        local_files_only=source.local_only,
                    )
            except (OSError, ValueError) as error:
                raise ModelLoadError(
                    f"再ランキングモデル「{self.model_name}」を読み込めません（{error}）。"
                    "RAG_RERANKER にモデル名かモデルのディレクトリを指定するか、空にして再ランキングを止めてください。"
                ) from error

    def scores(self, question: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, higher is better (the model's raw output)."""
        if not passages:
            return []
        self.load()
        pairs = [(question, passage) for passage in passages]
        predicted = self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return [float(x) for x in predicted]
