"""The collections of a long-running process (the page, the HTTP API): each one's parts built once, one model shared."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator

from pipelines.errors import CollectionNotFoundError
from pipelines.model.embedder import TextEmbedder
from pipelines.service import words
from pipelines.service.compose import Pipelines, build, make_auditlog, make_collections, make_embedder, make_querylog
from pipelines.settings import Settings
from pipelines.store.collections import CollectionInfo, Collections, canonical_name


class Library:
    """Every collection's ``Pipelines`` from ``build``, made on first use, sharing one embedder and one Chroma client.

    Writes to one collection are serialised by its ``write_lock`` (the store's lock file orders writing
    processes); searches run concurrently. Deleting a collection waits for its writer, and a writer
    that waited for a deleted collection is refused (``writing``).
    """

    def __init__(
        self, settings: Settings, *, embedder: TextEmbedder | None = None, collections: Collections | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder or make_embedder(settings)
        self.collections = collections or make_collections(settings)
        # the log of every collection's questions and feedback: one file, one object
        self.querylog = make_querylog(settings)
        # who did what to which collection and document: one file, one object (pipelines/service/audit.py)
        self.audit = make_auditlog(settings)
        self._parts: dict[str, Pipelines] = {}
        self._lock = threading.Lock()

    def pipelines(self, name: str) -> Pipelines:
        """The parts of the collection ``name`` (``CollectionNotFoundError`` when there is none)."""
        key = canonical_name(name)
        with self._lock:
            parts = self._parts.get(key)
            if parts is None:
                settings = dataclasses.replace(self.settings, collection=key)
                parts = build(settings, embedder=self.embedder, collections=self.collections, querylog=self.querylog)
                self._parts[key] = parts
            return parts

    @contextlib.contextmanager
    def writing(self, name: str, waiting: Callable[[], None] | None = None) -> Iterator[Pipelines]:
        """The collection's parts with its write lock held; refused if it was deleted while this waited.

        ``waiting()`` is called when another writer holds the lock, before this one waits for it.
        """
        parts = self.pipelines(name)
        if not parts.write_lock.acquire(blocking=False):
            if waiting is not None:
                waiting()
            parts.write_lock.acquire()
        try:
            if self._parts.get(canonical_name(name)) is not parts:
                raise CollectionNotFoundError(words.COLLECTION_DELETED.format(name=canonical_name(name)))
            yield parts
        finally:
            parts.write_lock.release()

    def catalogue(self) -> list[CollectionInfo]:
        """Every collection with its counts, the default first."""
        return self.collections.catalogue()

    def names(self) -> list[str]:
        """Every collection's name, the default first."""
        return self.collections.names()

    def create(self, name: str) -> CollectionInfo:
        """Make an empty collection (``CollectionExistsError`` when the name is taken)."""
        return self.collections.create(name)

    def delete(self, name: str) -> CollectionInfo:
        """Delete a collection and everything in it, once its writer (if any) is done."""
        key = canonical_name(name)
        parts = self._parts.get(key)
        # the writer first, then the library's lock, held only while the collection goes: searches in
        # other collections never wait for an upload to this one
        with parts.write_lock if parts is not None else contextlib.nullcontext(), self._lock:
            self._parts.pop(key, None)  # no one builds its parts again meanwhile
            return self.collections.delete(key)

    def close(self) -> None:
        """End what the collections' parts hold open (the file reader's child process)."""
        with self._lock:
            for parts in self._parts.values():
                parts.indexer.close()
