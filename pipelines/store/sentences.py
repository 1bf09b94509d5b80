"""Each stored passage's sentences as vectors, kept beside the store: what a hit's best sentence is found with.

One SQLite file (``RAG_DATA_DIR/sentences.sqlite3``) for every collection, keyed by the embedding
model and the digest of the text that was embedded (a chunk's ``text_hash``), so the same text has
its sentences once, whichever document or collection holds it, and a row is never wrong: at worst
it is no one's any more. Each row holds the sentences' spans in the chunk's text (to check that they
are still cut the same way) and their unit vectors quantized to int8 (one byte per dimension: 768
bytes a sentence for GLuCoSE), normalised again when read, since only their directions are compared.

The indexer writes a document's rows before its chunks become visible; a chunk without a row (a
store built before this file, a path that gives no token states, a file lost) gets its sentences
embedded alone when first needed, and that row is written then.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import StoreError

FILE_NAME = "sentences.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sentences (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    spans TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vectors BLOB NOT NULL,
    pooled INTEGER NOT NULL,
    UNIQUE (model, text_hash)
)
"""


@dataclass(frozen=True)
class Sentences:
    """A passage's sentences: where each is in the chunk's text, and its unit vector (one row each)."""

    spans: tuple[tuple[int, int], ...]
    vectors: np.ndarray
    pooled: bool = True
    """Pooled from the passage's own pass (at ingest); False: each sentence embedded alone (at search time)."""


def quantize(vectors: np.ndarray) -> bytes:
    """Unit vectors as int8, each row scaled so its largest component is ±127 (its direction is what counts)."""
    largest = np.abs(vectors).max(axis=1, keepdims=True).clip(min=1e-12)
    return np.round(vectors / largest * 127).astype(np.int8).tobytes()


def dequantize(blob: bytes, dimension: int) -> np.ndarray:
    """``quantize``'s rows back as unit float32 vectors."""
    rows = np.frombuffer(blob, dtype=np.int8).reshape(-1, dimension).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(min=1e-12)


class SentenceVectors:
    """The sentences' vectors of stored passages, in ``path`` (made at the first write)."""

    def __init__(self, path: Path, busy_seconds: float = 30.0) -> None:
        self.path = path
        self.busy_seconds = busy_seconds

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=self.busy_seconds)
        except sqlite3.Error as error:
            raise StoreError(f"文ごとのベクトルのファイル {self.path} を開けません（{error}）。") from error
        try:
            yield connection
        except sqlite3.Error as error:
            raise StoreError(f"文ごとのベクトルのファイル {self.path} を読み書きできません（{error}）。") from error
        finally:
            connection.close()

    def get(self, model: str, keys: Sequence[str]) -> dict[str, Sentences]:
        """The rows kept for ``keys`` (text digests) of ``model``; none when the file does not exist yet."""
        wanted = sorted({k for k in keys if k})
        if not wanted or not self.path.is_file():
            return {}
        found: dict[str, Sentences] = {}
        with self._connection() as connection:
            for begin in range(0, len(wanted), 500):
                batch = wanted[begin : begin + 500]
                rows = connection.execute(
                    "SELECT text_hash, spans, dimension, vectors, pooled FROM sentences WHERE model = ? AND text_hash IN "
                    f"({','.join('?' * len(batch))})",
                    [model, *batch],
                ).fetchall()
                for key, spans, dimension, blob, pooled in rows:
                    pairs = tuple((int(a), int(b)) for a, b in json.loads(spans))
                    found[key] = Sentences(pairs, dequantize(blob, int(dimension)), bool(pooled))
        return found

    def put(self, model: str, rows: Mapping[str, Sentences]) -> None:
        """Keep ``rows`` (by text digest) for ``model``, in one transaction; a row kept already is replaced."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        values = [
            (
                model,
                key,
                json.dumps([list(s) for s in row.spans]),
                int(row.vectors.shape[1]),
                quantize(row.vectors),
                int(row.pooled),
            )
            for key, row in rows.items()
            if row.vectors.ndim == 2 and len(row.vectors) == len(row.spans) and len(row.spans)
        ]
        with self._connection() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            with connection:
                connection.executemany("INSERT OR REPLACE INTO sentences VALUES (?, ?, ?, ?, ?, ?)", values)

    def size(self) -> int:
        """Bytes the file holds on disk once its write-ahead log is written back (0 when it does not exist yet)."""
        if not self.path.is_file():
            return 0
        with self._connection() as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return sum(f.stat().st_size for f in files if f.is_file())
