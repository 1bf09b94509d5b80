"""Indexing: files to chunks to vectors in the store, incrementally, one report per file."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from ingest.chunking import Chunk, chunk_text, sentence_spans
from ingest.document import Place, Section
from ingest.errors import EmptyDocumentError, FileTooLargeError, IngestError
from ingest.isolation import InProcessReader, Reader
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.loaders import LoadedFile, content_hash, supported, unsupported_reason
from ingest.normalize import join_sections, normalize_text
from pipelines.errors import SettingsError
from pipelines.model.embedder import Progress, TextEmbedder
from pipelines.store.chroma import ChromaStore
from pipelines.store.keyword import KeywordIndex
from pipelines.store.originals import Originals
from pipelines.store.paths import collect_paths, owner_file, upload_name
from pipelines.store.records import ChunkRecord, StoredDocument, chunk_id, place_metadata, with_context
from pipelines.store.sentences import Sentences, SentenceVectors

# Bump when normalisation or chunking changes what a file turns into, so re-ingest rebuilds it.
# 2: over-long sentences cut at their commas (the offset was wrong), repeated commas one clause end.
# 3: files read in sections with places (Markdown cut at its headings); chunks carry their location.
CHUNKER_REVISION = 3
# the most of a document's title and heading path put before each of its chunks (``chunk_context``)
CONTEXT_CHARACTERS = 100

Status = Literal["added", "replaced", "unchanged", "duplicate", "failed", "skipped"]


def text_hash(text: str) -> str:
    """Digest of a chunk's text, to find a stored vector for the same text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def document_title(source: str) -> str:
    """A document's title as its chunks' context gives it: its name without an extension the readers know."""
    return Path(source).stem if supported(source) else source


def chunk_context(source: str, place: Place) -> str:
    """What is put before a chunk's text when it is embedded and keyword-indexed, not when it is shown.

    The document's title, then the sheet and the headings above the chunk (a Word, Markdown or HTML
    heading path, a slide's title), joined by 「 > 」, normalised as the text is, at most
    ``CONTEXT_CHARACTERS``: a passage that says 「申請は 1 週間前まで」 under 「出張旅費規程 > 第3条
    申請」 is found by a question about 出張 that its own words do not answer.
    """
    parts: list[str] = []
    for part in (document_title(source), place.sheet or "", *place.heading):
        part = normalize_text(part).replace("\n", " ").strip()
        if part and (not parts or parts[-1] != part):
            parts.append(part)
    return " > ".join(parts)[:CONTEXT_CHARACTERS].strip()


@dataclass(frozen=True)
class FileReport:
    """What ingesting one file did."""

    source: str
    status: Status
    chunks: int = 0
    tokens: int = 0
    message: str = ""
    notes: tuple[str, ...] = ()


def mixed_precisions(documents: Sequence[StoredDocument]) -> str:
    """A warning, in Japanese, when stored documents were embedded in different precisions; "" otherwise.

    Their vectors differ by rounding (each path passed the guard against float32), so search works,
    but a person should know, and can make them one by re-ingesting with ``RAG_PRECISION`` set.
    """
    counts = Counter(d.precision for d in documents if d.precision)
    if len(counts) < 2:
        return ""
    parts = "、".join(f"{precision} {count} 件" for precision, count in counts.most_common())
    return (
        f"保存済みの文書は違う精度で埋め込まれています（{parts}）。検索はできますが、揃えるには "
        "RAG_PRECISION を指定し、その文書を削除して取り込み直してください。"
    )


FileProgress = Callable[[str], Progress | None]
"""Given a file's name, returns the progress callback for its embedding batches (or None)."""


@dataclass(frozen=True)
class _Unread:
    """A file whose content hash says it is stored already (unchanged or a duplicate), hashed, not read."""

    source: str
    content_hash: str
    path: Path


