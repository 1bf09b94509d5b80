"""What every kind of source gives a sync: its files with size and time, their bytes, and where each lies.

A source lists its files (``Listing``: each ``Entry`` named by its path inside the source, ``/``
between folders, NFC), reads one file's bytes, and says where a file lies for a person
(``\\\\server\\share\\規程\\就業規則.docx``). Which files count is decided here, once for every kind:
the include and exclude patterns, the files a Windows share or a Mac leaves beside documents (Office's
``~$`` lock files, ``Thumbs.db``, ``desktop.ini``, shortcuts, temporary files), hidden files and
folders, and the types no reader knows. Another kind (Box, SharePoint, S3) is one more class with
``listing``, ``read``, ``where`` and ``close``.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ingest.loaders import supported, unsupported_reason

Kind = Literal["folder", "smb"]

# what a file share holds beside documents: Office's lock files (~$報告書.docx), LibreOffice's
# (.~lock.報告書.odt#), Windows' thumbnails and folder settings, shortcuts, a Mac's .DS_Store, temporary files
DEFAULT_EXCLUDES = (
    "~$*",
    ".~lock.*#",
    "~*.tmp",
    "*.tmp",
    "Thumbs.db",
    "desktop.ini",
    ".DS_Store",
    "*.lnk",
    "*.url",
)
# folders a NAS or Windows keeps for itself: a recycle bin, the index of a Synology NAS, …
SYSTEM_FOLDERS = ("$RECYCLE.BIN", "System Volume Information", "#recycle", "@eaDir", "#snapshot", "~snapshot")


@dataclass(frozen=True)
class Entry:
    """One file of a source: its name in the collection, its size and time, and where the source finds it."""

    name: str
    size: int
    mtime_ns: int
    handle: str


@dataclass
class Listing:
    """A source's files now, with the files left out and why (a type no reader knows, an unreadable name)."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


class Source(Protocol):
    """A place whose files a collection follows."""

    kind: Kind
    location: str

    def listing(self) -> Listing:
        """Every file that counts, with its size and time (``SourceUnavailableError`` when it cannot be listed)."""
        ...

    def read(self, entry: Entry) -> bytes:
        """The file's bytes (``OSError`` for this file; ``SourceUnavailableError`` when the source is gone)."""
        ...

    def where(self, name: str) -> str:
        """Where the file of this name lies, as a person finds it (a UNC path, a folder path)."""
        ...

    def close(self) -> None:
        """End the connections the source holds."""
        ...


@dataclass(frozen=True)
class Patterns:
    """Which files of a source count: ``include`` (empty: all), then ``exclude`` and the defaults left out.

    A pattern is matched, without regard to case (as Windows does), against the file's path in the
    source and against its name alone: ``*.pdf``, ``規程/*``, ``*/旧/*``.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def folder_counts(self, name: str) -> bool:
        """Whether a folder is walked into: not hidden, not one a system keeps, not excluded by name."""
        if name.startswith(".") or name in SYSTEM_FOLDERS:
            return False
        return not any(_match(name, pattern) for pattern in self.exclude)

    def reason_left_out(self, path: str) -> str | None:
        """Why the file at ``path`` is left out; None when it counts. A file a person would not call a
        document (a lock file, a pattern's) says nothing: "" (not reported)."""
        base = path.rsplit("/", 1)[-1]
        if base.startswith(".") or any(_match(base, p) for p in DEFAULT_EXCLUDES):
            return ""
        if any(_match(path, p) or _match(base, p) for p in self.exclude):
            return ""
        if self.include and not any(_match(path, p) or _match(base, p) for p in self.include):
            return ""
        if not supported(base):
            return unsupported_reason(base)
        return None


def _match(text: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(text.casefold(), pattern.casefold())


def document_name(parts: Sequence[str]) -> str:
    """A file's name in the collection: its path in the source, ``/`` between folders, NFC (a Mac writes NFD)."""
    return unicodedata.normalize("NFC", "/".join(parts))


def sort_listing(listing: Listing) -> Listing:
    """The listing in name order, a name met twice (NFC and NFD spellings) kept once, the other reported."""
    seen: dict[str, Entry] = {}
    for entry in sorted(listing.entries, key=lambda e: (e.name, e.handle)):
        if entry.name in seen:
            listing.unreadable.append(
                (entry.name, "同じ名前のファイルが二つあります（Unicode の表記違い）。片方だけを取り込みます。")
            )
            continue
        seen[entry.name] = entry
    listing.entries = list(seen.values())
    return listing
