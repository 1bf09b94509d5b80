"""Chunk records written straight to the store, without chunking or a model, for store tests and benchmarks."""

from __future__ import annotations

import numpy as np

from pipelines.store.records import ChunkRecord, chunk_id


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
