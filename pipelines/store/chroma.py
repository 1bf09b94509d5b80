"""The Chroma store: one collection's reader and versioned writer over a shared connection.

Two collections live side by side. ``<name>`` holds one record per chunk (vector, text, metadata).
``<name>-registry`` holds one record per document: the version (content hash and chunking) that is
live. A chunk is visible only when its version is its document's live version (``reader.py``), and
replacing a document switches that version in one registry write (``writer.py``). The client and
the generation token that tells a process another one has written are in ``connection.py``; what the
store holds (documents, chunks, their places as metadata) in ``records.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.store.connection import CollectionPair, Connection, http_connection, persistent_connection
from pipelines.store.reader import StoreReader
from pipelines.store.records import ChunkRecord, StoredChunk, StoredDocument
from pipelines.store.writer import VersionedWriter


class ChromaStore:
    """Chunks and their registry in one Chroma client (embedded ``PersistentClient`` or a server).

    The reads are ``reader``'s and the writes ``writer``'s; the store passes on the ones the rest of
    the code uses, so that callers hold one object.
    """

    def __init__(
        self,
        client: Any,
        collection: str = "documents",
        lock_path: Path | None = None,
        location: str = "",
        connection: Connection | None = None,
    ) -> None:
        self.connection = connection or Connection(lambda: client, location=location)
        self.connection.join()
        self.pair = CollectionPair(self.connection, collection, location)
        self.reader = StoreReader(self.pair)
        self.writer = VersionedWriter(self.pair, self.reader, lock_path)

    @classmethod
    def http(
        cls, host: str, port: int, collection: str = "documents", *, ssl: bool = False, token: str = ""
    ) -> ChromaStore:
        """A store on a Chroma server (``chroma run``, or one behind a proxy that checks the token)."""
        connection = http_connection(host, port, ssl=ssl, token=token)
        return cls(None, collection, location=connection.location, connection=connection)

    @classmethod
    def persistent(cls, data_dir: Path, collection: str = "documents") -> ChromaStore:
        """A store in ``data_dir`` on this machine, with a lock file that serialises writing processes."""
        return cls(None, collection, lock_path=data_dir / "write.lock", connection=persistent_connection(data_dir))

    def sibling(self, collection: str) -> ChromaStore:
        """The store of another collection in the same client, sharing its connection and write lock."""
        return ChromaStore(None, collection, lock_path=self.writer.lock_path, connection=self.connection)

    def close(self) -> None:
        """Release the client (Chroma shares one per address or path, and frees it with its last user)."""
        self.connection.leave()

    @property
    def name(self) -> str:
        """The chunk collection's Chroma name."""
        return self.pair.name

    @property
    def location(self) -> str:
        """Where the store is, for messages: the server's address or the data directory."""
        return self.pair.location

    @property
    def client(self) -> Any:
        """The Chroma client (shared with the stores of the other collections in it)."""
        return self.connection.client

    # Reads (``StoreReader``) ---------------------------------------------------------------------

    def documents(self) -> list[StoredDocument]:
        """Every stored document, by name."""
        return self.reader.documents()

    def document(self, source: str) -> StoredDocument | None:
        """The stored document with this name, if any."""
        return self.reader.document(source)

    def chunks_by_id(self, ids: Sequence[str], live: Mapping[str, str] | None = None) -> dict[str, StoredChunk]:
        """Chunks of live versions by record id (``StoreReader.chunks_by_id``)."""
        return self.reader.chunks_by_id(ids, live)

    def chunks_at(self, source: str, version: str, indexes: Sequence[int]) -> list[StoredChunk]:
        """Chunks of one version of a document by position, in document order: a hit's neighbours."""
        return self.reader.chunks_at(source, version, indexes)

    def nearest_many(
        self, embeddings: np.ndarray, k: int, live: Mapping[str, str], sources: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest visible chunks for each vector (``StoreReader.nearest_many``)."""
        return self.reader.nearest_many(embeddings, k, live, sources)

    def count(self) -> int:
        """Number of chunk records, including any not yet committed."""
        return self.reader.count()

    # Writes (``VersionedWriter``) ----------------------------------------------------------------

    def writing(self) -> AbstractContextManager[None]:
        """The write lock, after interrupted work is finished (``VersionedWriter.writing``)."""
        return self.writer.writing()

    def replace(self, document: StoredDocument, records: Sequence[ChunkRecord]) -> None:
        """Store ``records`` as ``document``'s version and make it the visible one (``VersionedWriter.replace``)."""
        self.writer.replace(document, records)

    def delete(self, source: str) -> StoredDocument:
        """Remove a document: hidden in one write, then its chunks deleted."""
        return self.writer.delete(source)

    def move(self, old: str, new: str) -> StoredDocument:
        """Rename a document, its chunks and vectors kept (``VersionedWriter.move``)."""
        return self.writer.move(old, new)
