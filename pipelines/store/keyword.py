"""Keyword search: Japanese morphological analysis and BM25 over the same chunks as the vectors.

Japanese has no spaces between words, so a chunk is cut into words by a morphological analyser
(Sudachi, split mode B, with its normalised forms: 住んで → 住む, ｻｰﾊﾞｰ → サーバー), and particles,
auxiliary verbs, symbols and blanks are left out. Chunks are scored with BM25 (the Lucene variant,
the formula bm25s calls ``lucene``; the tests check our scores against bm25s itself).

The index is a cache of what Chroma holds: it remembers which version of each document it was
built from, is saved beside the store, and ``sync`` brings it up to date from Chroma whenever the
live versions differ (another process wrote, the file was deleted or is stale). Scores are computed
at query time from term counts, so adding or removing one document costs only that document's
tokens, not a rebuild of the whole collection.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse

from pipelines.errors import CollectionNotFoundError

# Parts of speech that carry no topic: particles, auxiliary verbs, symbols, blanks.
SKIPPED_POS = frozenset({"助詞", "助動詞", "補助記号", "記号", "空白"})
# Sudachi refuses inputs over about 49,000 bytes; questions and chunks are far shorter, but a
# document-sized text is cut into pieces of this many characters.
_PIECE = 8000
_FORMAT = 1


class Analyzer(Protocol):
    """Cuts Japanese text into the words that keyword search indexes."""

    name: str

    def words(self, text: str) -> list[str]: ...


class SudachiAnalyzer:
    """Sudachi (sudachidict-core): normalised forms of content words."""

    def __init__(self, mode: str = "B") -> None:
        from importlib.metadata import version

        from sudachipy import Dictionary, SplitMode

        self._tokenizer = Dictionary(dict="core").tokenizer(mode=getattr(SplitMode, mode))
        self._lock = threading.Lock()  # one Sudachi tokenizer is not safe to share between threads
        self.name = f"sudachi-{version('sudachipy')}-core-{version('sudachidict-core')}-{mode}"

    def words(self, text: str) -> list[str]:
        """The indexed words of ``text``, in order, repeats kept (BM25 counts them)."""
        found: list[str] = []
        with self._lock:
            for begin in range(0, len(text), _PIECE):
                for morpheme in self._tokenizer.tokenize(text[begin : begin + _PIECE]):
                    if morpheme.part_of_speech()[0] in SKIPPED_POS:
                        continue
                    word = morpheme.normalized_form().lower()
                    if word.strip():
                        found.append(word)
        return found


@dataclass(frozen=True)
class KeywordHit:
    """A chunk found by keyword search: its record id, BM25 score and rank in the keyword list."""

    chunk_id: str
    score: float
    rank: int


@dataclass(frozen=True)
class KeywordResult:
    """The keyword list for one question, and the BM25 score of any other chunk on request."""

    hits: list[KeywordHit]
    words: list[str]
    _scores: np.ndarray
    _rows: Mapping[str, int]

    def score(self, chunk_id: str) -> float:
        """BM25 score of a chunk for the question (0 when it shares no word with it)."""
        row = self._rows.get(chunk_id)
        return float(self._scores[row]) if row is not None and row < len(self._scores) else 0.0


class ChunkSource(Protocol):
    """What the index needs from the store to bring itself up to date."""

    def changes(self) -> str: ...

    def live_versions(self) -> dict[str, str]: ...

    def chunk_texts(self, source: str, version: str) -> list[tuple[str, str]]: ...


@dataclass
class _Document:
    version: str
    rows: list[int]


class KeywordIndex:
    """BM25 over chunk words, kept in step with the store's live document versions."""

    def __init__(self, analyzer: Analyzer, path: Path | None = None, k1: float = 1.5, b: float = 0.75) -> None:
        self.analyzer = analyzer
        self.path = path
        self.k1 = k1
        self.b = b
        self._lock = threading.RLock()
        self._vocab: dict[str, int] = {}
        self._row_ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._row_words: list[np.ndarray] = []
        self._alive: list[bool] = []
        self._documents: dict[str, _Document] = {}
        self._matrix: Any = None  # rows × vocabulary term counts (CSC), built when first needed
        self._loaded_mtime: float | None = None
        self._synced: str | None = None  # the store's change token when this index last matched it
        self._retired = ""  # why the index may no longer be saved: its collection was deleted
        if path is not None:
            self._load()

    # Contents ----------------------------------------------------------------------------------

    @property
    def versions(self) -> dict[str, str]:
        """The document versions this index holds, by source."""
        with self._lock:
            return {source: doc.version for source, doc in self._documents.items()}

    def __len__(self) -> int:
        with self._lock:
            return sum(len(doc.rows) for doc in self._documents.values())

    def add_document(self, source: str, version: str, chunks: Sequence[tuple[str, str]]) -> None:
        """Index one document version (``(chunk_id, text)`` pairs), replacing what the source had."""
        words = [self._word_ids(self.analyzer.words(text)) for _, text in chunks]
        with self._lock:
            self._drop(source)
            first = len(self._row_ids)
            self._row_ids.extend(chunk_id for chunk_id, _ in chunks)
            self._row_of.update((chunk_id, first + i) for i, (chunk_id, _) in enumerate(chunks))
            self._row_words.extend(words)
            self._alive.extend([True] * len(chunks))
            self._documents[source] = _Document(version, list(range(first, first + len(chunks))))
            self._matrix = None

    def remove_document(self, source: str) -> None:
        """Forget a document."""
        with self._lock:
            self._drop(source)
            self._matrix = None

    def _drop(self, source: str) -> None:
        old = self._documents.pop(source, None)
        if old is not None:
            for row in old.rows:
                self._alive[row] = False

    def _word_ids(self, words: Iterable[str]) -> np.ndarray:
        with self._lock:
            return np.fromiter((self._vocab.setdefault(w, len(self._vocab)) for w in words), dtype=np.int32)

    # Keeping in step with the store -------------------------------------------------------------

    def sync(self, store: ChunkSource) -> bool:
        """Bring the index to the store's live versions; True when anything changed.

        First the saved file is re-read if another process has written it since, then documents
        that are still missing or stale are read from the store and analysed.
        """
        token = store.changes()
        if token and token == self._synced:
            return False  # nothing committed or deleted since: no need to read the registry
        live = store.live_versions()
        with self._lock:
            if live == self.versions:
                self._synced = token
                return False
            if self.path is not None and self._file_changed():
                self._load()
            for source in set(self._documents) - set(live):
                self._drop(source)
            todo = [(s, v) for s, v in live.items() if self._documents.get(s, _Document("", [])).version != v]
        for source, version in todo:
            self.add_document(source, version, store.chunk_texts(source, version))
        with self._lock:
            self._matrix = None
            self.save()
            self._synced = token
        return True

    # Scoring -----------------------------------------------------------------------------------

    def _build(self) -> Any:
        if self._matrix is None:
            rows = [i for i, alive in enumerate(self._alive) if alive]
            if len(rows) < len(self._alive) // 2:
                self._compact()
                rows = list(range(len(self._alive)))
            counts = [len(self._row_words[r]) for r in rows]
            words = np.concatenate([self._row_words[r] for r in rows]) if rows else np.zeros(0, np.int32)
            row_of = np.repeat(np.asarray(rows, dtype=np.int64), counts)
            matrix = scipy.sparse.coo_matrix(
                (np.ones(len(words), dtype=np.float32), (row_of, words)),
                shape=(len(self._alive), max(len(self._vocab), 1)),
            ).tocsc()
            matrix.sum_duplicates()
            lengths = np.zeros(len(self._alive), dtype=np.float32)
            lengths[rows] = counts
            self._lengths = lengths
            self._alive_count = len(rows)
            self._average = float(np.mean(counts)) if counts else 1.0
            self._matrix = matrix
        return self._matrix

    def _compact(self) -> None:
        """Drop the rows of removed documents for good (renumbering the live ones)."""
        keep = [i for i, alive in enumerate(self._alive) if alive]
        new_index = {old: new for new, old in enumerate(keep)}
        self._row_ids = [self._row_ids[i] for i in keep]
        self._row_of = {chunk_id: i for i, chunk_id in enumerate(self._row_ids)}  # a new dict: results keep theirs
        self._row_words = [self._row_words[i] for i in keep]
        self._alive = [True] * len(keep)
        for doc in self._documents.values():
            doc.rows = [new_index[r] for r in doc.rows]

    def query_words(self, question: str) -> list[str]:
        """The question's indexed words, each once."""
        return list(dict.fromkeys(self.analyzer.words(question)))

    def search(self, question: str, n: int, sources: Sequence[str] | None = None) -> KeywordResult:
        """The ``n`` best-scoring chunks that share at least one word with the question (in
        ``sources`` only, when given), and every other chunk's score on request."""
        words = self.query_words(question)
        with self._lock:
            matrix = self._build()
            scores = np.zeros(matrix.shape[0], dtype=np.float32)
            ids = [self._vocab[w] for w in words if w in self._vocab]
            if ids and self._alive_count:
                block = matrix[:, ids].tocoo()
                df = np.diff(matrix.indptr)[ids].astype(np.float64)
                n_rows = self._alive_count
                idf = np.log(1.0 + (n_rows - df + 0.5) / (df + 0.5))
                tf = block.data
                norm = self.k1 * (1.0 - self.b + self.b * self._lengths[block.row] / self._average)
                np.add.at(scores, block.row, (idf[block.col] * tf / (tf + norm)).astype(np.float32))
            candidates = scores
            if sources is not None:
                mask = np.zeros(len(scores), dtype=bool)
                for source in sources:
                    doc = self._documents.get(source)
                    if doc is not None:
                        mask[doc.rows] = True
                candidates = np.where(mask, scores, 0.0)
            row_ids, rows = self._row_ids, self._row_of
        matched = np.flatnonzero(candidates > 0)
        if len(matched) > n:
            matched = matched[np.argpartition(-candidates[matched], n - 1)[:n]]
        # best first; equal scores by position, so the order never depends on the partition
        order = matched[np.lexsort((matched, -candidates[matched]))]
        hits = [KeywordHit(row_ids[i], float(candidates[i]), rank) for rank, i in enumerate(order, 1)]
        return KeywordResult(hits, words, scores, rows)

    # Persistence ---------------------------------------------------------------------------------

    def retire(self, reason: str) -> None:
        """The collection is being deleted: from now on ``save`` refuses (``CollectionNotFoundError(reason)``).

        A writer or a search that still holds this index would otherwise write its file again after
        the delete removed it.
        """
        with self._lock:
            self._retired = reason

    def save(self) -> None:
        """Write the index beside the store (one file, replaced atomically); refused once ``retire``d."""
        if self.path is None:
            return
        with self._lock:
            if self._retired:
                raise CollectionNotFoundError(self._retired)
            self._compact()
            self._matrix = None
            state = {
                "format": _FORMAT,
                "analyzer": self.analyzer.name,
                "vocab": list(self._vocab),
                "row_ids": self._row_ids,
                "documents": {
                    s: [d.version, d.rows[0] if d.rows else 0, len(d.rows)] for s, d in self._documents.items()
                },
            }
            lengths = np.asarray([len(w) for w in self._row_words], dtype=np.int64)
            words = np.concatenate(self._row_words) if self._row_words else np.zeros(0, np.int32)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + f".{os.getpid()}.partial")
            with partial.open("wb") as handle:
                np.savez(
                    handle,
                    state=np.frombuffer(json.dumps(state, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
                    lengths=lengths,
                    words=words,
                )
            os.replace(partial, self.path)
            self._loaded_mtime = self.path.stat().st_mtime

    def _file_changed(self) -> bool:
        assert self.path is not None
        try:
            return self.path.stat().st_mtime != self._loaded_mtime
        except FileNotFoundError:
            return False

    def _load(self) -> None:
        """Read the saved index; a missing, unreadable or foreign file leaves the index empty (sync refills it)."""
        assert self.path is not None
        self._vocab, self._row_ids, self._row_of = {}, [], {}
        self._row_words, self._alive, self._documents = [], [], {}
        self._matrix = None
        try:
            with np.load(self.path) as saved:
                state = json.loads(saved["state"].tobytes().decode("utf-8"))
                lengths = saved["lengths"]
                words = saved["words"]
            mtime = self.path.stat().st_mtime
        except (OSError, ValueError, KeyError, UnicodeDecodeError):
            return
        if state.get("format") != _FORMAT or state.get("analyzer") != self.analyzer.name:
            return
        if len(state["row_ids"]) != len(lengths) or int(lengths.sum()) != len(words):
            return
        self._vocab = {w: i for i, w in enumerate(state["vocab"])}
        self._row_ids = list(state["row_ids"])
        self._row_of = {chunk_id: i for i, chunk_id in enumerate(self._row_ids)}
        self._row_words = list(np.split(words.astype(np.int32), np.cumsum(lengths)[:-1])) if len(lengths) else []
        self._alive = [True] * len(self._row_ids)
        self._documents = {
            source: _Document(version, list(range(first, first + count)))
            for source, (version, first, count) in state["documents"].items()
        }
        self._loaded_mtime = mtime
