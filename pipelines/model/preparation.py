"""A first start's preparation: float32 served at once, the faster precisions checked in the background.

On a machine with no kept verdict, ``RAG_PRECISION=auto`` would make the first start pay, before it
embeds anything, for the int8 export and the precision checks (tens of seconds on a 2-core CPU). A
first start instead serves float32, which needs no check, and a ``Preparation`` thread, at the
lowest CPU priority, does the rest, cheapest first:

1. where the CPU computes bfloat16 natively, its check and timing (no export): passed and faster,
   it is served from then on;
2. the int8 export and the whole policy (``PrecisionPolicy.choose``, reusing what step 1 computed);
   the verdict is kept (``VerdictCache``) and served.

The switch happens between two embedding calls: each call reads the precision once, so a document
is embedded, and recorded, in one precision. Under the cache's lock, so that of two processes (or
two data directories, or two embedders) starting at once on a machine, one exports and checks; the
other serves float32 meanwhile and then takes the kept verdict. A preparation that fails leaves
float32 served, with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from pipelines.model import first_check
from pipelines.model.precision import Paths, PrecisionChoice, PrecisionPolicy, VerdictCache

logger = logging.getLogger(__name__)

PREPARING = "より速い計算精度をバックグラウンドで確かめています。確かめ終わると切り替えます"
SERVING = PrecisionChoice("float32", PREPARING, "float32", PREPARING, preparing=True)
# the thread's niceness: the foreground's embedding comes first on a busy CPU
NICENESS = 19
THREAD_NAME = "precision-preparation"


def failed(error: BaseException) -> PrecisionChoice:
    """float32, with why the faster precisions could not be prepared."""
    reason = f"より速い計算精度を準備できませんでした（{type(error).__name__}: {str(error)[:160]}）"
    return PrecisionChoice("float32", reason, "float32", reason)


class Stopped(Exception):
    """The preparation was asked to stop (its process is ending) between two of its steps."""


class _Remembered:
    """``paths`` with each result kept: the cheap step's float32 vectors and timings serve the whole policy.

    Each step (loading the model and computing, timing) first and last checks ``stop``: a process that ends
    waits for one step at most, never for the whole preparation, and never ends while a step runs.
    """

    def __init__(self, paths: Paths, stop: threading.Event) -> None:
        self.paths = paths
        self.stop = stop
        self._vectors: dict[tuple[tuple[str, ...], str], np.ndarray] = {}
        self._speeds: dict[str, float] = {}

    def go_on(self) -> None:
        """Raises ``Stopped`` where the preparation was asked to stop."""
        if self.stop.is_set():
            raise Stopped

    def unavailable(self, precision: str) -> str | None:
        return self.paths.unavailable(precision)

    def encode(self, texts: Sequence[str], precision: str) -> np.ndarray:
        key = (tuple(texts), precision)
        if key not in self._vectors:
            self.go_on()
            self._vectors[key] = self.paths.encode(texts, precision)
            self.go_on()
        return self._vectors[key]

    def tokens_per_second(self, precision: str) -> float:
        if precision not in self._speeds:
            self.go_on()
            self._speeds[precision] = self.paths.tokens_per_second(precision)
            self.go_on()
        return self._speeds[precision]


@dataclasses.dataclass(frozen=True)
class Kept:
    """Where a verdict is kept: the cache, the model's folder in it, and the verdict's key."""

    cache: VerdictCache
    folder: Path
    device: str
    requested: tuple[str, str]
    threads: int

    def read(self) -> PrecisionChoice | None:
        return self.cache.read(self.folder, self.device, self.requested, self.threads)

    def pending(self) -> tuple[str, ...]:
        return self.cache.pending(self.folder, self.device, self.requested, self.threads)

    def write(self, choice: PrecisionChoice, pending: Sequence[str] = ()) -> None:
        self.cache.write(self.folder, self.device, self.requested, self.threads, choice, pending)


class Preparation:
    """One background preparation; ``switch`` hears each choice to serve, the last with ``preparing`` False.

    ``usable(choice)``: whether a verdict kept by another process can be served here (its int8 export
    opens); ``kept``: where verdicts are kept (None: nowhere, this process only).

    ``after``: what is served already, checked by the first start without torch (``first_check``), with
    precisions left to consider (bfloat16); the preparation then runs the whole policy once, with
    torch's float32 as the reference, keeps its verdict and serves it (the same precisions with their
    reasons, or a faster one). A process that ends meanwhile stops it at the end of a step, keeping
    nothing: the verdict served stays kept as pending, and a later start checks again.
    """

    def __init__(
        self,
        policy: PrecisionPolicy,
        device: str,
        paths: Paths,
        kept: Kept | None,
        switch: Callable[[PrecisionChoice], None],
        usable: Callable[[PrecisionChoice], bool],
        after: PrecisionChoice | None = None,
    ) -> None:
        self.policy = policy
        self.after = after
        self.device = device
        self._stop = threading.Event()
        self.paths = _Remembered(paths, self._stop)
        self.kept = kept
        self.switch = switch
        self.usable = usable
        self.seconds = 0.0
        self._done = threading.Event()
        # a command that ends before the preparation waits for it at exit (``wait``), so that the next start has it
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def start(self) -> Preparation:
        # a command that ends first waits for a first start's whole preparation (the next start has it);
        # a check left for later only ends its step (a later start does it again)
        atexit.register(self.wait if self.after is None else self.stop)
        self._thread.start()
        return self

    def stop(self, timeout: float = 120) -> None:
        """End at the end of the current step; nothing is switched or kept. Waits for that step."""
        self._stop.set()
        self.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the preparation to end; False on timeout.

        Whoever waits has nothing else to compute: the preparation's threads get their normal priority
        back where the system allows it (root, or ``RLIMIT_NICE``), else go on at theirs.
        """
        if not self._done.is_set():
            _restore_priority()
        return self._done.wait(timeout)

    def _run(self) -> None:
        started = time.perf_counter()
        choice: PrecisionChoice | None
        _lower_priority()
        try:
            choice = self._prepare()
        except Stopped:
            logger.info("the precision check was stopped: a later start does it")
            choice = None
        except Exception as error:  # a background thread: what is served goes on, the reason is shown
            logger.exception("the faster precisions could not be prepared")
            choice = failed(error) if self.after is None else self._kept_without_later(error)
        self.seconds = time.perf_counter() - started
        logger.info("precision prepared in %.1f s: %s", self.seconds, choice)
        if choice is not None:  # None: stopped, what is served stays and nothing is kept
            self.switch(choice)
        self._done.set()

    def _kept_without_later(self, error: BaseException) -> PrecisionChoice:
        """What is served (checked already) kept as the verdict, with why what was left for later could not be
        checked: another start would fail the same way (a kept verdict is per library versions)."""
        assert self.after is not None
        reason = self.after.passages_reason.replace(f"。{first_check.CHECKED_LATER}", "")
        reason += f"。bfloat16 を確かめられませんでした（{type(error).__name__}: {str(error)[:160]}）"
        choice = dataclasses.replace(self.after, passages_reason=reason)
        if self.kept:
            self.kept.write(choice)
        return choice

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The cache's lock, asked for again every 0.2 s rather than waited on: a process that ends while
        another holds it (another process's check) stops here too, at once (``Stopped``)."""
        while True:
            lock = (
                self.kept.cache.preparing(self.kept.folder, block=False) if self.kept else contextlib.nullcontext(False)
            )
            with lock as held:
                if held is not None:
                    yield
                    return
            self.paths.go_on()
            time.sleep(0.2)

    def _prepare(self) -> PrecisionChoice:
        with self._locked():
            found = self.kept.read() if self.kept else None
            if found is not None and self.kept and not self.kept.pending() and self.usable(found):
                return found  # another process (or embedder) prepared it while this one waited
            if self.after is not None:  # int8 served already: the whole policy, bfloat16 included, then kept
                choice = self.policy.choose(self.device, self.paths)
                if self.kept:
                    self.kept.write(choice)
                return choice
            cheap = self.policy.choose(self.device, self.paths, exclude=("int8",))
            if cheap.passages != "float32" or cheap.questions != "float32":
                self.switch(dataclasses.replace(cheap, preparing=True))
            choice = self.policy.choose(self.device, self.paths)
            if self.kept:
                self.kept.write(choice)
            return choice


def _restore_priority() -> None:
    """The threads of this process at ``NICENESS`` (the preparation's, and those it started) back to 0."""
    if sys.platform != "linux":
        return
    for name in os.listdir("/proc/self/task"):
        try:
            if os.getpriority(os.PRIO_PROCESS, int(name)) == NICENESS:
                os.setpriority(os.PRIO_PROCESS, int(name), 0)
        except ProcessLookupError:  # the thread has ended meanwhile
            continue
        except OSError as error:  # an unprivileged user may not lower a niceness: it goes on at its own
            logger.info("the preparation keeps its low priority (%s)", error)
            return


def _lower_priority() -> None:
    """This thread (and the threads it starts) at the lowest CPU priority, where Linux allows one thread's."""
    if sys.platform != "linux":  # elsewhere the call names the whole process: leave it
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except OSError as error:
        logger.info("the preparation keeps its priority (%s)", error)
