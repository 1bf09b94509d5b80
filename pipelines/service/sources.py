"""The service's sources: folders and SMB shares a collection keeps in sync, added, listed, removed and synced.

Every operation needs the right to administer the collection (``admin``) and writes an audit row;
a sync is one row per source, with what it did. The password of an SMB source is never kept here:
it comes, at each sync, from ``RAG_SMB_PASSWORD`` or from the file the source names (which only the
service may read).
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from pipelines.errors import PermissionDeniedError, RagError, SourceError
from pipelines.service import words
from pipelines.service.core import ServiceCore, who
from pipelines.service.results import Caller
from pipelines.service.syncing import SyncProgress, SyncReport, sync_source
from pipelines.service.syncstate import SourceInfo, SyncState
from pipelines.settings import Settings
from pipelines.sources.base import Kind, Patterns, Source
from pipelines.sources.folder import FolderSource
from pipelines.sources.smb import SmbSource, parse_smb_url, source_error_for_missing_password


def parse_location(location: str) -> tuple[Kind, str]:
    """A source's kind and its location as kept: an ``smb://`` URL (no password), or a folder's absolute path."""
    text = location.strip()
    if text.lower().startswith("smb://"):
        return "smb", parse_smb_url(text).url
    if text.startswith("\\\\"):
        raise SourceError(
            f"「{text}」は Windows の書き方です。smb://ユーザー@{text[2:].replace(chr(92), '/')} の形で書いてください。"
        )
    folder = Path(text).expanduser().resolve()
    if not folder.is_dir():
        raise SourceError(f"フォルダー「{folder}」がありません。共有をマウントしているか、パスを確かめてください。")
    return "folder", str(folder)


def read_password_file(path: Path) -> str:
    """The password in a file only its owner may read (the first line); refused when others may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SourceError(f"パスワードのファイル「{path}」を読めません（{error.strerror or error}）。") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SourceError(
            f"パスワードのファイル「{path}」を他の人も読めます。`chmod 600 {path}` でこのサービスだけが読めるようにしてください。"
        )
    return text.splitlines()[0] if text.strip() else ""


def open_source(info: SourceInfo, settings: Settings) -> Source:
    """The source a kept row describes, with its password from its file or ``RAG_SMB_PASSWORD``."""
    patterns = Patterns(info.include, info.exclude)
    if info.kind == "folder":
        return FolderSource(Path(info.location), patterns)
    address = parse_smb_url(info.location)
    password = read_password_file(Path(info.password_file)) if info.password_file else settings.smb_password
    if not password and not address.kerberos:
        raise source_error_for_missing_password(address)
    return SmbSource(address, password, patterns, timeout=settings.smb_timeout)


