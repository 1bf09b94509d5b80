"""Choosing a hit's best sentence: the words it shares with the question, and the sentences made exact when the model is idle.

A sentence's vector pooled from its chunk's own pass at ingest (pipelines/model/pooling.py) carries the
whole chunk, so the sentences of one chunk score close together and the pooled vectors alone pick the
sentence that embedding each alone would pick only about 60 % of the time (docs/speed.md). Two things
close the gap:

- **Shared characters.** Pooled scores get ``LEXICAL_WEIGHT`` × the share of the question's character
  bigrams that the sentence holds (Japanese has no spaces; bigrams are how Japanese full-text search
  matches words without a dictionary). Tuned on the even-numbered JSQuAD questions, judged on the odd:
  agreement with embedding each alone 61.5 → 69.1 %, and the sentence chosen holds the answer in
  75.4 % of answerable hits against 69.0 % pooled alone (and about 74 % for the sentences embedded
  alone). A row whose sentences were embedded alone is scored by its cosines only: it is exact.
- **Exact in idle time.** ``SentenceRefiner`` embeds each shown hit's sentences alone in a background
  thread when no search is using the model, and keeps them, so a passage shown once is exact from its
  next showing on; ``python -m pipelines sentences refine`` does a whole collection (at the lowest CPU
  priority), for a night's timer.
"""

from __future__ import annotations

import itertools
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ingest.chunking import sentence_spans
from ingest.normalize import normalize_text
from pipelines.errors import RagError
from pipelines.model.gate import QueryGate
from pipelines.store.sentences import Sentences, SentenceVectors

logger = logging.getLogger(__name__)

# The weight of the shared bigram share against a pooled cosine (tuned on the even JSQuAD questions).
LEXICAL_WEIGHT = 0.08
# Blanks, Japanese punctuation and brackets carry no content and are left out of the bigrams.
_NOT_CONTENT = re.compile(r"[\s。、，．！？!?「」『』（）()・…：:；;]+")


def bigrams(text: str) -> set[str]:
    """The character bigrams of ``text`` after normalising it (full-width and half-width alike), punctuation left out."""
    cleaned = _NOT_CONTENT.sub("", normalize_text(text))
    return {cleaned[i : i + 2] for i in range(len(cleaned) - 1)}


def shared_shares(question: str, sentences: Sequence[str]) -> np.ndarray:
    """For each sentence, the share of the question's bigrams it holds (0 to 1)."""
    asked = bigrams(question)
    if not asked:
        return np.zeros(len(sentences), dtype=np.float32)
    return np.asarray([len(asked & bigrams(s)) / len(asked) for s in sentences], dtype=np.float32)


def sentence_scores(question: str, query: np.ndarray, found: Sentences, texts: Sequence[str]) -> np.ndarray:
    """How close each sentence of a hit is to the question: the cosine, plus the shared bigrams for pooled vectors."""
    scores = found.vectors @ query
    if found.pooled and len(texts) == len(scores):
        scores = scores + LEXICAL_WEIGHT * shared_shares(question, texts)
    return scores


@dataclass(frozen=True)
class Pending:
    """A hit's sentences to embed alone: its key in the sentences file, and the texts and spans of its sentences."""

    key: str
    texts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]


