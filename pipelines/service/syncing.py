"""One sync of one source into its collection: new files added, changed ones replaced, moved ones renamed, removed ones deleted.

    1. list the source (one that cannot be listed: nothing else happens, the reason is reported);
    2. a file whose size and time are those last synced is skipped unread; any other is read and hashed:
       its content stored already under its name is only recorded; the content of a file gone from the
       source moves that document to the new name (chunks and vectors kept); otherwise it is ingested
       the way an upload is (``Indexer.ingest_data``);
    3. the documents of files gone from the source are deleted, unless that would empty a source that
       had files, or take more than ``max_delete_share`` of them: then the deletions are held back, with
       why, until a sync is run with ``allow_deletions`` (a person confirmed);
    4. a file left out as a duplicate whose twin is gone is ingested now.

A file that fails is recorded with its reason and tried again next time; the others go on. A source
that drops while files are read stops the sync there (what is done stays done, nothing is deleted).
Each file's row is written after the store committed (``SyncState``), so a sync killed anywhere is
finished by the next one without duplicates or losses.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.loaders import content_hash
from pipelines.errors import DocumentNotFoundError, SourceUnavailableError
from pipelines.service.syncstate import FileRow, FileStatus, Outcome, SourceInfo, SyncState
from pipelines.sources.base import Entry, Source
from pipelines.store.indexing import FileReport, Indexer

SyncProgress = Callable[[str, int, int], None]
"""Called as each file is read: its name, how many are done, how many to read."""


@dataclass
class SyncReport:
    """What one sync of one source did, file by file, and whether it stopped or held deletions back."""

    source: int
    collection: str
    location: str
    listed: int = 0
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    held: str = ""
    """Why the deletions were held back ("" when none were)."""
    withheld: list[str] = field(default_factory=list)
    """The documents a held sync did not delete."""
    error: str = ""
    """Why the source could not be synced, or the sync stopped (the server went away)."""
    seconds: float = 0.0

    @property
    def outcome(self) -> Outcome:
        if self.error:
            return "unreachable"
        if self.held:
            return "held"
        return "failed" if self.failed else "ok"

    def counts(self) -> dict[str, int]:
        """The files by what became of them (the page's and the sources list's figures)."""
        return {
            "listed": self.listed,
            "added": len(self.added),
            "replaced": len(self.replaced),
            "moved": len(self.moved),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "duplicates": len(self.duplicates),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "withheld": len(self.withheld),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "collection": self.collection,
            "location": self.location,
            "outcome": self.outcome,
            "counts": self.counts(),
            "added": self.added,
            "replaced": self.replaced,
            "moved": [{"from": old, "to": new} for old, new in self.moved],
            "removed": self.removed,
            "duplicates": self.duplicates,
            "failed": [{"name": name, "reason": reason} for name, reason in self.failed],
            "skipped": [{"name": name, "reason": reason} for name, reason in self.skipped],
            "held": self.held,
            "withheld": self.withheld,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


def sync_source(
    info: SourceInfo,
    source: Source,
    indexer: Indexer,
    state: SyncState,
    *,
    max_delete_share: float,
    allow_deletions: bool = False,
    progress: SyncProgress | None = None,
) -> SyncReport:
    """Bring the collection in step with the source once; see the module's docstring."""
    started = time.perf_counter()
    report = SyncReport(info.id, info.collection, info.location)
    try:
        with indexer.batched():  # the keyword index saved once, not after each file
            _sync(info, source, indexer, state, report, max_delete_share, allow_deletions, progress)
    except SourceUnavailableError as error:
        report.error = str(error)
    finally:
        source.close()
    report.seconds = time.perf_counter() - started
    message = report.error or report.held
    state.finished(info.id, report.outcome, report.counts(), message)
    return report


