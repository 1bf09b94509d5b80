"""The store's reads: documents as the registry has them, and only the chunks of their live versions."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pipelines.errors import ModelMismatchError
from pipelines.store.connection import CollectionPair, chroma_failures_as_store_errors
from pipelines.store.records import StoredChunk, StoredDocument, chunk_id, stored_chunk, version_of, with_context

# The registry record whose token changes with every commit and delete, so that a reader can tell
# in one lookup whether anything changed. No document can have this name: names have no NUL.
CHANGES = "\x00changes"
# Two loads of the same model give the fingerprint sentence a cosine of 1 up to rounding (or
# reduced precision); two different models are far below this.
_SAME_MODEL_COSINE = 0.98


class StoreReader:
    """Reads one collection: a chunk is visible only when its version is its document's live version."""

    def __init__(self, pair: CollectionPair) -> None:
        self.pair = pair

    @chroma_failures_as_store_errors
    def exists(self) -> bool:
        """Whether the chunk collection exists (made by ``create`` or the first document)."""
        return self.pair.chunks() is not None

    @chroma_failures_as_store_errors
    def metadata(self) -> dict[str, Any]:
        """The chunk collection's metadata (its model, its display name); empty when it does not exist."""
        chunks = self.pair.chunks()
        return dict(chunks.metadata or {}) if chunks is not None else {}

    @chroma_failures_as_store_errors
    def collection_metadata(self) -> dict[str, dict[str, Any]]:
        """Every collection in the client by name, with its metadata (chunk and registry collections alike)."""
        return {c.name: dict(c.metadata or {}) for c in self.pair.client.list_collections()}

    @chroma_failures_as_store_errors
    def bound_model(self) -> str | None:
        """The name of the embedding model the store is bound to (None: none yet), read without any model."""
        chunks = self.pair.chunks()
        name = (chunks.metadata or {}).get("embedding_model") if chunks is not None else None
        return None if name is None else str(name)

    @chroma_failures_as_store_errors
    def check_model(self, model_name: str, dimension: int, fingerprint: Sequence[float]) -> None:
        """Refuse to search this store with another model's vectors (an empty store is fine)."""
        chunks = self.pair.chunks()
        bound = (chunks.metadata or {}) if chunks is not None else {}
        require_same_model(self.pair.name, bound, model_name, dimension, fingerprint)

    @chroma_failures_as_store_errors
    def changes(self) -> str:
        """A token that changes whenever any process commits or deletes a document ("" before the first)."""
        registry = self.pair.registry()
        if registry is None:
            return ""
        found = registry.get(ids=[CHANGES], include=["metadatas"])
        return str(found["metadatas"][0]["token"]) if found["ids"] else ""

    @chroma_failures_as_store_errors
    def _documents(self, **query: Any) -> list[StoredDocument]:
        registry = self.pair.registry()
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
        self.pair.refresh()
        found = self._documents(ids=[source])
        return found[0] if found else None

    def document_with_version(self, version: str) -> StoredDocument | None:
        """A stored document whose live version is ``version`` (same content, same chunking)."""
        self.pair.refresh()
        found = self._documents(where={"version": version})
        return found[0] if found else None

    def holds_content(self, content_hash: str) -> bool:
        """Whether a stored document has this content (under any name and chunking)."""
        self.pair.refresh()
        return bool(self._documents(where={"content_hash": content_hash}))

    def documents(self) -> list[StoredDocument]:
        """Every stored document, by name."""
        self.pair.refresh()
        return sorted(self._documents(), key=lambda d: d.source)

    def live_versions(self) -> dict[str, str]:
        """The visible version of every stored document, by source."""
        self.pair.refresh()
        return {d.source: d.version for d in self._documents()}

    def _live(self, sources: Iterable[str]) -> dict[str, str]:
        return {d.source: d.version for d in self._documents(ids=sorted(set(sources)))}

    @chroma_failures_as_store_errors
    def vectors_for(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks whose text has one of these digests: the same text is never embedded twice."""
        chunks = self.pair.chunks()
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

    @chroma_failures_as_store_errors
    def chunk_texts(self, source: str, version: str) -> list[tuple[str, str]]:
        """Record id and text of every chunk of one version of a document, in document order, as keyword-indexed
        (with the chunk's context before it, when it was stored with one)."""
        chunks = self.pair.chunks()
        if chunks is None:
            return []
        found = chunks.get(
            where={"$and": [{"source": source}, {"version": version}]}, include=["documents", "metadatas"]
        )
        rows = sorted(
            zip(found["metadatas"], found["ids"], found["documents"], strict=True), key=lambda r: r[0]["chunk_index"]
        )
        return [(chunk_id, with_context(str(meta.get("context") or ""), text)) for meta, chunk_id, text in rows]

    @chroma_failures_as_store_errors
    def chunks_by_id(self, ids: Sequence[str], live: Mapping[str, str] | None = None) -> dict[str, StoredChunk]:
        """Chunks by record id.

        Only chunks of live versions are returned: an id that another process replaced or deleted
        a moment ago is simply absent.
        """
        chunks = self.pair.chunks()
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
            chunk_id: stored_chunk(text, meta)
            for chunk_id, text, meta in rows
            if live.get(meta["source"]) == meta["version"]
        }

    @chroma_failures_as_store_errors
    def vectors_by_id(self, ids: Sequence[str], live: Mapping[str, str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks by record id, of live versions only (vectors alone: a cheaper read)."""
        chunks = self.pair.chunks()
        versions = set(live.values())
        wanted = [i for i in dict.fromkeys(ids) if version_of(i) in versions]
        if chunks is None or not wanted:
            return {}
        found = chunks.get(ids=wanted, include=["embeddings"])
        return {
            chunk_id: np.asarray(vector, dtype=np.float32)
            for chunk_id, vector in zip(found["ids"], found["embeddings"], strict=True)
        }

    @chroma_failures_as_store_errors
    def chunks_at(self, source: str, version: str, indexes: Sequence[int]) -> list[StoredChunk]:
        """Chunks of one version of a document by position, in document order: a hit's neighbours."""
        chunks = self.pair.chunks()
        if chunks is None or not indexes:
            return []
        ids = [chunk_id(version, index) for index in indexes]
        found = chunks.get(ids=ids, include=["documents", "metadatas"])
        rows = [
            stored_chunk(text, meta)
            for text, meta in zip(found["documents"], found["metadatas"], strict=True)
            if meta["source"] == source
        ]
        return sorted(rows, key=lambda c: c.chunk_index)

    @chroma_failures_as_store_errors
    def document_chunks(self, source: str, version: str) -> list[StoredChunk]:
        """Every chunk of one version of a document, in document order."""
        chunks = self.pair.chunks()
        if chunks is None:
            return []
        found = chunks.get(
            where={"$and": [{"source": source}, {"version": version}]}, include=["documents", "metadatas"]
        )
        rows = [stored_chunk(text, meta) for text, meta in zip(found["documents"], found["metadatas"], strict=True)]
        return sorted(rows, key=lambda c: c.chunk_index)

    @chroma_failures_as_store_errors
    def count(self) -> int:
        """Number of chunk records, including any not yet committed."""
        chunks = self.pair.chunks()
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
        self.pair.refresh()
        results: list[list[tuple[str, float]]] = []
        for begin in range(0, len(embeddings), batch):
            results.extend(self._nearest_batch(embeddings[begin : begin + batch], k, live, sources))
        return results

    @chroma_failures_as_store_errors
    def _nearest_batch(
        self, embeddings: np.ndarray, k: int, live: Mapping[str, str], sources: Sequence[str] | None
    ) -> list[list[tuple[str, float]]]:
        chunks = self.pair.chunks()
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


def require_same_model(
    collection: str, bound: dict[str, Any], model_name: str, dimension: int, fingerprint: Sequence[float]
) -> None:
    """Refuse ``model_name``'s vectors in a collection whose metadata ``bound`` names another model."""
    stored = bound.get("embedding_model")
    if stored is not None and not _same_model(bound, model_name, dimension, fingerprint):
        raise ModelMismatchError(
            f"このストア（コレクション「{collection}」）は埋め込みモデル「{stored}」"
            f"（{bound.get('embedding_dimension')} 次元）で作られていて、"
            f"「{model_name}」のベクトルとは比べられません。"
            f"RAG_EMBEDDING_MODEL={stored} を指定するか、"
            "別の RAG_DATA_DIR か RAG_COLLECTION を使ってください。"
        )


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
