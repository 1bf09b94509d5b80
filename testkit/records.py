"""Chunk records written straight to the store, and chunks as read back, without chunking or a model, for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from ingest.document import NOWHERE, Place
from pipelines.store.records import ChunkRecord, StoredChunk, chunk_id


def chunk_record(
    source: str, version: str, index: int, text: str, vector: np.ndarray, **extra: str | int | float | bool
) -> ChunkRecord:
    """Chunk ``index`` of one version of ``source``, with the metadata the store reads back (no pages)."""
    metadata: dict[str, str | int | float | bool] = {
        "source": source,
        "version": version,
        "content_hash": version,
        "chunk_index": index,
        "page": 0,
        "page_end": 0,
        "char_start": 0,
        "char_end": len(text),
        "text_hash": f"{version}-{index}",
        **extra,
    }
    return ChunkRecord(chunk_id(version, index), text, vector, metadata)


def stored_chunk(
    text: str, source: str = "doc", index: int = 0, page: int | None = None, chunk_id: str = "", version: str = "v"
) -> StoredChunk:
    """A chunk as the store gives it back, made by hand: the whole of ``text``, on ``page`` when given."""
    place = NOWHERE if page is None else Place(page=page)
    return StoredChunk(text, source, index, 0, len(text), "h", version, chunk_id, place, place)
