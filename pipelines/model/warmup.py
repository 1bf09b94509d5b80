"""Loading the model behind a face: started once in a background thread, its stage and outcome readable at any time.

A face (the page, the HTTP API to come) draws itself at once and uses what needs no model (the list
of documents, the uploader) while the model loads; what needs the model waits for it with ``wait``.
"""

from __future__ import annotations

import threading
import time

from pipelines.errors import RagError
from pipelines.model.embedder import TextEmbedder

# how long a request of a server (the API, MCP) waits for the model still loading before it is told to come back
REQUEST_WAIT_SECONDS = 120.0


class ModelWarmup:
    """One background load of ``embedder``; ``wait`` returns when it is ready or raises why it is not."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self.stage = "まもなく読み込みを始めます"
        self._started = time.monotonic()
        self._finished_at: float | None = None
        self._done = threading.Event()
        self._error: RagError | None = None
        self._crash: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="model-warmup", daemon=True)
        self._launch = threading.Lock()  # sessions of the page may ask to start at the same moment
        self._launched = False
        self._after = 0.0
        self._hurry = threading.Event()  # set by wait(): someone needs the model now

    def start(self, after: float = 0.0) -> ModelWarmup:
        """Start loading (once), ``after`` seconds from now or as soon as someone waits; returns itself.

        A face that has just drawn itself gives the browser those seconds: importing torch and
        loading a model take the CPU (and Python's interpreter lock) that serving the page needs.
        """
        with self._launch:
            if not self._launched:
                self._launched = True
                self._after = after
                self._started = time.monotonic()
                self._thread.start()
        return self

    def _run(self) -> None:
        self._hurry.wait(self._after)
        self._started = time.monotonic()
        try:
            self.embedder.load(self._set_stage)
            self.stage = "読み込みました"
        except RagError as error:  # a message for the person: no network, wrong name, wrong tokenizer
            self._error = error
        except BaseException as error:  # noqa: BLE001  # a bug: kept, and raised where the face waits
            self._crash = error
        finally:
            self._finished_at = time.monotonic()
            self._done.set()

    def _set_stage(self, stage: str) -> None:
        self.stage = stage

    @property
    def finished(self) -> bool:
        """Whether loading has ended, well or not."""
        return self._done.is_set()

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and usable."""
        return self._done.is_set() and self._error is None and self._crash is None

    @property
    def error(self) -> RagError | None:
        """Why the model could not be loaded, in words for the person; None while loading or when loaded."""
        return self._error

    @property
    def seconds(self) -> float:
        """Seconds spent loading so far (or in all, once finished)."""
        return (self._finished_at or time.monotonic()) - self._started

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the load; True when ready, False on timeout. A failed load raises its error here."""
        self.start()
        self._hurry.set()
        if not self._done.wait(timeout):
            return False
        if self._crash is not None:
            raise self._crash
        if self._error is not None:
            raise self._error
        return True
