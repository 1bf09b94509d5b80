"""The Chroma store: chunk vectors in cosine space, and a registry that switches document versions atomically.

Two collections live side by side. ``<name>`` holds one record per chunk (vector, text, metadata).
``<name>-registry`` holds one record per document: the version (content hash and chunking) that is
live. A chunk is visible only when its version is its document's live version, so replacing a
document (``replace``, under the write lock) is: write the new chunks (invisible), switch the
registry record in one upsert (the commit), then delete the old chunks. A run that dies at any point
leaves either the old or the new version visible, never both and never neither; the registry
remembers what to clean, and the next write does.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import numpy as np
from chromadb.errors import ChromaError

from ingest.document import NOWHERE, Place
from pipelines.errors import CollectionNotFoundError, DocumentNotFoundError, ModelMismatchError, StoreError

# Registry records need a vector because Chroma stores nothing without one; this one is never searched.
_PLACEHOLDER = [1.0]
# The registry record whose token changes with every commit and delete, so that a reader can tell
# in one lookup whether anything changed. No document can have this name: names have no NUL.
_CHANGES = "\x00changes"
# Two loads of the same model give the fingerprint sentence a cosine of 1 up to rounding (or
# reduced precision); two different models are far below this.
_SAME_MODEL_COSINE = 0.98


@dataclass(frozen=True)
class StoredDocument:
    """A document as the registry knows it."""

    source: str
    version: str
    content_hash: str
    pages: int
    chunks: int
    tokens: int
    added_at: str
    embedding_model: str
    kind: str = ""
    """The format it was read as (``pdf``, ``docx``, …; "" for documents stored before formats were kept)."""
    precision: str = ""
    """What its passages were computed in (``int8``, ``bfloat16``, ``float32``, ``server``…; "" before it was kept)."""


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk ready to store: its id, text, unit vector and metadata."""

    id: str
    text: str
    embedding: np.ndarray
    metadata: dict[str, str | int | float | bool]


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the store: its text and where it lies in its document's version.

    ``page`` and ``page_end`` are None for a document without pages; ``place`` and ``place_end`` say
    where the chunk starts and ends in the original (page, slide, sheet and row, headings);
    ``char_start`` and ``char_end`` locate the text in the document's normalised text.
    """

    text: str
    source: str
    page: int | None
    page_end: int | None
    chunk_index: int
    char_start: int
    char_end: int
    content_hash: str
    version: str
    chunk_id: str
    place: Place = NOWHERE
    place_end: Place = NOWHERE
    breaks: tuple[tuple[int, int], ...] = ()


F = TypeVar("F", bound=Callable[..., Any])


def _refused(error: BaseException) -> bool:
    """Whether Chroma (or the proxy in front of it) refused the credentials."""
    text = str(error)
    return any(mark in text for mark in ("401", "403", "Unauthorized", "Forbidden", "AuthError", "Authentication"))


def _chroma_failures_as_store_errors(method: F) -> F:
    """Chroma failures (a server gone, a token refused) become a StoreError that says where and what."""

    @functools.wraps(method)
    def wrapper(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        try:
            self.refresh()  # before the client is held: a reopening waits for the calls that hold it
            with self.connection.using():
                return method(self, *args, **kwargs)
        except (ChromaError, httpx.HTTPError) as error:
            if _refused(error):
                raise StoreError(
                    f"Chroma（{self.location}）で認証に失敗しました（{error}）。RAG_CHROMA_TOKEN を確かめてください。"
                ) from error
            raise StoreError(
                f"Chroma（{self.location}）を使えません（{type(error).__name__}: {error}）。"
                "書きかけの文書は検索に出ず、次の書き込みで片付けられます。接続と認証を確かめて、もう一度実行してください。"
            ) from error

    return cast(F, wrapper)


def _page(value: Any) -> int | None:
    return int(value) or None if value is not None else None


def _number(place: Place) -> int | None:
    """The number that tells a place from its neighbours: its page, slide or row."""
    return place.page or place.slide or place.row


def with_context(context: str, text: str) -> str:
    """A chunk's text as it is embedded and keyword-indexed: its context (metadata ``context``) on the line before it."""
    return f"{context}\n{text}" if context else text


