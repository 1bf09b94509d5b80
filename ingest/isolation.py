"""Reading files in a child process, so that no file can hang, exhaust or crash the process that reads it.

A parser can loop for minutes on a crafted PDF, allocate gigabytes, or crash in native code. In the
product that process is the page's server, holding the store's write lock for every session. Here
each file is read by a long-lived child process (started once, on first use, without the parent's
threads or model): a file that takes longer than its time is stopped (the child is killed and a new
one started for the next file), a child whose memory passes its bound fails on that file alone, and
a child that dies takes only its own file with it. Each case is an ``IngestError`` with a message.

The child ends with the process that started it, however that one ends: ``close`` stops it, and a
parent killed outright (SIGKILL, the OOM killer) leaves it without a parent, which it notices within
half a second and exits (``_die_with``). multiprocessing's resource tracker, a process it starts
beside the first child, exits by itself once neither the parent nor any child is left.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingest.errors import FileTimeoutError, ReaderCrashedError
from ingest.limits import Limits
from ingest.loaders import LoadedFile, load_bytes, load_file

if TYPE_CHECKING:
    from ingest.ocr import OcrOptions


class Reader(Protocol):
    """How the indexer reads a file into text: in this process, or isolated in a child."""

    def load_bytes(self, name: str, data: bytes, limits: Limits) -> LoadedFile: ...

    def load_file(self, path: Path, source: str, limits: Limits) -> LoadedFile: ...

    def close(self) -> None:
        """Stop whatever reads in the background; a later read starts it again."""
        ...


class InProcessReader:
    """Reads files in this process, with no time or memory bound (tests, scripts, trusted files).

    ``ocr``: how scanned pages and images are recognised (default ``OcrOptions()``).
    """

    def __init__(self, ocr: OcrOptions | None = None) -> None:
        self.ocr = ocr

    def load_bytes(self, name: str, data: bytes, limits: Limits) -> LoadedFile:
        """``ingest.loaders.load_bytes``."""
        return load_bytes(name, data, limits, self.ocr)

    def load_file(self, path: Path, source: str, limits: Limits) -> LoadedFile:
        """``ingest.loaders.load_file``."""
        return load_file(path, source, limits, self.ocr)

    def close(self) -> None:
        """Nothing runs in the background."""


# how often the child looks whether its parent is still there
_PARENT_POLL = 0.5


def _start_child(parent: int, megabytes: int | None) -> None:
    """In the child, before its first file: end with ``parent``, and bound the memory."""
    _die_with(parent)
    if megabytes:
        _limit_memory(megabytes)


def _die_with(parent: int) -> None:
    """In the child: exit as soon as ``parent`` is gone (a child whose parent died is given another one).

    Without this a child whose parent was killed waits for its next file for ever: it holds both
    ends of its work queue itself, so it never reads an end of file there. Not ``PR_SET_PDEATHSIG``:
    Linux sends that signal when the *thread* that started the child ends, and a server starts it from
    a worker thread that may end while the process lives on.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL)
        os._exit(1)

    if os.getppid() != parent:  # the parent died while this child started
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_memory(megabytes: int) -> None:
    """In the child: a bound on its address space, so that a decompression bomb fails there, not here."""
    import resource

    size = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))


class IsolatedReader:
    """Reads documents in a child process with a time bound per file and a memory bound for the child.

    ``seconds``: the most a file may take to read (None: no bound). ``memory_mb``: the child's address
    space (None: no bound); programs it starts (Tesseract, LibreOffice) inherit the bound. ``ocr``: how
    scanned pages and images are recognised. Thread-safe: files are read one at a time, in the order asked.
    """

    def __init__(
        self, seconds: float | None = 300, memory_mb: int | None = 4096, ocr: OcrOptions | None = None
    ) -> None:
        self.seconds = seconds
        self.memory_mb = memory_mb
        self.ocr = ocr
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fresh interpreter, without the parent's threads, torch or open store
            context = multiprocessing.get_context("spawn")
            start = functools.partial(_start_child, os.getpid(), self.memory_mb)
            self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=start)
        return self._pool

    def _restart(self) -> None:
        """Kill the child (a file that ran out of time, or a broken pool); the next file starts a new one."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):  # the executor has no public kill
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def load_bytes(self, name: str, data: bytes, limits: Limits) -> LoadedFile:
        """``ingest.loaders.load_bytes`` in the child."""
        return self.run(name, load_bytes, name, data, limits, self.ocr)

    def load_file(self, path: Path, source: str, limits: Limits) -> LoadedFile:
        """``ingest.loaders.load_file`` in the child (it reads the file itself: the bytes are not copied over)."""
        return self.run(source, load_file, path, source, limits, self.ocr)

    def run(self, name: str, read: Callable[..., LoadedFile], *args: Any) -> LoadedFile:
        """``read(*args)`` in the child, for the file ``name``; ``read`` must be importable by the child."""
        with self._lock:
            return self._wait(name, self._executor().submit(read, *args))

    def _wait(self, name: str, future: Future[LoadedFile]) -> LoadedFile:
        try:
            return future.result(timeout=self.seconds)
        except FutureTimeout:
            self._restart()
            raise FileTimeoutError(
                f"{name}: 読み取りが {self.seconds:.0f} 秒で終わらなかったため、中止しました。"
                "ファイルが壊れているか、極端に複雑です。分割するか、上限を RAG_SECONDS_PER_FILE で変えてください。"
            ) from None
        except (BrokenProcessPool, MemoryError) as error:
            self._restart()
            memory = f"（メモリの上限 {self.memory_mb:,} MB）" if self.memory_mb else ""
            raise ReaderCrashedError(
                f"{name}: ファイルを読む処理が異常終了しました{memory}。ファイルが壊れているか、"
                "展開すると巨大になる細工がされています。元のファイルから作り直してください。"
            ) from error

    def close(self) -> None:
        """Stop the child process and the executor's thread that watches it; a later read starts new ones.

        A command should close its reader when done: left to the interpreter's exit, the executor's
        thread is stopped by ``concurrent.futures``' exit hook, which on Python 3.11 may race the
        thread closing its wake-up pipe and print ``Exception ignored in: <module 'threading'>``.
        """
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
