"""Readers that misbehave as a crafted file can make a parser misbehave: for the isolated reader's tests."""

from __future__ import annotations

import os
import time

from ingest.loaders import LoadedFile


def hang(seconds: float) -> LoadedFile:
    """A parser in an endless loop (for ``seconds``)."""
    time.sleep(seconds)
    raise AssertionError("should have been stopped")


def crash() -> LoadedFile:
    """A parser that dies in native code."""
    os.abort()


def balloon(megabytes: int) -> LoadedFile:
    """A decompression bomb: asks for far more memory than a document needs."""
    blocks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    raise AssertionError(f"allocated {len(blocks)} MB")