@dataclass(frozen=True)
class _Prepared:
    """A file read from disk and, when it will probably be embedded, already cut into chunks."""

    loaded: LoadedFile
    chunks: list[Chunk] | None
    path: Path


def _failed(source: str, error: IngestError | OSError) -> FileReport:
    if isinstance(error, IngestError):
        return FileReport(source, "failed", message=str(error))
    return FileReport(source, "failed", message=f"{source}: ファイルを読めません（{error.strerror or error}）。")


def _skipped(source: str) -> FileReport:
    name = source.rsplit("/", 1)[-1]
    reason = "Office が開いている間だけ置く一時ファイル（~$）" if owner_file(name) else unsupported_reason(source)
    return FileReport(source, "skipped", message=reason)


class Indexer:
    """Chunks, embeds and stores documents; unchanged files cost no embedding, and no model loaded.

    ``prefetch``: how many files ``ingest_paths`` reads, normalises and chunks ahead, in a background
    thread, while the current one is embedded (0: each file in turn, nothing in the background).
    ``limits``: what one file may hold (pages, characters, …); a file over them is reported as failed.
    ``reader``: how files are read: ``IsolatedReader`` in a child process with a time and memory bound
    (what ``build`` gives), in this process by default.
    ``originals``: where each document's file is kept as it was given (None: not kept). An original
    is written before its document becomes visible and removed after the last document with its
    content is gone, so no visible document ever lacks its original, whatever point a run dies at;
    what a dead run leaves is swept at the start of a later write.
    ``context``: each chunk is embedded and keyword-indexed with its document's title and heading
    path before it (``chunk_context``), and shown without them.
    """

    def __init__(
        self,
        embedder: TextEmbedder,
        store: ChromaStore,
        chunk_tokens: int,
        chunk_overlap: int,
        max_bytes: int = 50 * 1024 * 1024,
        keyword: KeywordIndex | None = None,
        prefetch: int = 2,
        limits: Limits = DEFAULT_LIMITS,
        reader: Reader | None = None,
        originals: Originals | None = None,
        context: bool = False,
        sentences: SentenceVectors | None = None,
    ) -> None:
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, got {prefetch}")
        self.embedder = embedder
        self.store = store
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.max_bytes = max_bytes
        self.prefetch = prefetch
        self.keyword = keyword
        self.limits = limits
        self.reader: Reader = reader or InProcessReader()
        self.originals = originals
        self.context = context
        self.sentences = sentences
        self._context_tokens: dict[str, int] = {}
        self._swept_at: float | None = None
        self._bound = False
        self._batched = 0  # depth of ``batched()``: while above 0, the keyword index is saved at its end
        self._unsaved = False

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Writes in a row (a sync of a share): the keyword index is saved once at the end, not after each document.

        Saving writes the whole index, so a document at a time costs more as the collection grows. A
        run killed before the end leaves the saved index behind Chroma, never ahead of it, and the
        next search's ``KeywordIndex.sync`` reads what it lacks from the store.
        """
        self._batched += 1
        try:
            yield
        finally:
            self._batched -= 1
            if not self._batched and self._unsaved:
                self._unsaved = False
                self._save_keyword()

    def _save_keyword(self) -> None:
        if self.keyword is None:
            return
        if self._batched:
            self._unsaved = True
        else:
            self.keyword.save()

    def close(self) -> None:
        """Stop the reader's background work (``IsolatedReader``'s child process); a later file starts it again."""
        self.reader.close()

    @property
    def chunking(self) -> str:
        """A tag for how documents are cut, part of every chunk's version."""
        return f"c{CHUNKER_REVISION}-t{self.chunk_tokens}-o{self.chunk_overlap}" + ("-x" if self.context else "")

    def _bind(self) -> None:
        """Check the chunk budget against the model and the model against the store (loading the model).

        Called before the first write, never for a file that is unchanged or a duplicate: a run with
        nothing to embed loads no model.
        """
        if self._bound:
            return
        limit = self.embedder.max_tokens
        if self.chunk_tokens > limit:
            raise SettingsError(
                f"RAG_CHUNK_TOKENS（{self.chunk_tokens}）がモデル「{self.embedder.model_name}」の読める長さ"
                f"（{limit} トークン）を超えています。{limit} 以下にしてください。"
            )
        self.store.writer.bind_model(self.embedder.model_name, self.embedder.dimension, self.embedder.fingerprint())
        self._bound = True

    def _version(self, loaded: LoadedFile) -> str:
        return self._version_of(loaded.content_hash)

    def _version_of(self, content_hash: str) -> str:
        return f"{content_hash[:32]}-{self.chunking}"

    def _already(self, source: str, content_hash: str, original: bytes | Path | None) -> FileReport | None:
        """The report of a file whose content is stored already (unchanged, or a duplicate); None otherwise."""
        if not self._bound and self.store.reader.bound_model() not in (None, self.embedder.model_name):
            # a store made under another model's name: only the model's fingerprint says whether
            # its files can be called unchanged, or its vectors are another model's
            self._bind()
        version = self._version_of(content_hash)
        existing = self.store.document(source)
        if existing is not None and existing.version == version:
            self._keep(content_hash, original)  # a store from before originals were kept has none
            return FileReport(source, "unchanged", existing.chunks, existing.tokens)
        twin = self.store.reader.document_with_version(version)
        if twin is not None:
            self._keep(content_hash, original)
            return FileReport(source, "duplicate", message=f"「{twin.source}」と同じ内容のため追加しません。")
        return None

    def chunk(self, loaded: LoadedFile) -> list[Chunk]:
        """Normalise and cut a loaded file into chunks: CPU only, nothing read from or written to the store."""
        paged = join_sections(loaded.sections)
        if not paged.text:
            raise EmptyDocumentError(
                f"{loaded.source}: 正規化すると文字が残りません（制御文字や空白だけのファイルです）。"
            )
        return chunk_text(paged, self.embedder.count_tokens, self.chunk_tokens, self.chunk_overlap)

    def ingest_file(
        self,
        loaded: LoadedFile,
        progress: Progress | None = None,
        *,
        chunks: list[Chunk] | None = None,
        original: bytes | Path | None = None,
    ) -> FileReport:
        """Index one loaded file: added, replaced, unchanged or a duplicate of another stored file.

        The model is loaded, and checked against the store, only for a file that is written.

        ``chunks``: what ``chunk(loaded)`` returned, when the caller cut the file ahead. ``original``:
        the file's bytes, or the path to copy them from (checked against ``loaded.content_hash``), kept
        in ``originals``; None for a text that is no file.
        """
        version = self._version(loaded)
        already = self._already(loaded.source, loaded.content_hash, original)
        if already is not None:
            return already

        self._bind()  # before anything is written: a model that cannot load, or does not fit, writes nothing
        if chunks is None:
            chunks = self.chunk(loaded)
        contexts, embedded, tokens = self.passages(loaded.source, chunks)
        hashes = [text_hash(text) for text in embedded]
        spans = [sentence_spans(chunk.text) for chunk in chunks]
        # read once: a first start switches to a faster precision between two calls, never within one
        precision = self.embedder.precision.passages
        vectors, pooled = self._vectors(embedded, hashes, tokens, progress, spans, contexts, precision)
        records = [
            ChunkRecord(
                id=chunk_id(version, chunk.index),
                text=chunk.text,
                embedding=vector,
                metadata={
                    **({"context": context} if context else {}),
                    "source": loaded.source,
                    "version": version,
                    "content_hash": loaded.content_hash,
                    "chunk_index": chunk.index,
                    **place_metadata(chunk.place, chunk.place_end, chunk.breaks),
                    "char_start": chunk.start,
                    "char_end": chunk.end,
                    "tokens": chunk.tokens,
                    "text_hash": digest,
                    "embedding_model": self.embedder.model_name,
                    "embedding_precision": precision,
                },
            )
            for chunk, context, digest, vector in zip(chunks, contexts, hashes, vectors, strict=True)
        ]
        document = StoredDocument(
            source=loaded.source,
            version=version,
            content_hash=loaded.content_hash,
            pages=loaded.pages,
            chunks=len(chunks),
            tokens=sum(c.tokens for c in chunks),
            added_at=datetime.now(UTC).isoformat(timespec="seconds"),
            embedding_model=self.embedder.model_name,
            kind=loaded.kind,
            precision=precision,
        )
        if self.sentences is not None:  # before the commit: a visible chunk has its sentences (or none yet)
            self.sentences.put(self.embedder.model_name, pooled)
        with self.store.writing():
            self._sweep()
            previous = self.store.document(loaded.source)  # read again: another process may have written since
            # before the commit: a document is never visible without its original
            self._keep(loaded.content_hash, original)
            self.store.replace(document, records)
            if self.keyword is not None:
                # after the commit: the keyword index never holds a version that Chroma does not show
                indexed = [(r.id, text) for r, text in zip(records, embedded, strict=True)]
                self.keyword.add_document(loaded.source, version, indexed)
                self._save_keyword()
            if previous is not None:
                self._drop(previous.content_hash)
        status: Status = "added" if previous is None else "replaced"
        return FileReport(loaded.source, status, document.chunks, document.tokens, notes=loaded.notes)

    def _keep(self, content_hash: str, original: bytes | Path | None) -> None:
        """Keep the file given for ``content_hash`` as its original, unless it is kept already."""
        if self.originals is None or original is None:
            return
        if isinstance(original, Path):
            self.originals.put_file(content_hash, original)
        else:
            self.originals.put(content_hash, original)

    def _drop(self, content_hash: str) -> None:
        """After a commit or delete: forget the original of content no live document has any more."""
        if self.originals is not None and content_hash and not self.store.reader.holds_content(content_hash):
            self.originals.remove(content_hash)

    def _sweep(self) -> None:
        """At the start of a write: remove the originals a dead run left behind (old enough to be no one's).

        Only orphans older than the originals' ``grace`` go, so sweeping more often than a tenth of it
        finds nothing new: a folder of a thousand files reads the registry for it once a minute, not
        once a file.
        """
        if self.originals is None:
            return
        now = time.monotonic()
        if self._swept_at is not None and now - self._swept_at < self.originals.grace / 10:
            return
        self.originals.sweep(self._live_hashes())
        self._swept_at = now

    def _live_hashes(self) -> set[str]:
        return {d.content_hash for d in self.store.documents()}

    def passages(self, source: str, chunks: Sequence[Chunk]) -> tuple[list[str], list[str], list[int]]:
        """What is embedded and keyword-indexed for ``source``'s chunks: their contexts, texts and tokens.

        Each chunk's text with its context (the title and heading path) on the line before, when the
        context is on and fits; the tokens are the chunk's and its context's, without counting again.
        """
        contexts = [self._context(source, chunk) for chunk in chunks]
        embedded = [with_context(context, chunk.text) for chunk, context in zip(chunks, contexts, strict=True)]
        tokens = [c.tokens + self._context_tokens.get(context, 0) for c, context in zip(chunks, contexts, strict=True)]
        return contexts, embedded, tokens

    def _context(self, source: str, chunk: Chunk) -> str:
        """The chunk's context when it is on and fits the model beside the chunk's text, else ""."""
        if not self.context:
            return ""
        context = chunk_context(source, chunk.place)
        if context and context not in self._context_tokens:
            specials = self.embedder.count_tokens("")
            self._context_tokens[context] = self.embedder.count_tokens(context + "\n") - specials
        if context and chunk.tokens + self._context_tokens[context] > self.embedder.max_tokens:
            return ""  # the chunk's own text always fits whole
        return context

    def _vectors(
        self,
        texts: Sequence[str],
        hashes: Sequence[str],
        tokens: Sequence[int],
        progress: Progress | None,
        spans: Sequence[Sequence[tuple[int, int]]],
        contexts: Sequence[str],
        precision: str,
    ) -> tuple[list[np.ndarray], dict[str, Sentences]]:
        """A vector per text (``hashes`` its digests), embedding each distinct text once, in ``precision``, and
        reusing vectors already stored; and, with a ``sentences`` file, the sentences (``spans`` in each chunk's
        own text, after its context) of the texts embedded now, pooled from the same pass, by digest."""
        known = self.store.reader.vectors_for(hashes)
        missing: dict[str, tuple[str, int, tuple[tuple[int, int], ...], int]] = {}
        for digest, text, count, row, context in zip(hashes, texts, tokens, spans, contexts, strict=True):
            if digest not in known:
                missing.setdefault(digest, (text, count, tuple(row), len(context) + 1 if context else 0))
        pooled: dict[str, Sentences] = {}
        if missing:
            todo = list(missing.values())
            embedded, counts = [t for t, _, _, _ in todo], [n for _, n, _, _ in todo]
            if self.sentences is None:
                fresh = self.embedder.embed_documents(embedded, counts, progress, precision=precision)
            else:
                shifted = [[(a + shift, b + shift) for a, b in row] for _, _, row, shift in todo]
                fresh, sentences = self.embedder.embed_passages(
                    embedded, shifted, counts, progress, precision=precision
                )
                for digest, (_, _, row, _), found in zip(missing, todo, sentences, strict=True):
                    if found is not None:
                        pooled[digest] = Sentences(row, found)
            known.update(zip(missing, fresh, strict=True))
        elif progress is not None:
            progress(len(texts), len(texts))
        return [known[digest] for digest in hashes], pooled

    def ingest_text(self, source: str, text: str, progress: Progress | None = None) -> FileReport:
        """Index a text that is not a file (an evaluation article, say) under the name ``source``."""
        loaded = LoadedFile(source=source, content_hash=content_hash(text.encode("utf-8")), sections=(Section(text),))
        return self.ingest_file(loaded, progress)

    def ingest_bytes(self, name: str, data: bytes, progress: Progress | None = None) -> FileReport:
        """Index an uploaded file; a file that cannot be read is reported as failed, with the reason.

        The name is an upload's: only its last path component is kept, without control characters.
        """
        return self.ingest_data(upload_name(name), data, progress)

    def ingest_data(self, source: str, data: bytes, progress: Progress | None = None) -> FileReport:
        """Index a file's bytes under the name ``source`` as given (a path in a share: ``規程/人事/就業規則.docx``).

        A file whose content is stored already is hashed, not read; one that cannot be read is reported
        as failed, with the reason.
        """
        try:
            self._check_size(source, len(data))
            already = self._already(source, content_hash(data), data)
            if already is not None:
                return already
            return self.ingest_file(self.reader.load_bytes(source, data, self.limits), progress, original=data)
        except IngestError as error:
            return FileReport(source, "failed", message=str(error))

    def _check_size(self, name: str, size: int) -> None:
        if size > self.max_bytes:
            raise FileTooLargeError(
                f"{name}: ファイルが大きすぎます（{size / 1024 / 1024:.1f} MB、上限 {self.max_bytes / 1024 / 1024:.0f} MB）。"
                "分割するか、上限を RAG_MAX_UPLOAD_MB で変えてください。"
            )

    def ingest_paths(self, paths: Sequence[Path], progress: FileProgress | None = None) -> list[FileReport]:
        """Index files and folders; one bad file is reported and the others go on.

        Reports come in the order of the files, then the files skipped in folders. While a file is
        embedded, the next ``prefetch`` files are read (pypdf is slow), normalised and chunked in a
        background thread; torch leaves the GIL during its matrix products, so both run at once. A file
        whose version (its content hash and the chunking) is stored already is read, not chunked. Only
        this thread touches the store.
        """
        skipped: list[str] = []
        files = collect_paths(paths, skipped)
        # a file in a folder of a type no loader reads is reported as skipped, after the others, never opened
        return self._ingest_files(files, progress) + [_skipped(source) for source in skipped]

    def _ingest_files(self, files: Sequence[tuple[Path, str]], progress: FileProgress | None) -> list[FileReport]:
        # The versions stored now (their files are unchanged or duplicates: hashed, not read) and, as
        # files are cut, those cut already (a later copy is a duplicate). With prefetch, only the
        # background thread touches the set from here on. Neither reading nor chunking binds the
        # model: this thread does, at the first file that is written.
        known = {d.version for d in self.store.documents()}
        if self.prefetch == 0 or len(files) < 2:
            return [self._ingest_prepared(self._prepare(path, source, known), progress) for path, source in files]
        reports: list[FileReport] = []
        waiting = deque(files)
        pending: deque[Future[_Prepared | _Unread | FileReport]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-prepare") as pool:
            try:
                while pending or waiting:
                    while waiting and len(pending) <= self.prefetch:  # this file and ``prefetch`` ahead
                        pending.append(pool.submit(self._prepare, *waiting.popleft(), known))
                    reports.append(self._ingest_prepared(pending.popleft().result(), progress))
            finally:
                for future in pending:
                    future.cancel()
        return reports

    def _prepare(self, path: Path, source: str, known: set[str] | None) -> _Prepared | _Unread | FileReport:
        """Read a file, its size checked first, and chunk it unless ``known`` is None or holds its version.

        A version chunked here is added to ``known``.
        """
        try:
            self._check_size(source, path.stat().st_size)
            if known is not None:
                digest = content_hash(path.read_bytes())
                if self._version_of(digest) in known:  # unchanged or a duplicate: no need to read it
                    return _Unread(source, digest, path)
            loaded = self.reader.load_file(path, source, self.limits)
            version = self._version(loaded)
            if known is None or version in known:
                return _Prepared(loaded, None, path)
            chunks = self.chunk(loaded)
            known.add(version)
            return _Prepared(loaded, chunks, path)
        except (IngestError, OSError) as error:
            return _failed(source, error)

    def _ingest_prepared(self, prepared: _Prepared | _Unread | FileReport, progress: FileProgress | None) -> FileReport:
        if isinstance(prepared, FileReport):
            return prepared
        if isinstance(prepared, _Unread):
            already = self._already(prepared.source, prepared.content_hash, prepared.path)
            if already is not None:
                return already
            # the store changed since the file was hashed (another process deleted it): read it now
            prepared = self._prepare(prepared.path, prepared.source, None)
            if not isinstance(prepared, _Prepared):
                return self._ingest_prepared(prepared, progress)
        source = prepared.loaded.source
        try:
            return self.ingest_file(
                prepared.loaded,
                progress(source) if progress else None,
                chunks=prepared.chunks,
                original=prepared.path,
            )
        except (IngestError, OSError) as error:
            return _failed(source, error)

    def move(self, old: str, new: str) -> StoredDocument:
        """Rename a stored document, its chunks, vectors and original kept; the keyword index follows."""
        with self.store.writing():
            document = self.store.move(old, new)
            if self.keyword is not None:
                self.keyword.remove_document(old)
                self.keyword.add_document(new, document.version, self.store.reader.chunk_texts(new, document.version))
                self._save_keyword()
            return document

    def delete(self, source: str) -> StoredDocument:
        """Remove a stored document, all its chunks and, unless another document has the same content, its original."""
        with self.store.writing():
            self._sweep()
            document = self.store.delete(source)
            if self.keyword is not None:
                self.keyword.remove_document(source)
                self._save_keyword()
            self._drop(document.content_hash)
            return document
