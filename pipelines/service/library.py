"""The collections of a long-running process (the page, the HTTP API): each one's parts built once, one model shared."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator

from pipelines.errors import CollectionNotFoundError
from pipelines.model.embedder import TextEmbedder
from pipelines.model.gate import QueryGate
from pipelines.service import words
from pipelines.service.compose import (
    Pipelines,
    build,
    make_auditlog,
    make_collections,
    make_embedder,
    make_querylog,
    make_reader,
)
from pipelines.service.syncstate import SyncState
from pipelines.settings import Settings
from pipelines.store.collections import DEFAULT, CollectionInfo, Collections, canonical_name


class Library:
    """Every collection's ``Pipelines`` from ``build``, made on first use, sharing one embedder and one Chroma client.

    Writes to one collection are serialised by its ``write_lock`` (the store's lock file orders writing
    processes); searches run concurrently. Deleting a collection marks it gone first (its keyword index
    refuses to be saved again, its parts are not built again), then waits for its writer: a writer in
    flight or waiting is refused, and nothing of the collection comes back once the delete returns.
    Files are read by one child process for every collection (``reader``), ended by ``close``.
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
        # the sources each collection keeps in sync and their files' state (pipelines/service/syncstate.py)
        self.sync_state = SyncState(settings.data_dir / "sources.sqlite3")
        # one child process reads the files of every collection (each built its own: 17 collections, 17 children)
        self.reader = make_reader(settings)
        # the model's use at search time, shared by every collection: capped to the CPUs, a question in flight embedded once
        self.gate = QueryGate(self.embedder)
        self._parts: dict[str, Pipelines] = {}
        self._deleting: set[str] = set()  # collections being deleted: their parts are not built again meanwhile
        self._lock = threading.Lock()

    def pipelines(self, name: str) -> Pipelines:
        """The parts of the collection ``name`` (``CollectionNotFoundError`` when there is none)."""
        key = canonical_name(name)
        with self._lock:
            parts = self._parts.get(key)
            if parts is None:
                if key in self._deleting:
                    raise CollectionNotFoundError(words.COLLECTION_DELETED.format(name=key))
                settings = dataclasses.replace(self.settings, collection=key)
                parts = build(
                    settings,
                    embedder=self.embedder,
                    collections=self.collections,
                    querylog=self.querylog,
                    reader=self.reader,
                    gate=self.gate,
                )
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
        """Delete a collection and everything in it; a writer in flight is refused, and the delete waits for it."""
        key = canonical_name(name)
        if key == DEFAULT:
            return self.collections.delete(key)  # refused, with the reason: nothing of it is touched here
        with self._lock:
            # gone from here on: no one builds its parts again, and whoever still holds them cannot
            # save its keyword index (a search's or a writer's), so no file of it reappears
            parts = self._parts.pop(key, None)
            self._deleting.add(key)
            if parts is not None:
                parts.keyword.retire(words.COLLECTION_DELETED.format(name=key))
        try:
            # the writer's lock, not the library's: searches in other collections never wait for this one
            with parts.write_lock if parts is not None else contextlib.nullcontext():
                return self.collections.delete(key)
        finally:
            with self._lock:
                self._deleting.discard(key)

    def close(self) -> None:
        """End what the collections' parts hold open: the file reader's child process (their one reader), and
        their idle-time sentence refiners (each ends after the hit it is embedding)."""
        for parts in list(self._parts.values()):
            if parts.searcher.refiner is not None:
                parts.searcher.refiner.stop()
        self.reader.close()
