"""Collections: named libraries, each with its own chunks, registry, keyword index and originals.

A person names a collection in any script (人事規程, Tech Docs 2024). Chroma takes only 3–512
characters of ``[a-zA-Z0-9._-]``, so a name maps to a Chroma name: ``c-``, a readable slug of its
Latin letters and digits, and 8 hex digits of the SHA-256 of the name (人事規程 → ``c-0f6c2a4e``,
Tech Docs 2024 → ``c-tech-docs-2024-5e6f7a8b``). The name as typed (NFKC-normalised) is kept in the
chunk collection's metadata as ``display_name``, and the list reads it from there.

``default`` is the collection every store had before collections existed: Chroma's ``documents``,
the keyword index ``keyword/documents.npz`` and the originals directory itself, so an existing store
is the default collection, unchanged. A collection made earlier under another ``RAG_COLLECTION``
(no display name in its metadata) is found under that name, with the originals directory it used.
Any other collection keeps its originals in ``<originals>/<chroma name>/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import CollectionExistsError, CollectionNameError, CollectionNotFoundError
from pipelines.store.chroma import ChromaStore
from pipelines.store.keyword import remove_files as remove_keyword_files

DEFAULT = "default"
# the Chroma name of the default collection: the one stores used before there were collections
LEGACY = "documents"
MAX_NAME = 64
_REGISTRY = "-registry"
_FORBIDDEN = set('/\\?#%"<>')


def clean_name(name: str) -> str:
    """A collection's name as kept: NFKC-normalised, trimmed; refused with the reason when no collection can have it."""
    cleaned = unicodedata.normalize("NFKC", str(name)).strip()
    if not cleaned:
        raise CollectionNameError("コレクション名が空です。名前を入力してください（例: 人事規程）。")
    if len(cleaned) > MAX_NAME:
        raise CollectionNameError(f"コレクション名は {MAX_NAME} 文字以内にしてください（現在 {len(cleaned)} 文字）。")
    bad = sorted({c for c in cleaned if c in _FORBIDDEN or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
    if bad or cleaned in (".", ".."):
        shown = "".join(c if c.isprintable() else repr(c) for c in bad) or cleaned
        raise CollectionNameError(
            f"コレクション名「{cleaned}」には使えない文字があります（{shown}）。"
            '/ \\ ? # % " < > と制御文字は使えません。'
        )
    return cleaned


def canonical_name(name: str) -> str:
    """The one name a collection goes by, whatever spelling reached it: NFKC, trimmed, and ``documents``
    (the default's Chroma name, accepted as ``RAG_COLLECTION`` before collections) as ``default``.

    Rights are checked, and a process's parts are kept, under this name, so no second spelling of a
    collection reaches it around a rule made for its name.
    """
    cleaned = clean_name(name)
    return DEFAULT if cleaned in (DEFAULT, LEGACY) else cleaned


def chroma_name(name: str) -> str:
    """The Chroma collection a name maps to (``default`` → ``documents``; any other: slug and hash)."""
    cleaned = clean_name(name)
    if cleaned in (DEFAULT, LEGACY):  # RAG_COLLECTION=documents, the Chroma name before, is the default too
        return LEGACY
    slug = re.sub(r"[^a-z0-9]+", "-", cleaned.lower().encode("ascii", "ignore").decode()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(cleaned.encode("utf-8")).hexdigest()[:8]
    return f"c-{slug}-{digest}" if slug else f"c-{digest}"


def keyword_path(directory: Path, chroma: str, prefix: str = "") -> Path:
    """The keyword index file of a Chroma collection (``prefix``: the server's host and port, for a server)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in prefix + chroma)
    return directory / f"{safe}.npz"


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as listed: its name, its Chroma name, and how many documents and chunks it holds."""

    name: str
    chroma_name: str
    documents: int
    chunks: int
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Location:
    """Where one collection's parts live: its store, its keyword index file, its originals directory."""

    name: str
    store: ChromaStore
    keyword_path: Path
    originals_dir: Path


class Collections:
    """The collections in one Chroma client (embedded or a server), with their keyword indexes and originals.

    ``root`` is the default collection's store; the others share its client. ``keyword_dir`` and
    ``originals_dir`` are the directories of the default collection's keyword index and originals.
    """

    def __init__(self, root: ChromaStore, keyword_dir: Path, originals_dir: Path, keyword_prefix: str = "") -> None:
        self.root = root
        self.keyword_dir = keyword_dir
        self.originals_dir = originals_dir
        self.keyword_prefix = keyword_prefix

    def _resolve(self, name: str) -> tuple[str, str, dict[str, Any] | None]:
        """The cleaned name, its Chroma name and that collection's metadata (None: it does not exist)."""
        cleaned = clean_name(name)
        known = self.root.reader.collection_metadata()
        target = chroma_name(cleaned)
        if target in known:
            return cleaned, target, known[target]
        if cleaned in known and not cleaned.endswith(_REGISTRY) and "display_name" not in known[cleaned]:
            return cleaned, cleaned, known[cleaned]  # made before collections, under RAG_COLLECTION
        return cleaned, target, None

    def open(self, name: str) -> Location:
        """The parts of the collection called ``name``; the default one always exists (made by its first document)."""
        cleaned, target, meta = self._resolve(name)
        if meta is None and target != LEGACY:
            raise CollectionNotFoundError(
                f"コレクション「{cleaned}」はありません。`python -m pipelines collections` で名前を確かめるか、"
                f"`python -m pipelines collections create {cleaned}` で作ってください。"
            )
        own = meta is not None and "display_name" in meta
        store = self.root if target == LEGACY else self.root.sibling(target)
        store.writer.creates = target == LEGACY
        return Location(
            cleaned,
            store,
            keyword_path(self.keyword_dir, target, self.keyword_prefix),
            self.originals_dir / target if own else self.originals_dir,
        )

    def names(self) -> list[str]:
        """Every collection's name, the default first, then by name (no counts: one read of the client)."""
        return [name for name, _, _ in self._found()]

    def _found(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, Chroma name, metadata) of every collection, the default first, then by name."""
        known = self.root.reader.collection_metadata()
        found = {LEGACY: DEFAULT}
        for chroma, meta in known.items():
            if not chroma.endswith(_REGISTRY):
                found.setdefault(chroma, str(meta.get("display_name") or chroma))
        rows = [(display, chroma, known.get(chroma, {})) for chroma, display in found.items()]
        return sorted(rows, key=lambda row: (row[1] != LEGACY, row[0]))

    def catalogue(self) -> list[CollectionInfo]:
        """Every collection with its counts, the default first, then by name."""
        return [self._info(name, chroma, meta) for name, chroma, meta in self._found()]

    def info(self, name: str) -> CollectionInfo:
        """One collection's counts."""
        location = self.open(name)
        return self._info(location.name, location.store.name, location.store.reader.metadata())

    def _info(self, name: str, chroma: str, meta: dict[str, Any]) -> CollectionInfo:
        store = self.root if chroma == LEGACY else self.root.sibling(chroma)
        try:
            documents = store.documents()
        finally:
            if store is not self.root:
                store.close()
        return CollectionInfo(
            name, chroma, len(documents), sum(d.chunks for d in documents), str(meta.get("created_at", ""))
        )

    def create(self, name: str) -> CollectionInfo:
        """Make an empty collection; one of this name existing already is refused."""
        cleaned, target, meta = self._resolve(name)
        if meta is not None or target == LEGACY:
            raise CollectionExistsError(f"コレクション「{cleaned}」はもうあります。別の名前にしてください。")
        store = self.root.sibling(target)
        try:
            created = datetime.now(UTC).isoformat(timespec="seconds")
            store.writer.create({"display_name": cleaned, "created_at": created})
        finally:
            store.close()
        return CollectionInfo(cleaned, target, 0, 0, created)

    def delete(self, name: str) -> CollectionInfo:
        """Delete a collection: its chunks and registry first (then no search finds it), then its keyword index and originals."""
        location = self.open(name)
        if location.store is self.root:
            raise CollectionExistsError(
                f"既定のコレクション「{DEFAULT}」は削除できません。文書は `python -m pipelines delete 文書名` で"
                "一つずつ削除できます。"
            )
        info = self._info(location.name, location.store.name, location.store.reader.metadata())
        try:
            location.store.writer.drop()
        finally:
            location.store.close()
        remove_keyword_files(location.keyword_path)
        if location.originals_dir != self.originals_dir:  # a collection made before collections shares the root
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(location.originals_dir)
        return info
