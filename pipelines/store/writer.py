"""The store's versioned writes: new chunks invisible, one registry write to switch, the old ones deleted.

Under the write lock, ``replace`` records the pending version in the registry, writes the new chunks
(invisible: their version is not live), switches the registry record in one upsert (the commit),
then deletes the old chunks. A run that dies at any point leaves either the old or the new version
visible, never both and never neither; the registry remembers what to clean (``pending``,
``stale``), and the next ``writing()`` does (``recover``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import DocumentNotFoundError
from pipelines.store.connection import CollectionPair, chroma_failures_as_store_errors
from pipelines.store.reader import CHANGES, StoreReader, require_same_model
from pipelines.store.records import ChunkRecord, StoredDocument

# Registry records need a vector because Chroma stores nothing without one; this one is never searched.
_PLACEHOLDER = [1.0]


class VersionedWriter:
    """Writes one collection: documents replaced and deleted in one registry write each, the collection made and dropped."""

    def __init__(self, pair: CollectionPair, reader: StoreReader, lock_path: Path | None = None) -> None:
        self.pair = pair
        self.reader = reader
        self.lock_path = lock_path
        # whether the first document may make the collection (the default one); a named collection is
        # made by ``create`` and, once dropped, is not made again by a writer that still holds it
        self.creates = True
        self._writer = threading.local()  # .depth: how many writing() blocks this thread is inside

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's write lock (one writing process at a time) and finish interrupted work first.

        Reentrant within a thread: a ``writing()`` inside another (``replace`` inside the indexer's,
        which also updates the keyword index) joins the outer one.
        """
        depth = getattr(self._writer, "depth", 0)
        if depth:
            self._writer.depth = depth + 1
            try:
                yield
            finally:
                self._writer.depth = depth
            return
        with self._write_lock():
            self._writer.depth = 1
            try:
                self.pair.refresh()
                self.recover()
                yield
            finally:
                self._writer.depth = 0

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """The lock file held exclusively (a store on a server has none: one writer is assumed)."""
        if self.lock_path is None:
            yield
            return
        # flock belongs to the open file: a second open in this process would wait for the first
        with self.lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @chroma_failures_as_store_errors
    def recover(self) -> None:
        """Delete the chunks of versions that an interrupted write left behind."""
        registry = self.pair.registry()
        if registry is None:
            return
        unfinished = {"$or": [{"pending": {"$ne": ""}}, {"stale": {"$ne": ""}}]}
        found = registry.get(where=unfinished, include=["metadatas"])
        for source, meta in zip(found["ids"], found["metadatas"], strict=True):
            for version in {meta["pending"], meta["stale"]} - {"", meta["version"]}:
                self.pair.chunks().delete(where={"$and": [{"source": source}, {"version": version}]})
            if meta["version"]:
                registry.update(ids=[source], metadatas=[{**meta, "pending": "", "stale": ""}])
            else:
                registry.delete(ids=[source])

    def replace(self, document: StoredDocument, records: Sequence[ChunkRecord]) -> None:
        """Store ``records`` as ``document``'s version and make it the visible one, dropping the old one.

        Under the write lock: the new chunks are written invisible, the registry switches to them in
        one write, then the old version's chunks are deleted. A run that dies part way leaves the old
        version (or none, for a new document) visible; the next ``writing()`` cleans up.
        """
        key = (document.source, document.version)
        strays = [r.id for r in records if (r.metadata.get("source"), r.metadata.get("version")) != key]
        if strays:
            # recovery finds chunks by source and version: these would never be shown nor cleaned
            raise ValueError(f"chunks {strays[:3]} are not of {document.source!r} version {document.version!r}")
        with self.writing():
            self._begin(document.source, document.version)
            self._add_chunks(records)
            self._commit(document)

    @chroma_failures_as_store_errors
    def _begin(self, source: str, version: str) -> None:
        """Record that chunks of ``version`` are about to be written for ``source``."""
        registry = self.pair.registry()
        if registry is None or self.pair.chunks() is None:  # dropped since this store was bound
            raise self.pair.gone()
        current = registry.get(ids=[source], include=["metadatas"])
        if current["ids"]:
            registry.update(ids=[source], metadatas=[{**current["metadatas"][0], "pending": version}])
        else:
            empty = {"version": "", "content_hash": "", "pages": 0, "chunks": 0, "tokens": 0, "added_at": ""}
            empty |= {"embedding_model": "", "pending": version, "stale": ""}
            registry.add(ids=[source], embeddings=[_PLACEHOLDER], metadatas=[empty])

    @chroma_failures_as_store_errors
    def _add_chunks(self, records: Sequence[ChunkRecord]) -> None:
        """Write chunks (not yet visible: they belong to a version that is not committed)."""
        chunks = self.pair.chunks()
        step = self.pair.client.get_max_batch_size()
        for begin in range(0, len(records), step):
            batch = records[begin : begin + step]
            chunks.upsert(
                ids=[r.id for r in batch],
                embeddings=np.stack([r.embedding for r in batch]),
                documents=[r.text for r in batch],
                metadatas=[r.metadata for r in batch],
            )

    @chroma_failures_as_store_errors
    def _commit(self, document: StoredDocument) -> None:
        """Make ``document.version`` the visible version of its source, in one write, then drop the old one."""
        registry = self.pair.registry()
        current = registry.get(ids=[document.source], include=["metadatas"])
        old = current["metadatas"][0]["version"] if current["ids"] else ""
        stale = old if old != document.version else ""
        meta = {**asdict(document), "pending": "", "stale": stale}
        del meta["source"]
        registry.upsert(ids=[document.source], embeddings=[_PLACEHOLDER], metadatas=[meta])
        self._mark_changed()
        self.recover()

    @chroma_failures_as_store_errors
    def delete(self, source: str) -> StoredDocument:
        """Remove a document: hidden in one write, then its chunks deleted."""
        document = self.reader.document(source)
        if document is None:
            raise DocumentNotFoundError(f"「{source}」という文書はありません。`documents` で名前を確かめてください。")
        registry = self.pair.registry()
        meta = {**asdict(document), "version": "", "pending": "", "stale": document.version}
        del meta["source"]
        registry.update(ids=[source], metadatas=[meta])
        self._mark_changed()
        self.recover()
        return document

    @chroma_failures_as_store_errors
    def move(self, old: str, new: str) -> StoredDocument:
        """Give document ``old`` the name ``new``, its chunks and vectors kept (a file renamed or moved on a share).

        Under the write lock, in three steps that a run killed between them leaves readable, and that a
        second call finishes: ``new`` is registered live at ``old``'s version (its chunks still carry
        the old name, so only ``old`` shows them), the chunks are renamed in one write (now ``new``
        shows them), then ``old``'s record goes. Refused when ``new`` names another content.
        """
        with self.writing():
            document = self.reader.document(old)
            if document is None:
                raise DocumentNotFoundError(f"「{old}」という文書はありません。`documents` で名前を確かめてください。")
            there = self.reader.document(new)
            if there is not None and there.version != document.version:
                raise ValueError(f"{new!r} holds another version than {old!r}: ingest it instead")
            registry = self.pair.registry()
            meta = {**asdict(document), "pending": "", "stale": ""}
            del meta["source"]
            registry.upsert(ids=[new], embeddings=[_PLACEHOLDER], metadatas=[meta])
            chunks = self.pair.chunks()
            found = chunks.get(where={"$and": [{"source": old}, {"version": document.version}]}, include=["metadatas"])
            step = self.pair.client.get_max_batch_size()
            for begin in range(0, len(found["ids"]), step):
                ids = found["ids"][begin : begin + step]
                metas = [{**m, "source": new} for m in found["metadatas"][begin : begin + step]]
                chunks.update(ids=ids, metadatas=metas)
            registry.delete(ids=[old])
            self._mark_changed()
            return dataclasses.replace(document, source=new)

    def _mark_changed(self) -> None:
        token = uuid.uuid4().hex
        empty = {"version": "", "pending": "", "stale": "", "token": token}
        self.pair.registry().upsert(ids=[CHANGES], embeddings=[_PLACEHOLDER], metadatas=[empty])
        self.pair.connection.bump()

    def create(self, metadata: dict[str, Any]) -> None:
        """Make the (empty) chunk and registry collections, the chunks' with ``metadata``."""
        with self.writing():  # never inside a call that holds the client: writing() may wait for a reopening
            self._create(metadata)
            self.pair.connection.bump()

    @chroma_failures_as_store_errors
    def _create(self, metadata: dict[str, Any]) -> None:
        self.pair.chunks_handle = self.pair.open("", create=True, metadata=metadata)
        self.pair.registry_handle = self.pair.open("-registry", create=True)

    def drop(self) -> None:
        """Delete the chunk and registry collections with everything in them."""
        with self.writing():
            self._drop()
            self.pair.connection.bump()

    @chroma_failures_as_store_errors
    def _drop(self) -> None:
        from chromadb.errors import NotFoundError

        for suffix in ("", "-registry"):
            with contextlib.suppress(NotFoundError, ValueError):
                self.pair.client.delete_collection(self.pair.name + suffix)
        self.pair.forget()

    @chroma_failures_as_store_errors
    def bind_model(self, model_name: str, dimension: int, fingerprint: Sequence[float]) -> None:
        """Make sure the store holds vectors of this model only; an empty store is bound to it.

        A store built with another model is refused: its vectors and this model's cannot be compared.
        The same model under another name (a local copy of a hub model) is recognised by its
        fingerprint, the embedding of a fixed sentence.
        """
        if not self.creates and self.pair.open("", create=False) is None:
            raise self.pair.gone()
        metadata = {
            "embedding_model": model_name,
            "embedding_dimension": dimension,
            "embedding_fingerprint": json.dumps([round(x, 6) for x in fingerprint]),
        }
        chunks = self.pair.open("", create=True, metadata=metadata)
        bound = chunks.metadata or {}
        if bound.get("embedding_model") is None:
            chunks.modify(metadata={**bound, **metadata})  # a created collection's display name is kept
        require_same_model(self.pair.name, bound, model_name, dimension, fingerprint)
        self.pair.chunks_handle = chunks
        self.pair.registry_handle = self.pair.open("-registry", create=True)
