"""One embedder's int8 path: an ONNX Runtime session of its export, the one kept in the cache or one written now."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.model import int8, onnx_graph
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
        self._exported: int8.Int8Model | None = None  # set once opened: a runner let go is opened again from it
        self._scratch: Path | None = None

    @property
    def opened(self) -> bool:
        return self._exported is not None

    @property
    def exported(self) -> int8.Int8Model | None:
        """The export this session opened, or None."""
        return self._exported

    def open_kept(self, exported: int8.Int8Model, graph: onnx_graph.Graph | None = None) -> None:
        """Open an export found on disk (``int8.find``); ``graph``: it in memory, where it is at hand."""
        self.runner = int8.Int8Runner(exported, self.threads, graph)
        self._exported = exported

    def open_built(self, graph: onnx_graph.Graph, shape: onnx_graph.Shape) -> None:
        """Keep a graph written from the model's weights (``onnx_graph.build_from``) in the cache, and open it.

        Opened from its files, as a later start opens it: a session fed from memory keeps the caller's
        arrays as well as its own copies (300 MB more for GLuCoSE). A cache folder that cannot be written
        is no error: the graph goes to this session's own folder.
        """
        facts = (shape.hidden, shape.max_tokens, shape.pooling)
        self.open_kept(self._in_cache(lambda directory: int8.write_built(directory, graph, *facts)))

    def reopen_in_caller(self) -> None:
        """Let the session go; the next ``encode`` opens another, whose threads the calling thread starts
        (ONNX Runtime's threads keep the priority of the thread that opened the session)."""
        self.runner = None

    def _runner(self) -> int8.Int8Runner:
        runner = self.runner
        if runner is None:
            assert self._exported is not None, "the int8 path is not open"
            runner = self.runner = int8.Int8Runner(self._exported, self.threads)
        return runner

    def open(self, model: SentenceTransformer, weights: str) -> str | None:
        """Open the path, exporting ``model`` first where no export is kept; why it cannot, in Japanese, or None.

        ``weights``: what the model's linear weights are stored in; only float32 ones can be exported.
        """
        reason = int8.exportable(model)
        if reason is not None:
            return reason
        try:
            self.open_kept(self._export(model, weights))
        except (ImportError, OSError, RuntimeError, ValueError) as error:
            return f"ONNX への書き出しに失敗しました（{type(error).__name__}: {str(error)[:120]}）"
        return None

    def _export(self, model: SentenceTransformer, weights: str) -> int8.Int8Model:
        """The int8 export of the model: the one kept in the cache, else written now (once).

        A cache folder that cannot be written is no error: the export goes to this session's own folder.
        """
        folder = self.files.cache_folder()
        kept = int8.find(folder) if folder is not None else None
        if kept is not None:
            return kept
        started = time.perf_counter()
        exported = self._in_cache(lambda directory: self._write(model, weights, directory))
        logger.info("%s: int8 export in %.1f s", self.files.name, time.perf_counter() - started)
        return exported

    def _in_cache(self, write: Callable[[Path], int8.Int8Model]) -> int8.Int8Model:
        """``write`` into the cache folder; where it cannot be written, into this session's own folder."""
        folder = self.files.cache_folder()
        try:
            return write(folder or self._scratch_folder())
        except OSError as error:
            if folder is None:
                raise
            logger.warning("%s cannot be written (%s): the int8 export is kept for this process only", folder, error)
            return write(self._scratch_folder())

    def _write(self, model: SentenceTransformer, weights: str, directory: Path) -> int8.Int8Model:
        """The graph written from the weights on disk where ``onnx_graph`` can (a second, no tracing), else torch's export."""
        source = self.files.directory()
        if source is not None and onnx_graph.unsupported(source) is None:
            graph, shape = onnx_graph.build(source, int8.DATA_FILE)
            return int8.write_built(directory, graph, shape.hidden, shape.max_tokens, shape.pooling)
        if weights != "float32":
            raise RuntimeError("the weights are stored in bfloat16: the float32 model is no longer there to export")
        return int8.export(model, directory)

    def _scratch_folder(self) -> Path:
        """A folder of this session's own, removed with it."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="int8-"))
            weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
        return self._scratch

    def encode(self, texts: Sequence[str], tokens: Tokens) -> np.ndarray:
        """Vectors (not normalised) for ``texts`` as one batch, fed by ``tokens``, each cut at the model's limit."""
        runner = self._runner()
        return runner(*tokens.feed(texts, runner.model.max_tokens))

    def encode_with_states(self, texts: Sequence[str], tokens: Tokens) -> tuple[np.ndarray, list[np.ndarray]]:
        """``encode``'s vectors and, for each text, its tokens' states (its own length, special tokens included)."""
        runner = self._runner()
        ids, mask = tokens.feed(texts, runner.model.max_tokens)
        pooled, states = runner.with_states(ids, mask)
        return pooled, [row[: int(length)] for row, length in zip(states, mask.sum(axis=1), strict=True)]
