"""Originals: each stored document's file bytes, kept by content hash, to download or render exactly what was given.

An original lives at ``root/<hash[:2]>/<hash>``, where the hash is the document's ``content_hash``
(the SHA-256 of its bytes), so the same file under two names is kept once. A file is written whole
or not at all: into a temporary file beside it, flushed to disk, then renamed over its name. Only a
64-character hex digest ever becomes a path.

The indexer keeps the invariant (pipelines/store/indexing.py): an original is written before its document
becomes visible and removed after its last document is gone, so a write that dies leaves at worst an
original no document uses. ``sweep`` removes those, but only once they are older than ``grace``
seconds: a writer on another machine sharing the directory may have written its original and not yet
committed the document.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipelines.errors import FileChangedError

_HASH = re.compile(r"[0-9a-f]{64}")
# a temporary file is "<hash>.tmp-<random>", in the directory of the original it becomes
_TMP = ".tmp-"
_CHUNK = 1024 * 1024


def _checked(content_hash: str) -> str:
    if not isinstance(content_hash, str) or not _HASH.fullmatch(content_hash):
        raise ValueError(f"not a content hash (64 lower-case hex characters): {content_hash!r}")
    return content_hash


class Originals:
    """The original bytes of stored documents, in a directory (created on the first ``put``).

    ``grace``: seconds an original no document uses is left alone by ``sweep`` (a writer may not have
    committed its document yet); 0 sweeps at once (tests, a single writer that just recovered).
    """

    def __init__(self, root: Path, grace: float = 600.0) -> None:
        self.root = root
        self.grace = grace

    def _path(self, content_hash: str) -> Path:
        digest = _checked(content_hash)
        return self.root / digest[:2] / digest

    def path(self, content_hash: str) -> Path | None:
        """Where the original with this hash lies, or None when none is kept (a text given without a file)."""
        path = self._path(content_hash)
        return path if path.is_file() else None

    def get(self, content_hash: str) -> bytes | None:
        """The original's bytes, or None when none is kept."""
        try:
            return self._path(content_hash).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, content_hash: str, data: bytes) -> None:
        """Keep ``data`` as the original with this hash (which it must have); one kept already is only made young."""
        target = self._path(content_hash)
        if _kept(target):
            return
        actual = hashlib.sha256(data).hexdigest()
        if actual != content_hash:
            raise ValueError(f"the bytes have hash {actual}, not {content_hash}")
        with self._writing(target) as handle:
            handle.write(data)

    def put_file(self, content_hash: str, path: Path) -> None:
        """Copy the file at ``path`` as the original with this hash, streamed and checked as it is copied.

        A file whose bytes no longer have this hash changed after it was read: ``FileChangedError``,
        and nothing is kept.
        """
        target = self._path(content_hash)
        if _kept(target):
            return
        digest = hashlib.sha256()
        with self._writing(target) as handle, path.open("rb") as source:
            while block := source.read(_CHUNK):
                digest.update(block)
                handle.write(block)
            if digest.hexdigest() != content_hash:
                raise FileChangedError(
                    f"{path}: 読み込み中にファイルが変更されました（読んだ内容と今の内容が違います）。"
                    "書き込みが終わってから、もう一度取り込んでください。"
                )

    @contextlib.contextmanager
    def _writing(self, target: Path) -> Iterator[BinaryIO]:
        """A temporary file beside ``target``, renamed to it once written and on disk; removed if anything fails."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{target.name}{_TMP}{uuid.uuid4().hex}")
        try:
            with temporary.open("xb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _sync_directory(target.parent)

    def remove(self, content_hash: str) -> None:
        """Forget the original with this hash (nothing to do if none is kept)."""
        self._path(content_hash).unlink(missing_ok=True)

    def sweep(self, live: set[str], older_than: float | None = None) -> int:
        """Remove originals whose hash is not in ``live``, and temporary files left by a dead writer.

        Only files last modified more than ``older_than`` seconds ago (default ``grace``) go: another
        writer's original whose document is not committed yet is younger. Returns how many were removed.
        """
        limit = time.time() - (self.grace if older_than is None else older_than)
        removed = 0
        for path in self._files():
            name = path.name
            if name in live:
                continue
            if not (_HASH.fullmatch(name) or _HASH.fullmatch(name.split(_TMP, 1)[0])):
                continue  # not ours: never touched
            try:
                if path.stat().st_mtime <= limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # another writer swept or renamed it meanwhile
        return removed

    def _files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if len(shard.name) == 2 and shard.is_dir():
                yield from (p for p in sorted(shard.iterdir()) if p.name[:2] == shard.name and p.is_file())


def _kept(target: Path) -> bool:
    """Whether an original is kept at ``target``; if so it is made young again, so that no ``sweep``
    (another machine's) takes it before the document that wants it now is committed."""
    try:
        os.utime(target)
    except FileNotFoundError:
        return False
    except PermissionError:
        pass  # another user's file in a shared directory: kept, only not made young
    return True


def _sync_directory(directory: Path) -> None:
    """Put a rename in ``directory`` on disk (a file system that cannot sync a directory needs none)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
