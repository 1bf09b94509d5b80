"""A folder on this machine, or a share mounted on it (``/mnt/share``, a CIFS or NFS mount), as a source."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import SourceUnavailableError
from pipelines.sources.base import Entry, Kind, Listing, Patterns, document_name, sort_listing


def readable_name(name: str) -> str | None:
    """A file name as a person reads it; None when its bytes are no known encoding.

    A name written by an older Windows machine, or a share mounted without ``iocharset=utf8``, reaches
    Python as CP932 bytes (surrogates in ``str``): decoded as CP932 here, so 就業規則.txt keeps its name.
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    raw = os.fsencode(name)
    try:
        return raw.decode("cp932")
    except UnicodeDecodeError:
        return None


class FolderSource:
    """The files under ``root``, walked without following links; a missing ``root`` cannot be listed."""

    kind: Kind = "folder"

    def __init__(self, root: Path, patterns: Patterns | None = None) -> None:
        self.root = root
        self.location = str(root)
        self.patterns = patterns or Patterns()

    def listing(self) -> Listing:
        if not self.root.is_dir():
            raise SourceUnavailableError(
                f"フォルダー「{self.root}」がありません（またはフォルダーではありません）。"
                "共有をマウントしているか、パスを確かめてください。"
            )
        listing = Listing()
        try:
            self._walk(str(self.root), [], listing)
        except OSError as error:
            raise SourceUnavailableError(
                f"フォルダー「{self.root}」を読めません（{error.strerror or error}）。"
            ) from error
        return sort_listing(listing)

    def _walk(self, folder: str, parts: list[str], listing: Listing) -> None:
        with os.scandir(folder) as found:
            children = sorted(found, key=lambda e: e.name)
        for child in children:
            name = readable_name(child.name)
            if name is None:
                shown = document_name([*parts, child.name.encode("utf-8", "replace").decode("utf-8")])
                listing.unreadable.append(
                    (shown, "ファイル名の文字コードを読めません（UTF-8 でも CP932 でもありません）。")
                )
                continue
            if child.is_dir(follow_symlinks=False):
                if self.patterns.folder_counts(name):
                    self._walk(child.path, [*parts, name], listing)
                continue
            if not child.is_file(follow_symlinks=False):
                continue  # a link, a socket: nothing a share would hold as a document
            path = document_name([*parts, name])
            reason = self.patterns.reason_left_out(path)
            if reason is not None:
                if reason:
                    listing.skipped.append((path, reason))
                continue
            try:
                stat = child.stat(follow_symlinks=False)
            except OSError as error:  # gone since the folder was read
                listing.unreadable.append((path, f"ファイルを読めません（{error.strerror or error}）。"))
                continue
            listing.entries.append(Entry(path, stat.st_size, stat.st_mtime_ns, child.path))

    def read(self, entry: Entry) -> bytes:
        if not self.root.is_dir():
            raise SourceUnavailableError(
                f"フォルダー「{self.root}」が見えなくなりました（共有が外れた可能性があります）。"
            )
        return Path(entry.handle).read_bytes()

    def where(self, name: str) -> str:
        return str(self.root / name)

    def close(self) -> None:
        """A folder holds nothing open."""
