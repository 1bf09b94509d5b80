"""One embedder's int8 path: an ONNX Runtime session of its export, the one kept in the cache or one written now."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.model import int8
from pipelines.model.files import ModelFiles
from pipelines.model.tokens import Tokens

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


class Int8Session:
    """The int8 path of the model in ``files``, on ``threads`` CPU threads: closed until ``open`` or ``open_kept``.

    Without a cache folder, the export is written to a folder of this session's own, removed with it.
    """

    def __init__(self, files: ModelFiles, threads: int) -> None:
        self.files = files
        self.threads = threads
        self.runner: int8.Int8Runner | None = None
        self._scratch: Path | None = None

    @property
    def opened(self) -> bool:
        return self.runner is not None

    def open_kept(self, exported: int8.Int8Model) -> None:
        """Open an export found on disk (``int8.find``)."""
        self.runner = int8.Int8Runner(exported, self.threads)

    def open(self, model: SentenceTransformer, weights: str) -> str | None:
        """Open the path, exporting ``model`` first where no export is kept; why it cannot, in Japanese, or None.

        ``weights``: what the model's linear weights are stored in; only float32 ones can be exported.
        """
        reason = int8.exportable(model)
        if reason is not None:
            return reason
        try:
            self.runner = int8.Int8Runner(self._export(model, weights), self.threads)
        except (ImportError, OSError, RuntimeError, ValueError) as error:
            return f"ONNX への書き出しに失敗しました（{type(error).__name__}: {str(error)[:120]}）"
        return None

    def _export(self, model: SentenceTransformer, weights: str) -> int8.Int8Model:
        """The int8 export of the model: the one kept in the cache, else written now (seconds, once)."""
        folder = self.files.cache_folder()
        if folder is None:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="int8-"))
                weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
            folder = self._scratch
        kept = int8.find(folder)
        if kept is not None:
            return kept
        if weights != "float32":
            raise RuntimeError("the weights are stored in bfloat16: the float32 model is no longer there to export")
        started = time.perf_counter()
        exported = int8.export(model, folder)
        logger.info("%s: int8 export in %.1f s", self.files.name, time.perf_counter() - started)
        return exported

    def encode(self, texts: Sequence[str], tokens: Tokens) -> np.ndarray:
        """Vectors (not normalised) for ``texts`` as one batch, fed by ``tokens``, each cut at the model's limit."""
        assert self.runner is not None, "the int8 path is not open"
        return self.runner(*tokens.feed(texts, self.runner.model.max_tokens))

    def encode_with_states(self, texts: Sequence[str], tokens: Tokens) -> tuple[np.ndarray, list[np.ndarray]]:
        """``encode``'s vectors and, for each text, its tokens' states (its own length, special tokens included)."""
        assert self.runner is not None, "the int8 path is not open"
        ids, mask = tokens.feed(texts, self.runner.model.max_tokens)
        pooled, states = self.runner.with_states(ids, mask)
        return pooled, [row[: int(length)] for row, length in zip(states, mask.sum(axis=1), strict=True)]