def _sync(
    info: SourceInfo,
    source: Source,
    indexer: Indexer,
    state: SyncState,
    report: SyncReport,
    max_delete_share: float,
    allow_deletions: bool,
    progress: SyncProgress | None,
) -> None:
    listing = source.listing()
    report.listed = len(listing.entries)
    report.skipped = listing.skipped
    report.failed.extend(listing.unreadable)
    rows = state.files(info.id)
    entries = {entry.name: entry for entry in listing.entries}
    gone = {name: row for name, row in rows.items() if name not in entries}
    # the documents gone files would take with them: by content, for a file that reappears under another name
    movable = {row.hash: name for name, row in sorted(gone.items()) if row.status == "stored"}

    todo: list[Entry] = []
    for entry in listing.entries:
        row = rows.get(entry.name)
        if row is not None and row.status != "failed" and (row.size, row.mtime_ns) == (entry.size, entry.mtime_ns):
            report.unchanged += 1  # not read: its size and time are those last synced
        else:
            todo.append(entry)
    for done, entry in enumerate(todo):
        if progress is not None:
            progress(entry.name, done, len(todo))
        _one(entry, rows.get(entry.name), source, indexer, state, report, movable, gone)

    stored = sum(1 for row in rows.values() if row.status == "stored")
    losing = sorted(name for name, row in gone.items() if row.status == "stored")
    if losing and not allow_deletions:
        if not listing.entries:
            report.held = (
                f"同期元が空になりました（前回は {stored} 件）。共有が外れたか、サーバーやパスワードの問題かもしれません。"
                f"{len(losing)} 件の文書は削除していません。本当に空なら --allow-deletions を付けて同期してください。"
            )
        elif len(losing) > max(max_delete_share * stored, 1):  # one file alone is never held back
            report.held = (
                f"前回の {stored} 件のうち {len(losing)} 件が同期元から消えました（上限 {max_delete_share:.0%}）。"
                "誤って消えた可能性があるため削除していません。確かめてから --allow-deletions を付けて同期してください。"
            )
    if report.held:
        report.withheld = losing
    else:
        for name in losing:
            # a document already gone was deleted by a sync killed before it recorded it, or by a person
            with contextlib.suppress(DocumentNotFoundError):
                indexer.delete(name)
            state.forget(info.id, name)
            report.removed.append(name)
    for name, row in gone.items():
        if row.status != "stored":
            state.forget(info.id, name)  # a failed or duplicate file that is gone: nothing of it is stored

    # duplicates whose twin has gone (deleted here, or by a person) are documents now
    duplicates = {n: r for n, r in state.files(info.id).items() if r.status == "duplicate" and n in entries}
    live = {document.content_hash for document in indexer.store.documents()} if duplicates else set()
    orphans = [entries[name] for name, row in duplicates.items() if row.hash not in live]
    for entry in orphans:
        report.duplicates = [name for name in report.duplicates if name != entry.name]
        _one(entry, None, source, indexer, state, report, {}, {})


def _one(
    entry: Entry,
    row: FileRow | None,
    source: Source,
    indexer: Indexer,
    state: SyncState,
    report: SyncReport,
    movable: dict[str, str],
    gone: dict[str, FileRow],
) -> None:
    """Read one file and bring its document in step; a file that fails is recorded with its reason."""
    number = report.source
    try:
        data = source.read(entry)
    except OSError as error:
        reason = f"{entry.name}: ファイルを読めません（{error.strerror or error}）。"
        state.record(number, FileRow(entry.name, entry.size, entry.mtime_ns, "", "failed", reason))
        report.failed.append((entry.name, reason))
        return
    digest = content_hash(data)
    if row is not None and row.status == "stored" and row.hash == digest:
        document = indexer.store.document(entry.name)
        if document is not None and document.content_hash == digest:
            state.record(number, FileRow(entry.name, entry.size, entry.mtime_ns, digest, "stored"))
            report.unchanged += 1  # touched, not changed: recorded with its new time
            return
    old = movable.get(digest)
    if old is not None and old != entry.name and _moved(indexer, old, entry.name, digest):
        state.record(number, FileRow(entry.name, entry.size, entry.mtime_ns, digest, "stored"), instead_of=old)
        del movable[digest]
        gone.pop(old, None)
        report.moved.append((old, entry.name))
        return
    result = indexer.ingest_data(entry.name, data)
    _recorded(number, entry, digest, result, state, report)


def _moved(indexer: Indexer, old: str, new: str, digest: str) -> bool:
    """Move document ``old`` to ``new`` when it still holds this content and ``new`` holds no other; whether it did."""
    document = indexer.store.document(old)
    if document is None or document.content_hash != digest:
        return False
    there = indexer.store.document(new)
    if there is not None and there.version != document.version:
        return False
    indexer.move(old, new)
    return True


def _recorded(number: int, entry: Entry, digest: str, result: FileReport, state: SyncState, report: SyncReport) -> None:
    status = result.status
    if status == "failed" or status == "skipped":
        state.record(number, FileRow(entry.name, entry.size, entry.mtime_ns, digest, "failed", result.message))
        report.failed.append((entry.name, result.message))
        return
    kept: FileStatus = "duplicate" if status == "duplicate" else "stored"
    state.record(number, FileRow(entry.name, entry.size, entry.mtime_ns, digest, kept))
    if status == "added":
        report.added.append(entry.name)
    elif status == "replaced":
        report.replaced.append(entry.name)
    elif status == "duplicate":
        report.duplicates.append(entry.name)
    else:
        report.unchanged += 1
