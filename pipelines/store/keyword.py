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

It is kept in two parts, so that a million chunks load in a moment and a changed document costs
only itself. The *base* is a folder of arrays written once (the term counts as a CSC matrix, the
chunks' lengths, their record ids as one UTF-8 blob with a sorted hash table to find them) and read
with ``mmap``: a process opens it without reading it, and the kernel shares its pages between the
processes that search it. The *delta* holds the documents added since, word ids per chunk, in
memory; a removed or replaced document of the base is only masked. The file at ``path`` (small,
replaced atomically) names the base folder and holds the delta and the masked documents; once the
delta passes ``merge_rows`` chunks (or half the base is masked), a save writes a new base with
everything, merged outside the lock while searches go on, and the old folder goes (the one before it
is kept for a process still opening it). A
save killed at any point leaves the previous file and the base it names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
_FORMAT = 2  # 1: one file with every chunk's word ids (read still, as a delta, and saved as a base)
MERGE_ROWS = 50_000  # delta chunks past which a save (or search) folds the delta into a new base
_BASE_ARRAYS = ("indptr", "rows", "counts", "lengths", "id_blob", "id_offsets", "id_hashes", "id_order")


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
    first: int  # its chunks are rows first .. first + count - 1 (of the base when below its row count)
    count: int


def _id_hash(chunk_id: str) -> int:
    """A record id's 64-bit digest (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(chunk_id.encode("utf-8"), digest_size=8).digest(), "little")


class _Base:
    """The saved part of an index: term counts (rows × words, CSC), lengths and record ids, never changed.

    Read from its folder with ``mmap`` (nothing is read until a search touches it), or held in memory
    when just merged and not saved yet (``folder`` None).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], vocab: list[str], documents: dict[str, _Document]) -> None:
        self.arrays = arrays
        self.vocab = vocab
        self.documents = documents
        self.folder: Path | None = None
        self.rows = len(arrays["lengths"])

    @classmethod
    def build(
        cls,
        matrix: Any,
        lengths: np.ndarray,
        ids: tuple[np.ndarray, np.ndarray, np.ndarray],
        vocab: list[str],
        documents: dict[str, _Document],
    ) -> _Base:
        """A base from a CSC matrix of term counts, the rows' lengths and record ids (``(blob, offsets,
        each row's hash)``: ``_id_arrays``)."""
        blob, offsets, hashes = ids
        order = np.argsort(hashes, kind="stable")
        arrays: dict[str, np.ndarray] = {
            "indptr": np.asarray(matrix.indptr, dtype=np.int64),
            "rows": np.asarray(matrix.indices, dtype=np.int32),
            "counts": np.asarray(matrix.data, dtype=np.float32),
            "lengths": np.asarray(lengths, dtype=np.float32),
            "id_blob": blob,
            "id_offsets": offsets,
            "id_hashes": hashes[order],
            "id_order": order.astype(np.int64),
        }
        return cls(arrays, vocab, documents)

    def id_arrays(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The record ids of rows ``keep`` as ``_id_arrays`` gives them, without decoding them."""
        offsets = np.asarray(self.arrays["id_offsets"])
        sizes = np.diff(offsets)
        blob = np.asarray(self.arrays["id_blob"])[np.repeat(self._alive_mask(keep), sizes)]
        kept = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(sizes[keep], out=kept[1:])
        by_row = np.empty(self.rows, dtype=np.uint64)
        by_row[np.asarray(self.arrays["id_order"])] = self.arrays["id_hashes"]
        return blob, kept, by_row[keep]

    def _alive_mask(self, keep: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.rows, dtype=bool)
        mask[keep] = True
        return mask

    @classmethod
    def open(cls, folder: Path, analyzer: str) -> _Base | None:
        """The base saved in ``folder``; None when it is missing, damaged or another analyser's."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if meta.get("format") != _FORMAT or meta.get("analyzer") != analyzer:
                return None
            # plain arrays over the mapping: numpy's memmap subclass slows every operation on its slices
            arrays = {name: np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r")) for name in _BASE_ARRAYS}
        except (OSError, ValueError, KeyError, UnicodeDecodeError):
            return None
        documents = {s: _Document(v, first, count) for s, (v, first, count) in meta["documents"].items()}
        rows = len(arrays["lengths"])
        consistent = (
            len(arrays["indptr"]) == len(meta["vocab"]) + 1
            and len(arrays["id_offsets"]) == rows + 1
            and len(arrays["id_hashes"]) == rows == len(arrays["id_order"])
            and int(arrays["indptr"][-1]) == len(arrays["rows"]) == len(arrays["counts"])
            and sum(d.count for d in documents.values()) == rows
        )
        if not consistent:
            return None
        base = cls(arrays, list(meta["vocab"]), documents)
        base.folder = folder
        return base

    def save(self, folder: Path, analyzer: str) -> None:
        """Write the base into ``folder`` (made under another name, then renamed: never seen half written)."""
        partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in _BASE_ARRAYS:
            np.save(partial / f"{name}.npy", np.asarray(self.arrays[name]))
        meta = {
            "format": _FORMAT,
            "analyzer": analyzer,
            "vocab": self.vocab,
            "documents": {s: [d.version, d.first, d.count] for s, d in self.documents.items()},
        }
        (partial / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        for child in partial.iterdir():  # on the disk before the file that names the folder is replaced
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
        partial.rename(folder)
        self.folder = folder

    @property
    def words(self) -> int:
        return len(self.arrays["indptr"]) - 1

    def postings(self, word: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding word ``word`` and its count in each."""
        if word >= self.words:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        indptr = self.arrays["indptr"]
        begin, end = int(indptr[word]), int(indptr[word + 1])
        return self.arrays["rows"][begin:end], self.arrays["counts"][begin:end]

    def matrix(self) -> Any:
        """The term counts as a scipy CSC matrix (over the mapped arrays)."""
        a = self.arrays
        return scipy.sparse.csc_matrix((a["counts"], a["rows"], a["indptr"]), shape=(self.rows, self.words))

    def row_id(self, row: int) -> str:
        offsets = self.arrays["id_offsets"]
        return bytes(self.arrays["id_blob"][int(offsets[row]) : int(offsets[row + 1])]).decode("utf-8")

    def find(self, chunk_id: str) -> int | None:
        """The row of a record id, if the base holds it."""
        hashes, order = self.arrays["id_hashes"], self.arrays["id_order"]
        wanted = np.uint64(_id_hash(chunk_id))
        at = int(np.searchsorted(hashes, wanted))
        while at < len(hashes) and hashes[at] == wanted:
            row = int(order[at])
            if self.row_id(row) == chunk_id:
                return row
            at += 1
        return None


def _id_arrays(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Record ids as one UTF-8 blob, the offsets of each in it, and each one's ``_id_hash``."""
    encoded = [i.encode("utf-8") for i in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    hashes = np.fromiter((_id_hash(i) for i in ids), dtype=np.uint64, count=len(ids))
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets, hashes


class _Rows(Mapping[str, int]):
    """Record id → row, over the base's hash table and the delta's dict (the delta's rows are newer)."""

    def __init__(self, base: _Base | None, delta: Mapping[str, int]) -> None:
        self._base = base
        self._delta = delta

    def __getitem__(self, chunk_id: str) -> int:
        row = self._delta.get(chunk_id)
        if row is None and self._base is not None:
            row = self._base.find(chunk_id)
        if row is None:
            raise KeyError(chunk_id)
        return row

    def __iter__(self) -> Iterator[str]:
        if self._base is not None:
            yield from (self._base.row_id(r) for r in range(self._base.rows))
        yield from self._delta

    def __len__(self) -> int:
        return (self._base.rows if self._base is not None else 0) + len(self._delta)


@dataclass
class _Snapshot:
    """An index's state as a merge reads it: taken under the lock, merged outside it."""

    base: _Base | None
    base_alive: np.ndarray
    alive: list[bool]
    row_words: list[np.ndarray]
    row_ids: list[str]
    vocab: list[str]
    documents: dict[str, _Document]


def _term_counts(row_words: Sequence[np.ndarray], vocab_size: int, rows: Sequence[int]) -> tuple[Any, np.ndarray]:
    """Term counts (CSC, one row per entry of ``row_words``, those not in ``rows`` empty) and their lengths."""
    counts = [len(row_words[r]) for r in rows]
    words = np.concatenate([row_words[r] for r in rows]) if rows else np.zeros(0, np.int32)
    row_of = np.repeat(np.asarray(rows, dtype=np.int64), counts)
    matrix = scipy.sparse.coo_matrix(
        (np.ones(len(words), dtype=np.float32), (row_of, words)),
        shape=(len(row_words), max(vocab_size, 1)),
    ).tocsc()
    matrix.sum_duplicates()
    lengths = np.zeros(len(row_words), dtype=np.float32)
    lengths[list(rows)] = counts
    return matrix, lengths


def _merged(state: _Snapshot) -> _Base:
    """A new base of the live base rows and the live delta rows of ``state`` (held in memory).

    The term counts are put together as coordinates, the base's first (its rows in order) and the
    delta's after, so the CSC matrix comes out sorted and is built in one pass.
    """
    live = [i for i, alive in enumerate(state.alive) if alive]
    base_rows = len(state.base_alive)
    keep = np.flatnonzero(state.base_alive)
    rows, cols, data, lengths = [], [], [], []
    blob, offsets, hashes = _id_arrays([state.row_ids[r] for r in live])
    if state.base is not None:
        base = state.base.arrays
        indptr = np.asarray(base["indptr"])
        old_rows, old_data = np.asarray(base["rows"]), np.asarray(base["counts"])
        old_cols = np.repeat(np.arange(state.base.words, dtype=np.int32), np.diff(indptr))
        if len(keep) < base_rows:
            kept = state.base_alive[old_rows]
            old_rows, old_cols, old_data = old_rows[kept], old_cols[kept], old_data[kept]
            old_rows = (np.cumsum(state.base_alive) - 1)[old_rows]
        rows.append(old_rows.astype(np.int64))
        cols.append(old_cols)
        data.append(old_data)
        lengths.append(np.asarray(base["lengths"])[keep])
        old_blob, old_offsets, old_hashes = state.base.id_arrays(keep)
        blob = np.concatenate([old_blob, blob])
        offsets = np.concatenate([old_offsets, old_offsets[-1] + offsets[1:]])
        hashes = np.concatenate([old_hashes, hashes])
    delta, delta_lengths = _term_counts(state.row_words, len(state.vocab), live)
    delta = delta.tocoo()
    rows.append(np.searchsorted(live, delta.row).astype(np.int64) + len(keep))  # live rows renumbered from 0
    cols.append(delta.col.astype(np.int32))
    data.append(delta.data)
    lengths.append(delta_lengths[live])
    matrix = scipy.sparse.coo_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(keep) + len(live), len(state.vocab)),
    ).tocsc()
    # every document's rows renumbered: the base's in order, then the delta's
    new_base = np.cumsum(state.base_alive) - 1
    new_delta = np.cumsum(np.asarray(state.alive, dtype=bool)) - 1 + len(keep)
    documents = {}
    for source, doc in state.documents.items():
        first = int(new_base[doc.first]) if doc.first < base_rows else int(new_delta[doc.first - base_rows])
        documents[source] = _Document(doc.version, first, doc.count)
    return _Base.build(matrix, np.concatenate(lengths), (blob, offsets, hashes), state.vocab, documents)


class KeywordIndex:
    """BM25 over chunk words, kept in step with the store's live document versions."""

    def __init__(
        self,
        analyzer: Analyzer,
        path: Path | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        merge_rows: int = MERGE_ROWS,
    ) -> None:
        self.analyzer = analyzer
        self.path = path
        self.k1 = k1
        self.b = b
        self.merge_rows = merge_rows
        self._lock = threading.RLock()
        self._vocab: dict[str, int] = {}
        self._documents: dict[str, _Document] = {}
        self._changes = 0  # counts changes, so that a merge done outside the lock knows whether it still holds
        self._clear()
        self._loaded: tuple[int, int] | None = None  # the saved file's (inode, mtime) when read or written
        self._synced: str | None = None  # the store's change token when this index last matched it
        self._retired = ""  # why the index may no longer be saved: its collection was deleted
        if path is not None:
            self._load()

    def _clear(self, base: _Base | None = None) -> None:
        """Hold ``base`` (or nothing) and an empty delta."""
        self._changes += 1
        self._base = base
        self._base_rows = base.rows if base is not None else 0
        self._base_alive = np.ones(self._base_rows, dtype=bool)
        self._base_live_rows = self._base_rows
        self._base_length = float(base.arrays["lengths"].sum(dtype=np.float64)) if base is not None else 0.0
        self._vocab = {w: i for i, w in enumerate(base.vocab)} if base is not None else {}
        self._documents = (
            {s: _Document(d.version, d.first, d.count) for s, d in base.documents.items()} if base is not None else {}
        )
        # the delta: documents since the base, rows numbered on from the base's
        self._row_ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._row_words: list[np.ndarray] = []
        self._alive: list[bool] = []
        self._delta: Any = None  # the delta's live rows × vocabulary term counts (CSC), built when first needed

    # Contents ----------------------------------------------------------------------------------

    @property
    def versions(self) -> dict[str, str]:
        """The document versions this index holds, by source."""
        with self._lock:
            return {source: doc.version for source, doc in self._documents.items()}

    def __len__(self) -> int:
        with self._lock:
            return sum(doc.count for doc in self._documents.values())

    def add_document(self, source: str, version: str, chunks: Sequence[tuple[str, str]]) -> None:
        """Index one document version (``(chunk_id, text)`` pairs), replacing what the source had."""
        words = [self._word_ids(self.analyzer.words(text)) for _, text in chunks]
        with self._lock:
            self._drop(source)
            first = self._base_rows + len(self._row_ids)
            self._row_ids.extend(chunk_id for chunk_id, _ in chunks)
            self._row_of.update((chunk_id, first + i) for i, (chunk_id, _) in enumerate(chunks))
            self._row_words.extend(words)
            self._alive.extend([True] * len(chunks))
            self._documents[source] = _Document(version, first, len(chunks))
            self._delta = None
            self._changes += 1

    def remove_document(self, source: str) -> None:
        """Forget a document."""
        with self._lock:
            self._drop(source)

    def _drop(self, source: str) -> None:
        old = self._documents.pop(source, None)
        if old is None:
            return
        self._changes += 1
        if old.first < self._base_rows:
            assert self._base is not None
            self._base_alive[old.first : old.first + old.count] = False
            self._base_live_rows -= old.count
            lengths = self._base.arrays["lengths"][old.first : old.first + old.count]
            self._base_length -= float(lengths.sum(dtype=np.float64))
        else:
            local = old.first - self._base_rows
            self._alive[local : local + old.count] = [False] * old.count
            self._delta = None

    def _word_ids(self, words: Iterable[str]) -> np.ndarray:
        with self._lock:
            self._changes += 1  # new words: a merge that started before must not drop them
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
            todo = [(s, v) for s, v in live.items() if s not in self._documents or self._documents[s].version != v]
        for source, version in todo:
            self.add_document(source, version, store.chunk_texts(source, version))
        with self._lock:
            self.save()
            self._synced = token
        return True

    # Scoring -----------------------------------------------------------------------------------

    def _merge_due(self) -> bool:
        live_delta = sum(self._alive)
        return live_delta >= self.merge_rows or (self._base_rows > 0 and self._base_live_rows < self._base_rows // 2)

    def _delta_matrix(self) -> Any:
        """The delta's term counts (rows numbered from 0), its live rows only.

        An index without a file folds a due delta into a new base here; one with a file does in ``save``
        (outside the lock, so a search never waits for a merge).
        """
        if self.path is None and self._merge_due():
            self._merge()
        if self._delta is None:
            rows = [i for i, alive in enumerate(self._alive) if alive]
            self._delta, self._delta_lengths = self._counts(rows)
        return self._delta

    def _counts(self, rows: Sequence[int]) -> tuple[Any, np.ndarray]:
        """Term counts (CSC, one row per delta row, those not in ``rows`` empty) and lengths of delta rows."""
        return _term_counts(self._row_words, len(self._vocab), rows)

    def _merge(self) -> None:
        """Fold the live base rows and the delta into a new base (in memory; ``save`` writes it)."""
        self._clear(_merged(self._snapshot()))

    def _snapshot(self) -> _Snapshot:
        """What a merge reads, copied (cheaply: the delta's arrays are shared, never changed in place)."""
        return _Snapshot(
            self._base,
            self._base_alive.copy(),
            list(self._alive),
            list(self._row_words),
            list(self._row_ids),
            list(self._vocab),
            {s: _Document(d.version, d.first, d.count) for s, d in self._documents.items()},
        )

    def query_words(self, question: str) -> list[str]:
        """The question's indexed words, each once."""
        return list(dict.fromkeys(self.analyzer.words(question)))

    def search(self, question: str, n: int, sources: Sequence[str] | None = None) -> KeywordResult:
        """The ``n`` best-scoring chunks that share at least one word with the question (in
        ``sources`` only, when given), and every other chunk's score on request."""
        words = self.query_words(question)
        with self._lock:
            delta = self._delta_matrix()
            base, offset = self._base, self._base_rows
            scores = np.zeros(offset + delta.shape[0], dtype=np.float32)
            live = self._base_live_rows + sum(self._alive)
            ids = [self._vocab[w] for w in words if w in self._vocab]
            if ids and live:
                average = (self._base_length + float(self._delta_lengths.sum(dtype=np.float64))) / live
                masked = self._base_live_rows < self._base_rows
                rows: list[np.ndarray] = []
                tfs: list[np.ndarray] = []
                lengths: list[np.ndarray] = []
                idfs: list[float] = []
                dfs: list[int] = []
                for word in ids:
                    found, tf = base.postings(word) if base is not None else (np.zeros(0, np.int32), np.zeros(0))
                    if masked and len(found):
                        keep = self._base_alive[found]
                        found, tf = found[keep], tf[keep]
                    begin, end = delta.indptr[word], delta.indptr[word + 1]
                    extra = delta.indices[begin:end]
                    df = len(found) + len(extra)
                    if not df:
                        continue
                    if len(found):
                        rows.append(found)
                        tfs.append(tf)
                        lengths.append(base.arrays["lengths"][found])  # type: ignore[union-attr]
                    if len(extra):
                        rows.append(extra + offset)
                        tfs.append(delta.data[begin:end])
                        lengths.append(self._delta_lengths[extra])
                    idfs.append(float(np.log(1.0 + (live - df + 0.5) / (df + 0.5))))
                    dfs.append(df)
                if rows:
                    tf = np.concatenate(tfs)
                    norm = self.k1 * (1.0 - self.b + self.b * np.concatenate(lengths) / average)
                    parts = (np.repeat(np.asarray(idfs), dfs) * tf / (tf + norm)).astype(np.float32)
                    # each word's part, summed per chunk in one pass (a chunk appears once per word)
                    scores = np.bincount(np.concatenate(rows), weights=parts, minlength=len(scores)).astype(np.float32)
            candidates = scores
            if sources is not None:
                mask = np.zeros(len(scores), dtype=bool)
                for source in sources:
                    doc = self._documents.get(source)
                    if doc is not None:
                        mask[doc.first : doc.first + doc.count] = True
                candidates = np.where(mask, scores, 0.0)
            row_of = _Rows(base, self._row_of)
            row_ids = self._row_ids
        matched = np.flatnonzero(candidates > 0)
        if len(matched) > n:
            matched = matched[np.argpartition(-candidates[matched], n - 1)[:n]]
        # best first; equal scores by position, so the order never depends on the partition
        order = matched[np.lexsort((matched, -candidates[matched]))]
        hits = [
            KeywordHit(base.row_id(int(i)) if i < offset else row_ids[i - offset], float(candidates[i]), rank)  # type: ignore[union-attr]
            for rank, i in enumerate(order, 1)
        ]
        return KeywordResult(hits, words, scores, row_of)

    # Persistence ---------------------------------------------------------------------------------

    def retire(self, reason: str) -> None:
        """The collection is being deleted: from now on ``save`` refuses (``CollectionNotFoundError(reason)``).

        A writer or a search that still holds this index would otherwise write its file again after
        the delete removed it.
        """
        with self._lock:
            self._retired = reason

    def save(self) -> None:
        """Write the index beside the store: a new base folder when the delta is due to be merged, then the
        small file that names it and holds the delta (replaced atomically); refused once ``retire``d."""
        if self.path is None:
            return
        with self._lock:
            if self._retired:
                raise CollectionNotFoundError(self._retired)
            base = self._base
            unsaved = base is not None and base.folder is None  # merged by a search, changed since perhaps
            due = self._merge_due() or (unsaved and (self._row_ids or self._base_live_rows < self._base_rows))
            snapshot, changes = (self._snapshot(), self._changes) if due else (None, 0)
        if snapshot is not None:
            # the merge and the new base's files outside the lock: searches go on over the old base meanwhile
            merged = _merged(snapshot)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            folder = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:12]}.base")
            merged.save(folder, self.analyzer.name)
            merged = _Base.open(folder, self.analyzer.name) or merged
        with self._lock:
            if self._retired:
                if snapshot is not None:
                    shutil.rmtree(folder, ignore_errors=True)  # its collection was deleted meanwhile
                raise CollectionNotFoundError(self._retired)
            if snapshot is not None:
                if self._changes == changes:
                    self._clear(merged)
                else:  # changed while merging (another thread): merge again, under the lock this time
                    self._merge()
            self._compact()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            base = self._base
            if base is not None and base.folder is None:
                folder = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:12]}.base")
                base.save(folder, self.analyzer.name)
                self._clear(_Base.open(folder, self.analyzer.name) or base)  # just merged: nothing masked, no delta
                base = self._base
            in_base = set(base.documents) if base is not None else set()
            state = {
                "format": _FORMAT,
                "analyzer": self.analyzer.name,
                "base": base.folder.name if base is not None and base.folder is not None else "",
                # words the base does not have, in order after its own
                "vocab": list(self._vocab)[len(base.vocab) if base is not None else 0 :],
                "row_ids": self._row_ids,
                "documents": {
                    s: [d.version, d.first - self._base_rows, d.count]
                    for s, d in self._documents.items()
                    if d.first >= self._base_rows
                },
                "masked": sorted(
                    s for s in in_base if s not in self._documents or self._documents[s].first >= self._base_rows
                ),
            }
            lengths = np.asarray([len(w) for w in self._row_words], dtype=np.int64)
            words = np.concatenate(self._row_words) if self._row_words else np.zeros(0, np.int32)
            partial = self.path.with_name(self.path.name + f".{os.getpid()}.partial")
            with partial.open("wb") as handle:
                np.savez(
                    handle,
                    state=np.frombuffer(json.dumps(state, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
                    lengths=lengths,
                    words=words,
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.path)
            self._loaded = self._identity()
            self._remove_old_bases(keep=2)

    def _compact(self) -> None:
        """Drop the delta rows of removed documents for good (renumbering the live ones)."""
        keep = [i for i, alive in enumerate(self._alive) if alive]
        if len(keep) == len(self._alive):
            return
        new_index = {old: new for new, old in enumerate(keep)}
        offset = self._base_rows
        self._row_ids = [self._row_ids[i] for i in keep]  # new lists and dict: results keep theirs
        self._row_of = {chunk_id: offset + i for i, chunk_id in enumerate(self._row_ids)}
        self._row_words = [self._row_words[i] for i in keep]
        self._alive = [True] * len(keep)
        for doc in self._documents.values():
            if doc.first >= offset:
                doc.first = offset + new_index[doc.first - offset]
        self._delta = None

    def _remove_old_bases(self, keep: int) -> None:
        """Delete base folders but the ``keep`` newest (a process that read the previous file may still be opening its base)."""
        assert self.path is not None
        folders = sorted(self.path.parent.glob(f"{self.path.name}.*.base"), key=lambda f: f.stat().st_mtime_ns)
        current = self._base.folder if self._base is not None else None
        for folder in folders[:-keep] if keep else folders:
            if folder != current:
                shutil.rmtree(folder, ignore_errors=True)

    def _identity(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_mtime_ns

    def _file_changed(self) -> bool:
        identity = self._identity()
        return identity is not None and identity != self._loaded

    def _load(self) -> None:
        """Read the saved index; a missing, unreadable or foreign file leaves the index empty (sync refills it)."""
        assert self.path is not None
        for _ in range(2):  # a base removed between reading the file and opening it: the file is new, read it again
            identity = self._identity()
            loaded = self._read()
            if loaded is not None or self._identity() == identity:
                break
        if loaded is None:
            self._clear()
        self._loaded = identity

    def _read(self) -> bool | None:
        """Hold what the saved file says; None (and nothing changed) when it cannot be read."""
        assert self.path is not None
        try:
            with np.load(self.path) as saved:
                state = json.loads(saved["state"].tobytes().decode("utf-8"))
                lengths = saved["lengths"]
                words = saved["words"]
        except (OSError, ValueError, KeyError, UnicodeDecodeError, EOFError):
            return None
        if state.get("format") not in (1, _FORMAT) or state.get("analyzer") != self.analyzer.name:
            return None
        if len(state["row_ids"]) != len(lengths) or int(lengths.sum()) != len(words):
            return None
        base = None
        if state.get("base"):
            current = self._base
            if current is not None and current.folder is not None and current.folder.name == state["base"]:
                base = current  # already mapped
            else:
                base = _Base.open(self.path.with_name(state["base"]), self.analyzer.name)
            if base is None:
                return None
        self._clear(base)
        for word in state["vocab"]:
            self._vocab.setdefault(word, len(self._vocab))
        for source in state.get("masked", []):
            self._drop(source)
        offset = self._base_rows
        self._row_ids = list(state["row_ids"])
        self._row_of = {chunk_id: offset + i for i, chunk_id in enumerate(self._row_ids)}
        self._row_words = list(np.split(words.astype(np.int32), np.cumsum(lengths)[:-1])) if len(lengths) else []
        self._alive = [True] * len(self._row_ids)
        for source, (version, first, count) in state["documents"].items():
            self._documents[source] = _Document(version, offset + first, count)
        return True


def remove_files(path: Path) -> None:
    """Delete a keyword index's file and its base folders (its collection is deleted)."""
    path.unlink(missing_ok=True)
    for folder in path.parent.glob(f"{path.name}.*.base"):
        shutil.rmtree(folder, ignore_errors=True)
