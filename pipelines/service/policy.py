"""The rights policy: who (a key, a user, a group) may do which right to which collections, and the one check.

The rights are ``read`` (search, ask, see passages), ``download`` (an original file), ``write`` (add and
delete documents) and ``admin`` (create and delete collections); each word grants itself only.

``RAG_POLICY_FILE`` holds one grant per line, ``PRINCIPAL COLLECTION-PATTERN RIGHTS``:

    # principal            collections   rights
    user:田中              人事*          read,download
    group:人事部           人事*          read,download,write
    group:"Domain Users"   共有           read
    user:admin             *              read,download,write,admin

PRINCIPAL is ``user:NAME`` or ``group:NAME``; NAME is the name as the directory gives it, compared after
NFKC and case folding (``user:Tanaka``, ``user:tanaka`` and ``user:ｔａｎａｋａ`` are one principal); a
name (or a pattern) with spaces goes in double quotes. COLLECTION-PATTERN is a glob on the collection's name as
kept (NFKC, trimmed; ``*`` for all). RIGHTS is a comma list of the rights words, without spaces. ``#``
starts a comment. A signed-in person's grants are those of ``user:NAME`` and of every ``group:G`` they
are in. A line that is not a grant refuses the whole file, with its number.

``PolicyFile`` rereads the file when it changes (its size, time or inode, looked at most once a second,
before a check); a file that becomes unreadable or invalid keeps the last good policy and says so once
in the log, never opening more than that policy did. ``permitted`` is the one check every caller's
rights go through (``Caller.may``, asked by the service only).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, get_args

from pipelines.errors import SettingsError

Right = Literal["read", "download", "write", "admin"]
"""What a request does to a collection: search and see passages; download originals; add and delete
documents; create and delete collections."""
RIGHTS: tuple[Right, ...] = get_args(Right)
# how often, at most, the policy file's size and time are looked at
RELOAD_SECONDS = 1.0
# a field: runs of anything but spaces and quotes, and quoted runs (a name with spaces)
_TOKEN = re.compile(r'(?:[^\s"]|"[^"]*")+')
_KINDS = ("user", "group")

log = logging.getLogger(__name__)


def principal_name(name: str) -> str:
    """A user's or group's name as it is compared: NFKC, case folded (and NFKC again: folding may undo it), trimmed."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()).strip()


def parse_rights(text: str) -> frozenset[Right] | None:
    """The rights of a comma list of rights words (``read,download``); None when a word is not one."""
    words = text.split(",")
    if not all(word in RIGHTS for word in words):
        return None
    return frozenset(right for right in RIGHTS if right in words)


@dataclass(frozen=True)
class Grant:
    """One principal's (a key, ``user:NAME``, ``group:NAME``) rights to the collections matching ``pattern``."""

    principal: str
    pattern: str
    rights: frozenset[Right]

    def allows(self, collection: str, right: Right) -> bool:
        return right in self.rights and fnmatch.fnmatchcase(collection, self.pattern)


def pattern_of(text: str) -> str:
    """A collection pattern as written, in the form collection names are kept (NFKC, trimmed)."""
    return unicodedata.normalize("NFKC", text).strip()


@dataclass(frozen=True, eq=False)
class Policy:
    """The grants of ``user:`` and ``group:`` principals, by principal (``user:tanaka``)."""

    grants: dict[str, tuple[Grant, ...]] = field(default_factory=dict)

    def current(self) -> Policy:
        return self

    def grants_of(self, user: str, groups: Iterable[str] = ()) -> tuple[Grant, ...]:
        """A signed-in person's grants: those of ``user:NAME`` and of each ``group:G`` they are in."""
        principals = [f"user:{principal_name(user)}", *(f"group:{principal_name(g)}" for g in groups)]
        return tuple(grant for p in dict.fromkeys(principals) for grant in self.grants.get(p, ()))


class PolicySource(Protocol):
    """Where a signed-in caller's grants are looked up at each check: a ``Policy``, or a ``PolicyFile``."""

    def current(self) -> Policy: ...


Grants = tuple[Grant, ...] | PolicySource
"""What a caller may do: fixed grants (an API key's), or a policy asked for the caller's user and groups."""


def permitted(grants: Grants | None, collection: str, right: Right, user: str = "", groups: Iterable[str] = ()) -> bool:
    """Whether a caller with ``grants`` (None: every right) may do ``right`` to ``collection`` (its name as kept)."""
    if grants is None:
        return True
    found = grants if isinstance(grants, tuple) else grants.current().grants_of(user, groups)
    return any(grant.allows(collection, right) for grant in found)


def parse_policy(text: str, origin: str = "RAG_POLICY_FILE") -> Policy:
    """The policy of a file's text; a line that is not ``PRINCIPAL PATTERN RIGHTS`` is refused with its number."""
    grants: dict[str, list[Grant]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0]
        fields = [token.replace('"', "") for token in _TOKEN.findall(body)]
        if not fields:
            continue
        kind, _, name = fields[0].partition(":")
        rights = parse_rights(fields[2]) if len(fields) == 3 else None
        if (
            body.count('"') % 2
            or len(fields) != 3
            or kind not in _KINDS
            or not principal_name(name)
            or rights is None
            or not pattern_of(fields[1])
        ):
            raise SettingsError(
                f"{origin} の {number} 行目を読めません。各行は「user:名前 か group:名前、コレクションのパターン、"
                f"権限」です。権限は {','.join(RIGHTS)} をカンマで区切って並べます"
                "（例: group:人事部 人事* read,download）。"
            )
        principal = f"{kind}:{principal_name(name)}"
        grants.setdefault(principal, []).append(Grant(principal, pattern_of(fields[1]), rights))
    return Policy({principal: tuple(each) for principal, each in grants.items()})


class PolicyFile:
    """``RAG_POLICY_FILE``'s policy, reread when the file changes; a broken file keeps the last good one."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        """Read the file now: one that cannot be read or parsed refuses the start (``SettingsError``).

        ``on_change(detail)`` is told each time a changed file is read again, or refused (the audit log).
        """
        self.path = path
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self._policy = self._read()
        self._looked = clock()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _read(self) -> Policy:
        origin = f"RAG_POLICY_FILE「{self.path}」"
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"{origin}を読めません（{error}）。") from error
        return parse_policy(text, origin)

    def current(self) -> Policy:
        """The policy as the file holds it now (looked at most once a second), or the last good one."""
        with self._lock:
            now = self._clock()
            if now - self._looked < RELOAD_SECONDS:
                return self._policy
            self._looked = now
            stamp = self._stamp()
            if stamp == self._seen:
                return self._policy
            self._seen = stamp  # a broken version is reported once, and tried again only when it changes
            try:
                self._policy = self._read()
            except SettingsError as error:
                detail = f"{error} 前回読めた権限のまま続けます。"
                log.warning("%s", detail)
            else:
                detail = f"RAG_POLICY_FILE「{self.path}」を読み直しました（{len(self._policy.grants)} の主体）。"
                log.info("%s", detail)
            policy = self._policy
        if self._on_change is not None:
            self._on_change(detail)
        return policy


def load_policy(path: Path | None, on_change: Callable[[str], None] | None = None) -> PolicySource:
    """``RAG_POLICY_FILE``'s policy, reread as it changes; without one, a policy that grants nothing."""
    return Policy() if path is None else PolicyFile(path, on_change=on_change)