class Sources(ServiceCore):
    """Sources kept in sync: ``add_source``, ``sources``, ``remove_source``, ``sync``, ``origins``."""

    @property
    def sync_state(self) -> SyncState:
        return self.library.sync_state

    def add_source(
        self,
        caller: Caller,
        collection: str,
        location: str,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        password_file: Path | None = None,
    ) -> SourceInfo:
        """Make the collection follow a folder or an SMB share (its first sync is ``sync``'s)."""
        cleaned = self._allow(caller, collection, "admin")
        if caller.grants is not None:
            # a source reads this machine's folders, and signs in to a server with the service's
            # password: naming one is the machine's own user's act (every right: the CLI), never a
            # key's or a person's, who could otherwise read any file the service can, or send its
            # password to a server of their own
            self._refused(caller, cleaned, words.SOURCE_ADD_MACHINE_ONLY)
            raise PermissionDeniedError(words.SOURCE_ADD_MACHINE_ONLY)
        self.library.collections.info(cleaned)  # the collection exists
        kind, kept = parse_location(location)
        if password_file is not None:
            password_file = password_file.expanduser().resolve()
            read_password_file(password_file)
        with self._recorded(caller, "add_source", cleaned, detail=kept):
            return self.sync_state.add(
                cleaned,
                kind,
                kept,
                [p for p in include if p.strip()],
                [p for p in exclude if p.strip()],
                str(password_file) if password_file is not None else "",
                who(caller),
            )

    def sources(self, caller: Caller, collection: str | None = None) -> list[SourceInfo]:
        """The sources of one collection (or of every collection) the caller may administer."""
        if collection is not None:
            return self.sync_state.sources(self._allow(caller, collection, "admin"))
        return [info for info in self.sync_state.sources() if caller.may(info.collection, "admin")]

    def remove_source(self, caller: Caller, collection: str, number: int, delete_documents: bool = False) -> SourceInfo:
        """Stop following a source; its documents stay unless ``delete_documents``."""
        cleaned = self._allow(caller, collection, "admin")
        info = self.sync_state.source(cleaned, number)
        with (
            self._recorded(caller, "remove_source", cleaned, detail=info.location),
            self.library.writing(cleaned) as parts,
        ):
            if delete_documents:
                names = [name for name, row in self.sync_state.files(number).items() if row.status == "stored"]
                held = {d.source for d in parts.store.documents()}
                for name in names:
                    if name in held:
                        parts.indexer.delete(name)
            self.sync_state.remove(number)
            return info

    def sync(
        self,
        caller: Caller,
        collection: str | None = None,
        number: int | None = None,
        *,
        allow_deletions: bool = False,
        progress: SyncProgress | None = None,
    ) -> list[SyncReport]:
        """Sync the collection's sources (or one of them, or every source the caller may administer), one report each."""
        if number is not None:
            if collection is None:
                raise SourceError("同期元の番号にはコレクションも指定してください（--collection）。")
            infos = [self.sync_state.source(self._allow(caller, collection, "admin"), number)]
        else:
            infos = self.sources(caller, collection)
        reports = []
        for info in infos:
            try:
                reports.append(self._sync_one(caller, info, allow_deletions, progress))
            except RagError as error:  # this source's collection or store refused: recorded; the next source goes on
                reports.append(SyncReport(info.id, info.collection, info.location, error=str(error)))
        return reports

    def _sync_one(
        self, caller: Caller, info: SourceInfo, allow_deletions: bool, progress: SyncProgress | None
    ) -> SyncReport:
        detail = info.location + ("（削除を確認済み）" if allow_deletions else "")
        with self._recorded(caller, "sync", info.collection, detail=detail) as note:
            with self.library.writing(info.collection) as parts:
                try:
                    source = open_source(info, self.settings)
                except SourceError as error:
                    report = SyncReport(info.id, info.collection, info.location, error=str(error))
                    self.sync_state.finished(info.id, report.outcome, report.counts(), report.error)
                    source = None
                if source is not None:
                    report = sync_source(
                        info,
                        source,
                        parts.indexer,
                        self.sync_state,
                        max_delete_share=self.settings.sync_max_delete_share,
                        allow_deletions=allow_deletions,
                        progress=progress,
                    )
            note.detail = f"{info.location}: {words.sync_summary(report.counts())}"
            if report.outcome != "ok":
                note.detail += f"（{report.error or report.held or words.SYNC_SOME_FAILED}）"
                note.outcome = "failed"
            return report

    def origins(self, caller: Caller, collection: str, names: Sequence[str]) -> dict[str, str]:
        """Where each of these documents lies in its source (``\\\\server\\share\\…``, a folder's path), by name."""
        cleaned = self._allow(caller, collection, "read")
        holders = self.sync_state.holder(cleaned, names)
        if not holders:
            return {}
        infos = {info.id: info for info in self.sync_state.sources(cleaned)}
        found: dict[str, str] = {}
        for name, number in holders.items():
            info = infos.get(number)
            if info is None:
                continue
            if info.kind == "folder":
                found[name] = str(Path(info.location) / name)
            else:
                found[name] = parse_smb_url(info.location).unc(*name.split("/"))
        return found