class SentenceRefiner:
    """Embeds shown hits' sentences alone when the model is idle, and keeps them (``pooled`` False).

    ``offer`` never waits: a full queue drops the hit (it stays pooled, and is offered again when shown).
    The thread starts at the first offer and takes the model's slot only after ``idle_seconds`` without a
    search, and while nothing else embeds (an ingest), one hit at a time, so a search never waits behind
    more than one hit's sentences.
    """

    def __init__(
        self,
        gate: QueryGate,
        sentences: SentenceVectors,
        model: str,
        *,
        idle_seconds: float = 0.5,
        capacity: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gate = gate
        self.sentences = sentences
        self.model = model
        self.idle_seconds = idle_seconds
        self._queue: queue.Queue[Pending] = queue.Queue(capacity)
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._clock = clock
        self.refined = 0

    def offer(self, pending: Sequence[Pending]) -> None:
        """Queue hits whose sentences are pooled, once each."""
        with self._lock:
            for item in pending:
                if item.key in self._queued or not item.texts:
                    continue
                try:
                    self._queue.put_nowait(item)
                except queue.Full:
                    return
                self._queued.add(item.key)
            if self._thread is None and self._queued:
                self._thread = threading.Thread(target=self._run, name="sentence-refiner", daemon=True)
                self._thread.start()

    def waiting(self) -> int:
        """Hits queued and not yet refined."""
        with self._lock:
            return len(self._queued)

    def stop(self) -> None:
        """Let the thread end after the hit it is embedding."""
        self._stopped.set()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued hit is refined (for tests and benchmarks); False when ``timeout`` passed first."""
        ends = time.monotonic() + timeout
        while self.waiting() and time.monotonic() < ends:
            time.sleep(0.02)
        return not self.waiting()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                self._wait_for_idle()
                vectors = self.gate.documents(list(item.texts))
                self.sentences.put(self.model, {item.key: Sentences(item.spans, vectors, False)})
                self.refined += 1
            except RagError as error:  # a cache: the hit stays pooled
                logger.warning("%s", error)
            except Exception:  # never let the thread die silently; the hit stays pooled
                logger.exception("refining the sentences of %s failed", item.key)
            finally:
                with self._lock:
                    self._queued.discard(item.key)

    def _embedded(self) -> int:
        """Texts the model has embedded so far, for any caller (an ingest does not go through the gate)."""
        stats = getattr(self.gate.embedder, "stats", None)
        return int(getattr(stats, "texts", 0))

    def _wait_for_idle(self) -> None:
        """Until no search has held the model for ``idle_seconds`` and nothing else (an ingest) embedded meanwhile."""
        while not self._stopped.is_set():
            seen = self._embedded()
            quiet = self._clock() - self.gate.last_used()
            if not self.gate.busy() and quiet >= self.idle_seconds:
                time.sleep(self.idle_seconds / 5)
                if self._embedded() == seen and not self.gate.busy():
                    return
                continue
            time.sleep(max(0.01, min(self.idle_seconds - quiet, self.idle_seconds)))


@dataclass(frozen=True)
class RefineReport:
    """What ``refine_all`` did: passages whose sentences it embedded alone, and those already exact or with one sentence."""

    refined: int
    already: int
    sentences: int

    def to_dict(self) -> dict[str, int]:
        return {"refined": self.refined, "already": self.already, "sentences": self.sentences}


def refine_all(
    chunks: Iterable[tuple[str, str]],
    sentences: SentenceVectors,
    model: str,
    embed: Callable[[list[str]], np.ndarray],
    *,
    total: int = 0,
    batch_sentences: int = 64,
    group: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> RefineReport:
    """Embed alone the sentences of every passage in ``chunks`` (``(key, text)`` pairs) not yet exact, and keep them.

    ``chunks`` is read ``group`` passages at a time, and only their kept rows are read, so a collection of a
    million passages is never in memory at once. Passages are embedded in batches of about
    ``batch_sentences`` sentences, each batch kept before the next, so a run that is stopped keeps what it
    did and the next run goes on from there. ``progress`` hears the passages looked at, of ``total``.
    """
    seen: set[str] = set()
    refined = already = embedded = looked = 0
    stream = iter(chunks)
    while items := list(itertools.islice(stream, group)):
        fresh = {key: text for key, text in items if key not in seen}
        seen.update(fresh)
        kept = sentences.get(model, list(fresh))
        todo: list[Pending] = []
        for key, text in fresh.items():
            spans = tuple(sentence_spans(text))
            row = kept.get(key)
            if len(spans) < 2 or (row is not None and not row.pooled and row.spans == spans):
                already += 1
            else:
                todo.append(Pending(key, tuple(text[a:b] for a, b in spans), spans))
        done = 0
        while done < len(todo):
            batch: list[Pending] = []
            while done < len(todo) and (not batch or sum(len(p.texts) for p in batch) < batch_sentences):
                batch.append(todo[done])
                done += 1
            vectors = iter(embed([t for p in batch for t in p.texts]))
            sentences.put(
                model, {p.key: Sentences(p.spans, np.stack([next(vectors) for _ in p.texts]), False) for p in batch}
            )
            embedded += sum(len(p.texts) for p in batch)
            refined += len(batch)
        looked += len(items)
        if progress is not None:
            progress(looked, max(total, looked))
    return RefineReport(refined, already, embedded)
