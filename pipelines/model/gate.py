"""The model's use at search time: no more at once than the CPU runs, and a question asked twice at once embedded once.

Every search embeds its question, and a hit's sentences that were not pooled when it was stored
(pipelines/store/sentences.py) are embedded then too. The in-process model already spreads one
batch over all the CPUs it was given; two batches at once only share those CPUs, and twenty (an
HTTP API with twenty clients) thrash the caches and each wait as long as all of them. So at most
``slots`` batches run at once (the CPUs this process may use over the model's threads: one for the
in-process model; a server's model has its own cap), and the others queue. A question being
embedded for one request is not embedded again for another that asks it meanwhile: the second
waits for the first's vector.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

import numpy as np

from pipelines.model.embedder import Embedder, Progress, TextEmbedder
from pipelines.model.hardware import usable_cpus


def query_slots(embedder: TextEmbedder) -> int:
    """How many of the model's query-time batches may run at once: the CPUs over the threads one batch
    uses for the in-process model (so 1 where it uses them all), the CPUs for a server's."""
    threads = embedder.threads if isinstance(embedder, Embedder) else 1
    return max(1, usable_cpus() // max(threads, 1))


class QueryGate:
    """The embedder as searches use it: ``slots`` batches at most at once, identical questions in flight shared."""

    def __init__(self, embedder: TextEmbedder, slots: int | None = None) -> None:
        self.embedder = embedder
        self.slots = slots if slots is not None else query_slots(embedder)
        self._running = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self._flying: dict[str, Future[np.ndarray]] = {}
        self._using = 0  # batches running or waiting for a slot
        self._last = time.monotonic()  # when the last batch ended

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One of the slots, held as a context manager (what each batch holds while it runs)."""
        with self._lock:
            self._using += 1
        try:
            with self._running:
                yield
        finally:
            with self._lock:
                self._using -= 1
                self._last = time.monotonic()

    def busy(self) -> bool:
        """Whether a batch runs or waits now (what work done in idle time waits out)."""
        with self._lock:
            return self._using > 0

    def last_used(self) -> float:
        """When the last batch ended (``time.monotonic``)."""
        with self._lock:
            return self._last

    def in_flight(self) -> int:
        """How many distinct questions are being embedded now."""
        with self._lock:
            return len(self._flying)

    def queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Question vectors, in order; a text that another thread is embedding now is waited for, not embedded again.

        ``progress`` hears the batches of the texts embedded here.
        """
        mine: dict[str, Future[np.ndarray]] = {}
        waiting: dict[str, Future[np.ndarray]] = {}
        with self._lock:
            for text in dict.fromkeys(texts):
                if text in self._flying:
                    waiting[text] = self._flying[text]
                else:
                    mine[text] = self._flying[text] = Future()
        if mine:
            try:
                with self.slot():
                    vectors = self.embedder.embed_queries(list(mine), progress)
            except BaseException as error:
                for future in mine.values():
                    future.set_exception(error)
                raise
            finally:
                with self._lock:
                    for text in mine:
                        del self._flying[text]
            for future, vector in zip(mine.values(), vectors, strict=True):
                future.set_result(vector)
        found = {text: future.result() for text, future in (mine | waiting).items()}
        if not texts:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def documents(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors (a hit's sentences embedded alone), within the cap."""
        with self.slot():
            return self.embedder.embed_documents(texts)