def place_metadata(first: Place, last: Place, breaks: Sequence[tuple[int, Place]] = ()) -> dict[str, str | int | bool]:
    """A chunk's places as Chroma metadata (scalars only): ``page``/``page_end`` always (0: none), the
    slide, sheet, rows, headings (a JSON list) and whether it came from OCR only when they apply, and
    ``breaks``, where in its text a new page, slide or row starts (a JSON list of [offset, number])."""
    meta: dict[str, str | int | bool] = {"page": first.page or 0, "page_end": last.page or 0}
    numbered = [[offset, _number(place)] for offset, place in breaks if _number(place) is not None]
    if numbered and _number(first) is not None:
        meta["breaks"] = json.dumps(numbered)
    if first.slide is not None:
        meta |= {"slide": first.slide, "slide_end": last.slide or first.slide}
    if first.sheet is not None:
        meta["sheet"] = first.sheet
    if last.sheet is not None and last.sheet != first.sheet:
        meta["sheet_end"] = last.sheet
    if first.row is not None:
        meta |= {"row": first.row, "row_end": last.row or first.row}
    if first.heading:
        meta["heading"] = json.dumps(first.heading, ensure_ascii=False)
    if first.ocr or last.ocr:
        meta["ocr"] = True
    return meta


def breaks_from_metadata(meta: Mapping[str, Any]) -> tuple[tuple[int, int], ...]:
    """``place_metadata``'s ``breaks``: (offset in the chunk's text, page, slide or row number) pairs."""
    return tuple((int(offset), int(number)) for offset, number in json.loads(meta.get("breaks") or "[]"))


def places_from_metadata(meta: dict[str, Any]) -> tuple[Place, Place]:
    """``place_metadata``'s inverse; chunks stored before places were kept come back with their pages only."""
    heading = tuple(json.loads(meta["heading"])) if meta.get("heading") else ()
    ocr = bool(meta.get("ocr", False))
    sheet = meta.get("sheet")
    first = Place(
        page=_page(meta.get("page")),
        slide=_page(meta.get("slide")),
        sheet=sheet,
        row=_page(meta.get("row")),
        heading=heading,
        ocr=ocr,
    )
    last = Place(
        page=_page(meta.get("page_end")),
        slide=_page(meta.get("slide_end")),
        sheet=meta.get("sheet_end", sheet),
        row=_page(meta.get("row_end")),
        heading=heading,
        ocr=ocr,
    )
    return first, last


