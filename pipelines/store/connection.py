"""The connection to Chroma: one client shared by every collection's store, reopened after another process writes.

``Connection`` holds the client and the generation token; ``persistent_connection`` and
``http_connection`` open one; ``CollectionPair`` holds one collection's chunk and registry handles in
it; ``chroma_failures_as_store_errors`` turns what Chroma raises into a ``StoreError``.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import httpx
from chromadb.errors import ChromaError

from pipelines.errors import CollectionNotFoundError, StoreError


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


def _refused(error: BaseException) -> bool:
    """Whether Chroma (or the proxy in front of it) refused the credentials."""
    text = str(error)
    return any(mark in text for mark in ("401", "403", "Unauthorized", "Forbidden", "AuthError", "Authentication"))


def http_connection(host: str, port: int, *, ssl: bool = False, token: str = "") -> Connection:
    """A connection to a Chroma server (``chroma run``, or one behind a proxy that checks the token)."""
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
    return Connection(lambda: client, location=location)


def persistent_connection(data_dir: Path) -> Connection:
    """A connection to the embedded Chroma in ``data_dir``, reopened when another process leaves a new generation."""
    import chromadb

    def open_client() -> Any:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(
                path=str(data_dir / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise StoreError(f"データディレクトリ「{data_dir}」のストアを開けません（{error}）。") from error

    return Connection(open_client, data_dir / "generation", str(data_dir))


class CollectionPair:
    """One collection's chunk collection (``<name>``) and registry (``<name>-registry``) in a connection.

    The handles are opened on first use and dropped when the connection reopens its client; the
    store's reader and writer share them, so a collection the writer binds is the one the reader reads.
    """

    def __init__(self, connection: Connection, name: str, location: str = "") -> None:
        self.connection = connection
        self.name = name
        # for error messages: the server's address or the data directory
        self.location = location or connection.location
        self.chunks_handle: Any = None
        self.registry_handle: Any = None
        self._epoch = connection.epoch

    @property
    def client(self) -> Any:
        """The Chroma client (shared with the stores of the other collections in it)."""
        return self.connection.client

    def refresh(self) -> None:
        """See another process's writes: reopen the client if it has written (``Connection``)."""
        epoch = self.connection.refresh()
        if epoch != self._epoch:
            self.forget()
            self._epoch = epoch

    def settle(self) -> None:
        """Inside a call holding the client: drop handles of an earlier client that was reopened between this
        thread's ``refresh`` and its hold (no reopening can happen while it holds the client)."""
        if self._epoch != self.connection.epoch:
            self.forget()
            self._epoch = self.connection.epoch

    def forget(self) -> None:
        """Drop the handles (the collections were dropped, or the client reopened)."""
        self.chunks_handle = self.registry_handle = None

    def open(self, suffix: str, create: bool, metadata: dict[str, Any] | None = None) -> Any:
        """The collection ``name + suffix`` (None: it does not exist and ``create`` is False)."""
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

    def chunks(self) -> Any:
        """The chunk collection (None: it does not exist)."""
        if self.chunks_handle is None:
            self.chunks_handle = self.open("", create=False)
        return self.chunks_handle

    def registry(self) -> Any:
        """The registry collection (None: it does not exist)."""
        if self.registry_handle is None:
            self.registry_handle = self.open("-registry", create=False)
        return self.registry_handle

    def gone(self) -> CollectionNotFoundError:
        """The error for a collection dropped since its store was made."""
        return CollectionNotFoundError(
            f"コレクション（Chroma の「{self.name}」）がありません。削除されたようです。一覧を確かめてください。"
        )


class _OnPair(Protocol):
    pair: CollectionPair


F = TypeVar("F", bound=Callable[..., Any])


def _collection_missing(error: BaseException) -> bool:
    """Whether Chroma says the collection is gone (dropped by a delete while a handle to it was held)."""
    from chromadb.errors import NotFoundError

    return isinstance(error, NotFoundError) or bool(re.search(r"Collection .* does not exist", str(error)))


def chroma_failures_as_store_errors(method: F) -> F:
    """Chroma failures (a server gone, a token refused) become a StoreError that says where and what.

    A collection dropped meanwhile (a search racing the collection's delete) is ``CollectionNotFoundError``.
    The decorated method runs holding the client (``Connection.using``), after any reopening it needs.
    """

    @functools.wraps(method)
    def wrapper(self: _OnPair, *args: Any, **kwargs: Any) -> Any:
        pair = self.pair
        try:
            pair.refresh()  # before the client is held: a reopening waits for the calls that hold it
            with pair.connection.using():
                pair.settle()  # another thread may have reopened the client since this one's refresh
                return method(self, *args, **kwargs)
        except (ChromaError, httpx.HTTPError) as error:
            if _collection_missing(error):
                pair.forget()  # a collection made again under this name is a new one: its handles are opened anew
                raise pair.gone() from error
            if _refused(error):
                raise StoreError(
                    f"Chroma（{pair.location}）で認証に失敗しました（{error}）。RAG_CHROMA_TOKEN を確かめてください。"
                ) from error
            raise StoreError(
                f"Chroma（{pair.location}）を使えません（{type(error).__name__}: {error}）。"
                "書きかけの文書は検索に出ず、次の書き込みで片付けられます。接続と認証を確かめて、もう一度実行してください。"
            ) from error

    return cast(F, wrapper)
