"""Which files to ingest and under what names: the files of folders, and safe names for uploads."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ingest.loaders import supported


def upload_name(name: str) -> str:
    """A safe document name for an upload: the last part of its path, no control characters.

    ``../../etc/passwd.txt`` becomes ``passwd.txt``; a name with nothing left becomes ``名前なし`` with
    its extension. Names are only labels (nothing is written under them), but a label should not
    pretend to be a path.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in ("Cc", "Cf")).strip(" ")
    if base.startswith("."):  # nothing before the extension (".txt"), or a hidden file
        base = "名前なし" + base if "." not in base[1:] else ""
    return base.rstrip(" .") or "名前なし"


def collect_paths(paths: Iterable[Path], skipped: list[str] | None = None) -> list[tuple[Path, str]]:
    """Files to ingest with the names they are stored under, in a stable order.

    A file given directly keeps its own name (and is read whatever its type, to be refused with the
    reason); files found in a folder are named by their path inside that folder (``sub/報告書.pdf``),
    hidden ones (a name starting with ``.``) are left out, and those of a type no loader reads, or Office's
    lock files (``~$報告書.docx``), are not returned but added to ``skipped``, when given, by that name.
    """
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if not child.is_file() or hidden:
                    continue
                if supported(child.name) and not owner_file(child.name):
                    found.append((child, relative.as_posix()))
                elif skipped is not None:
                    skipped.append(relative.as_posix())
        else:
            found.append((path, path.name))
    return found


def owner_file(name: str) -> bool:
    """Whether a file is the lock file Office leaves beside a document while it is open (``~$報告書.docx``)."""
    return name.startswith("~$")