class Connection:
    """One Chroma client shared by the stores of every collection in it, reopened when another process wrote.

    An embedded Chroma keeps its vector indexes in memory and never sees vectors another process adds.
    Every write therefore leaves a new token in ``RAG_DATA_DIR/generation``; a connection that finds a
    token it did not write reopens its client before the next call, so its stores see the other
    process's documents. The client is shared (Chroma frees an embedded client's files only when its
    last user closes it), and each reopening starts a new ``epoch``: a store drops the collection
    handles it got in an earlier one. Calls hold the client while they run (``using``), and a reopening
    waits for them, so a search in one thread never sees its client closed by another thread's
    reopening. A server's client (``generation_file`` None) is never reopened.
    """

    def __init__(self, open_client: Callable[[], Any], generation_file: Path | None = None, location: str = "") -> None:
        self._open = open_client
        self.client = open_client()
        self.generation_file = generation_file
        self.location = location or "ストア"
        self.epoch = 0
        self._generation = self._read_generation()
        self._state = threading.Condition()
        self._calls = 0  # calls holding the client now, in every thread
        self._reopening = False
        self._depth = threading.local()  # .n: how deep this thread is in calls holding the client
        self._users = 0

    def _read_generation(self) -> str:
        if self.generation_file is None:
            return ""
        try:
            return self.generation_file.read_text(encoding="ascii")
        except FileNotFoundError:
            return ""

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Hold the client for one call (with the calls it makes), so that no reopening closes it meanwhile."""
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            with self._state:
                while self._reopening:
                    self._state.wait()
                self._calls += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if depth == 0:
                with self._state:
                    self._calls -= 1
                    self._state.notify_all()

    def refresh(self) -> int:
        """Reopen the client if another process has written since this connection last looked; the epoch.

        Inside a call that holds the client nothing is reopened: the next call will.
        """
        depth: int = getattr(self._depth, "n", 0)
        if self.generation_file is None or depth:
            return self.epoch
        if self._read_generation() == self._generation:
            return self.epoch
        with self._state:
            if self._reopening:  # another thread is reopening: wait for it
                while self._reopening:
                    self._state.wait()
                return self.epoch
            self._reopening = True
            while self._calls:
                self._state.wait()
        try:
            current = self._read_generation()
            if current != self._generation:
                self.client.close()
                self.client = self._open()
                self._generation = current
                self.epoch += 1
        finally:
            with self._state:
                self._reopening = False
                self._state.notify_all()
        return self.epoch

    def bump(self) -> None:
        """Leave a new token for other processes: this one has written."""
        if self.generation_file is not None:
            token = uuid.uuid4().hex
            with self._state:
                self.generation_file.write_text(token, encoding="ascii")
                self._generation = token

    def join(self) -> None:
        with self._state:
            self._users += 1

    def leave(self) -> None:
        """One store is done with the client; the last one closes it."""
        with self._state:
            self._users -= 1
            if self._users <= 0:
                self.client.close()


class ChromaStore:
    """Chunks and their registry in one Chroma client (embedded ``PersistentClient`` or a server)."""

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
        self.name = collection
        self.lock_path = lock_path
        # for error messages: the server's address or the data directory
        self.location = location or self.connection.location
        self._chunks: Any = None
        self._registry: Any = None
        self._epoch = self.connection.epoch
        # whether the first document may make the collection (the default one); a named collection is
        # made by ``create`` and, once dropped, is not made again by a writer that still holds it
        self.creates = True
        self._writer = threading.local()  # .depth: how many writing() blocks this thread is inside

    @property
    def client(self) -> Any:
        """The Chroma client (shared with the stores of the other collections in it)."""
        return self.connection.client

    @classmethod
    def http(
        cls, host: str, port: int, collection: str = "documents", *, ssl: bool = False, token: str = ""
    ) -> ChromaStore:
        """A store on a Chroma server (``chroma run``, or one behind a proxy that checks the token)."""
        import chromadb

        headers = {"Authorization": f"Bearer {token}", "X-Chroma-Token": token} if token else None
        location = f"{'https' if ssl else 'http'}://{host}:{port}"
        try:
            client = chromadb.HttpClient(
                host=host, port=port, ssl=ssl, headers=headers, settings=chromadb.Settings(anonymized_telemetry=False)
            )
        except (ValueError, OSError, httpx.HTTPError, ChromaError) as error:
            if _refused(error):
                raise StoreError(
                    f"Chroma サーバー（{location}）で認証に失敗しました（{error}）。RAG_CHROMA_TOKEN を確かめてください。"
                ) from error
            raise StoreError(
                f"Chroma サーバー（{location}）に接続できません（{error}）。サーバーが動いているか、"
                "RAG_CHROMA_HOST・RAG_CHROMA_PORT・RAG_CHROMA_SSL・RAG_CHROMA_TOKEN を確かめてください。"
            ) from error
        return cls(client, collection, location=location)

    @classmethod
    def persistent(cls, data_dir: Path, collection: str = "documents") -> ChromaStore:
        """A store in ``data_dir`` on this machine, with a lock file that serialises writing processes."""
        import chromadb

        def open_client() -> Any:
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
                return chromadb.PersistentClient(
                    path=str(data_dir / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
                )
            except (OSError, ValueError, RuntimeError) as error:
                raise StoreError(f"データディレクトリ「{data_dir}」のストアを開けません（{error}）。") from error

        connection = Connection(open_client, data_dir / "generation", str(data_dir))
        return cls(None, collection, lock_path=data_dir / "write.lock", connection=connection)

    def sibling(self, collection: str) -> ChromaStore:
        """The store of another collection in the same client, sharing its connection and write lock."""
        return ChromaStore(None, collection, lock_path=self.lock_path, connection=self.connection)

    def close(self) -> None:
        """Release the client (Chroma shares one per address or path, and frees it with its last user)."""
        self.connection.leave()

    def refresh(self) -> None:
        """See another process's writes: reopen the client if it has written (``Connection``)."""
        epoch = self.connection.refresh()
        if epoch != self._epoch:
            self._chunks = self._registry = None
            self._epoch = epoch

    def _bump_generation(self) -> None:
        self.connection.bump()

    # Collections -------------------------------------------------------------------------------

    def _collection(self, suffix: str, create: bool, metadata: dict[str, Any] | None = None) -> Any:
        from chromadb.errors import ChromaError, NotFoundError

        name = self.name + suffix
        try:
            if create:
                return self.client.get_or_create_collection(
                    name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}, metadata=metadata
                )
            return self.client.get_collection(name, embedding_function=None)
        except NotFoundError:
            return None
        except (ChromaError, ValueError) as error:
            raise StoreError(f"Chroma のコレクション「{name}」を開けません（{error}）。") from error

    def _chunk_collection(self) -> Any:
        if self._chunks is None:
            self._chunks = self._collection("", create=False)
        return self._chunks

    def _registry_collection(self) -> Any:
        if self._registry is None:
            self._registry = self._collection("-registry", create=False)
        return self._registry

    @_chroma_failures_as_store_errors
    def exists(self) -> bool:
        """Whether the chunk collection exists (made by ``create`` or the first document)."""
        self.refresh()
        return self._chunk_collection() is not None

    @_chroma_failures_as_store_errors
    def metadata(self) -> dict[str, Any]:
        """The chunk collection's metadata (its model, its display name); empty when it does not exist."""
        self.refresh()
        chunks = self._chunk_collection()
        return dict(chunks.metadata or {}) if chunks is not None else {}

    def create(self, metadata: dict[str, Any]) -> None:
        """Make the (empty) chunk and registry collections, the chunks' with ``metadata``."""
        with self.writing():  # never inside a call that holds the client: writing() may wait for a reopening
            self._create(metadata)
            self._bump_generation()

    @_chroma_failures_as_store_errors
    def _create(self, metadata: dict[str, Any]) -> None:
        self._chunks = self._collection("", create=True, metadata=metadata)
        self._registry = self._collection("-registry", create=True)

    def drop(self) -> None:
        """Delete the chunk and registry collections with everything in them."""
        with self.writing():
            self._drop()
            self._bump_generation()

    @_chroma_failures_as_store_errors
    def _drop(self) -> None:
        from chromadb.errors import NotFoundError

        for suffix in ("", "-registry"):
            with contextlib.suppress(NotFoundError, ValueError):
                self.client.delete_collection(self.name + suffix)
        self._chunks = self._registry = None

    @_chroma_failures_as_store_errors
    def collection_metadata(self) -> dict[str, dict[str, Any]]:
        """Every collection in the client by name, with its metadata (chunk and registry collections alike)."""
        self.refresh()
        return {c.name: dict(c.metadata or {}) for c in self.client.list_collections()}

    @_chroma_failures_as_store_errors
    def bind_model(self, model_name: str, dimension: int, fingerprint: Sequence[float]) -> None:
        """Make sure the store holds vectors of this model only; an empty store is bound to it.

        A store built with another model is refused: its vectors and this model's cannot be compared.
        The same model under another name (a local copy of a hub model) is recognised by its
        fingerprint, the embedding of a fixed sentence.
        """
        if not self.creates and self._collection("", create=False) is None:
            raise self._gone()
        metadata = {
            "embedding_model": model_name,
            "embedding_dimension": dimension,
            "embedding_fingerprint": json.dumps([round(x, 6) for x in fingerprint]),
        }
        chunks = self._collection("", create=True, metadata=metadata)
        bound = chunks.metadata or {}
        if bound.get("embedding_model") is None:
            chunks.modify(metadata={**bound, **metadata})  # a created collection's display name is kept
        self._require_same_model(bound, model_name, dimension, fingerprint)
        self._chunks = chunks
        self._registry = self._collection("-registry", create=True)

    @_chroma_failures_as_store_errors
    def bound_model(self) -> str | None:
        """The name of the embedding model the store is bound to (None: none yet), read without any model."""
        chunks = self._chunk_collection()
        name = (chunks.metadata or {}).get("embedding_model") if chunks is not None else None
        return None if name is None else str(name)

    @_chroma_failures_as_store_errors
    def check_model(self, model_name: str, dimension: int, fingerprint: Sequence[float]) -> None:
        """Refuse to search this store with another model's vectors (an empty store is fine)."""
        chunks = self._chunk_collection()
        self._require_same_model(
            (chunks.metadata or {}) if chunks is not None else {}, model_name, dimension, fingerprint
        )

    def _require_same_model(
        self, bound: dict[str, Any], model_name: str, dimension: int, fingerprint: Sequence[float]
    ) -> None:
        stored = bound.get("embedding_model")
        if stored is not None and not _same_model(bound, model_name, dimension, fingerprint):
            raise ModelMismatchError(
                f"このストア（コレクション「{self.name}」）は埋め込みモデル「{stored}」"
                f"（{bound.get('embedding_dimension')} 次元）で作られていて、"
                f"「{model_name}」のベクトルとは比べられません。"
                f"RAG_EMBEDDING_MODEL={stored} を指定するか、"
                "別の RAG_DATA_DIR か RAG_COLLECTION を使ってください。"
            )

    # Writing -------------------------------------------------------------------------------------

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
                self.refresh()
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

    @_chroma_failures_as_store_errors
    def recover(self) -> None:
        """Delete the chunks of versions that an interrupted write left behind."""
        registry = self._registry_collection()
        if registry is None:
            return
        unfinished = {"$or": [{"pending": {"$ne": ""}}, {"stale": {"$ne": ""}}]}
        found = registry.get(where=unfinished, include=["metadatas"])
        for source, meta in zip(found["ids"], found["metadatas"], strict=True):
            for version in {meta["pending"], meta["stale"]} - {"", meta["version"]}:
                self._chunk_collection().delete(where={"$and": [{"source": source}, {"version": version}]})
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

    def _gone(self) -> CollectionNotFoundError:
        return CollectionNotFoundError(
            f"コレクション（Chroma の「{self.name}」）がありません。削除されたようです。一覧を確かめてください。"
        )

    @_chroma_failures_as_store_errors
    def _begin(self, source: str, version: str) -> None:
        """Record that chunks of ``version`` are about to be written for ``source``."""
        registry = self._registry_collection()
        if registry is None or self._chunk_collection() is None:  # dropped since this store was bound
            raise self._gone()
        current = registry.get(ids=[source], include=["metadatas"])
        if current["ids"]:
            registry.update(ids=[source], metadatas=[{**current["metadatas"][0], "pending": version}])
        else:
            empty = {"version": "", "content_hash": "", "pages": 0, "chunks": 0, "tokens": 0, "added_at": ""}
            empty |= {"embedding_model": "", "pending": version, "stale": ""}
            registry.add(ids=[source], embeddings=[_PLACEHOLDER], metadatas=[empty])

    @_chroma_failures_as_store_errors
    def _add_chunks(self, records: Sequence[ChunkRecord]) -> None:
        """Write chunks (not yet visible: they belong to a version that is not committed)."""
        chunks = self._chunk_collection()
        step = self.client.get_max_batch_size()
        for begin in range(0, len(records), step):
            batch = records[begin : begin + step]
            chunks.upsert(
                ids=[r.id for r in batch],
                embeddings=np.stack([r.embedding for r in batch]),
                documents=[r.text for r in batch],
                metadatas=[r.metadata for r in batch],
            )

    @_chroma_failures_as_store_errors
    def _commit(self, document: StoredDocument) -> None:
        """Make ``document.version`` the visible version of its source, in one write, then drop the old one."""
        registry = self._registry_collection()
        current = registry.get(ids=[document.source], include=["metadatas"])
        old = current["metadatas"][0]["version"] if current["ids"] else ""
        stale = old if old != document.version else ""
        meta = {**asdict(document), "pending": "", "stale": stale}
        del meta["source"]
        registry.upsert(ids=[document.source], embeddings=[_PLACEHOLDER], metadatas=[meta])
        self._mark_changed()
        self.recover()

    @_chroma_failures_as_store_errors
    def delete(self, source: str) -> StoredDocument:
        """Remove a document: hidden in one write, then its chunks deleted."""
        document = self.document(source)
        if document is None:
            raise DocumentNotFoundError(f"「{source}」という文書はありません。`documents` で名前を確かめてください。")
        registry = self._registry_collection()
        meta = {**asdict(document), "version": "", "pending": "", "stale": document.version}
        del meta["source"]
        registry.update(ids=[source], metadatas=[meta])
        self._mark_changed()
        self.recover()
        return document

    def _mark_changed(self) -> None:
        token = uuid.uuid4().hex
        empty = {"version": "", "pending": "", "stale": "", "token": token}
        self._registry_collection().upsert(ids=[_CHANGES], embeddings=[_PLACEHOLDER], metadatas=[empty])
        self._bump_generation()

    # Reading -------------------------------------------------------------------------------------

    @_chroma_failures_as_store_errors
    def changes(self) -> str:
        """A token that changes whenever any process commits or deletes a document ("" before the first)."""
        self.refresh()
        registry = self._registry_collection()
        if registry is None:
            return ""
        found = registry.get(ids=[_CHANGES], include=["metadatas"])
        return str(found["metadatas"][0]["token"]) if found["ids"] else ""

    @_chroma_failures_as_store_errors
    def _documents(self, **query: Any) -> list[StoredDocument]:
        registry = self._registry_collection()
        if registry is None or query.get("ids") == []:
            return []
        found = registry.get(include=["metadatas"], **query)
        documents = []
        for source, meta in zip(found["ids"], found["metadatas"], strict=True):
            if meta["version"]:
                fields = {k: meta[k] for k in StoredDocument.__dataclass_fields__ if k != "source" and k in meta}
                documents.append(StoredDocument(source=source, **fields))
        return documents

    def document(self, source: str) -> StoredDocument | None:
        """The stored document with this name, if any."""
        self.refresh()
        found = self._documents(ids=[source])
        return found[0] if found else None

    def document_with_version(self, version: str) -> StoredDocument | None:
        """A stored document whose live version is ``version`` (same content, same chunking)."""
        self.refresh()
        found = self._documents(where={"version": version})
        return found[0] if found else None

    def documents(self) -> list[StoredDocument]:
        """Every stored document, by name."""
        self.refresh()
        return sorted(self._documents(), key=lambda d: d.source)

    @_chroma_failures_as_store_errors
    def vectors_for(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks whose text has one of these digests: the same text is never embedded twice."""
        chunks = self._chunk_collection()
        found: dict[str, np.ndarray] = {}
        if chunks is None:
            return found
        wanted = sorted(set(text_hashes))
        for begin in range(0, len(wanted), 256):
            batch = wanted[begin : begin + 256]
            rows = chunks.get(where={"text_hash": {"$in": batch}}, include=["embeddings", "metadatas"])
            for meta, vector in zip(rows["metadatas"], rows["embeddings"], strict=True):
                found[str(meta["text_hash"])] = np.asarray(vector, dtype=np.float32)
        return found

    def live_versions(self) -> dict[str, str]:
        """The visible version of every stored document, by source."""
        self.refresh()
        return {d.source: d.version for d in self._documents()}

    @_chroma_failures_as_store_errors
    def chunk_texts(self, source: str, version: str) -> list[tuple[str, str]]:
        """Record id and text of every chunk of one version of a document, in document order, as keyword-indexed
        (with the chunk's context before it, when it was stored with one)."""
        chunks = self._chunk_collection()
        if chunks is None:
            return []
        found = chunks.get(
            where={"$and": [{"source": source}, {"version": version}]}, include=["documents", "metadatas"]
        )
        rows = sorted(
            zip(found["metadatas"], found["ids"], found["documents"], strict=True), key=lambda r: r[0]["chunk_index"]
        )
        return [(chunk_id, with_context(str(meta.get("context") or ""), text)) for meta, chunk_id, text in rows]

    def _live(self, sources: Iterable[str]) -> dict[str, str]:
        return {d.source: d.version for d in self._documents(ids=sorted(set(sources)))}

    @_chroma_failures_as_store_errors
    def chunks_by_id(self, ids: Sequence[str], live: Mapping[str, str] | None = None) -> dict[str, StoredChunk]:
        """Chunks by record id.

        Only chunks of live versions are returned: an id that another process replaced or deleted
        a moment ago is simply absent.
        """
        chunks = self._chunk_collection()
        wanted = list(dict.fromkeys(ids))
        if chunks is None or not wanted:
            return {}
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for begin in range(0, len(wanted), 1000):  # a whole evaluation's hits at once: in parts
            found = chunks.get(ids=wanted[begin : begin + 1000], include=["documents", "metadatas"])
            rows.extend(zip(found["ids"], found["documents"], found["metadatas"], strict=True))
        if live is None:
            live = self._live(meta["source"] for _, _, meta in rows)
        return {
            chunk_id: _stored_chunk(text, meta)
            for chunk_id, text, meta in rows
            if live.get(meta["source"]) == meta["version"]
        }

    @_chroma_failures_as_store_errors
    def vectors_by_id(self, ids: Sequence[str], live: Mapping[str, str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks by record id, of live versions only (vectors alone: a cheaper read)."""
        chunks = self._chunk_collection()
        versions = set(live.values())
        wanted = [i for i in dict.fromkeys(ids) if version_of(i) in versions]
        if chunks is None or not wanted:
            return {}
        found = chunks.get(ids=wanted, include=["embeddings"])
        return {
            chunk_id: np.asarray(vector, dtype=np.float32)
            for chunk_id, vector in zip(found["ids"], found["embeddings"], strict=True)
        }

    @_chroma_failures_as_store_errors
    def chunks_at(self, source: str, version: str, indexes: Sequence[int]) -> list[StoredChunk]:
        """Chunks of one version of a document by position, in document order: a hit's neighbours."""
        chunks = self._chunk_collection()
        if chunks is None or not indexes:
            return []
        ids = [chunk_id(version, index) for index in indexes]
        found = chunks.get(ids=ids, include=["documents", "metadatas"])
        rows = [
            _stored_chunk(text, meta)
            for text, meta in zip(found["documents"], found["metadatas"], strict=True)
            if meta["source"] == source
        ]
        return sorted(rows, key=lambda c: c.chunk_index)

    @_chroma_failures_as_store_errors
    def count(self) -> int:
        """Number of chunk records, including any not yet committed."""
        self.refresh()
        chunks = self._chunk_collection()
        return 0 if chunks is None else int(chunks.count())

    def nearest_many(
        self,
        embeddings: np.ndarray,
        k: int,
        live: Mapping[str, str],
        sources: Sequence[str] | None = None,
        batch: int = 256,
    ) -> list[list[tuple[str, float]]]:
        """The ids and cosine similarities of the ``k`` nearest visible chunks for each vector, nearest first.

        ``live`` (source → visible version, just read by the caller) says which chunks are visible:
        a chunk's version is part of its id, so nothing but ids and distances is read from Chroma
        (texts and metadata cost more than the vector search itself; ``chunks_by_id`` reads them
        for the hits that are shown).
        """
        self.refresh()
        results: list[list[tuple[str, float]]] = []
        for begin in range(0, len(embeddings), batch):
            results.extend(self._nearest_batch(embeddings[begin : begin + batch], k, live, sources))
        return results

    @_chroma_failures_as_store_errors
    def _nearest_batch(
        self, embeddings: np.ndarray, k: int, live: Mapping[str, str], sources: Sequence[str] | None
    ) -> list[list[tuple[str, float]]]:
        chunks = self._chunk_collection()
        if chunks is None or k < 1 or not live or (sources is not None and not sources):
            return [[] for _ in embeddings]
        where = {"source": {"$in": list(sources)}} if sources else None
        versions = set(live.values())
        # A few more than k, since chunks of a version that is not (or no longer) live are skipped.
        wanted = k + 8
        while True:
            found = chunks.query(
                query_embeddings=list(embeddings), n_results=wanted, where=where, include=["distances"]
            )
            visible = [
                # Chroma's cosine distance is 1 - cosine similarity.
                [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True) if version_of(i) in versions]
                for ids, distances in zip(found["ids"], found["distances"], strict=True)
            ]
            # enough for every vector, or fewer than asked came back: the collection (or filter) has no more
            if all(len(rows) >= k or len(ids) < wanted for rows, ids in zip(visible, found["ids"], strict=True)):
                break
            wanted *= 4
        return [rows[:k] for rows in visible]


def _stored_chunk(text: str, meta: dict[str, Any]) -> StoredChunk:
    place, place_end = places_from_metadata(meta)
    return StoredChunk(
        text=text,
        source=meta["source"],
        page=_page(meta.get("page")),
        page_end=_page(meta.get("page_end")),
        chunk_index=int(meta["chunk_index"]),
        char_start=int(meta["char_start"]),
        char_end=int(meta["char_end"]),
        content_hash=str(meta["content_hash"]),
        version=str(meta["version"]),
        chunk_id=chunk_id(str(meta["version"]), int(meta["chunk_index"])),
        place=place,
        place_end=place_end,
        breaks=breaks_from_metadata(meta),
    )


def chunk_id(version: str, index: int) -> str:
    """The record id of a chunk: its document version and its position."""
    return f"{version}-{index:05d}"


def version_of(record_id: str) -> str:
    """The document version in a chunk's record id (``chunk_id``'s inverse, for the version)."""
    return record_id.rsplit("-", 1)[0]


def _same_model(bound: dict[str, Any], model_name: str, dimension: int, fingerprint: Sequence[float]) -> bool:
    if int(bound.get("embedding_dimension", dimension)) != dimension:
        return False
    if bound.get("embedding_model") == model_name:
        return True
    stored = json.loads(bound.get("embedding_fingerprint", "[]"))
    if len(stored) != len(fingerprint):
        return False
    dot = sum(a * b for a, b in zip(stored, fingerprint, strict=True))
    norm = math.sqrt(sum(a * a for a in stored) * sum(b * b for b in fingerprint)) or 1.0
    return dot / norm >= _SAME_MODEL_COSINE
