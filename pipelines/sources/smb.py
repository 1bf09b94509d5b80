"""An SMB 2/3 share reached directly (``smbprotocol``), as a source: ``smb://USER@HOST[:PORT]/SHARE/PATH``.

The user signs in with a password (``RAG_SMB_PASSWORD`` or a file only the service may read, never in
the URL) or, with ``?auth=kerberos``, with the machine's Kerberos ticket. Each source holds its own
connection (``connection_cache``), closed by ``close``. What goes wrong becomes a message a person can
act on: the server down or unreachable, the user or password refused, the share or folder missing; a
failure to reach the server while files are read stops the sync (``SourceUnavailableError``), a file
that cannot be read fails alone (``OSError``).
"""

from __future__ import annotations

import errno
import select
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from pipelines.errors import SourceError, SourceUnavailableError
from pipelines.sources.base import Entry, Kind, Listing, Patterns, document_name, sort_listing

DEFAULT_PORT = 445
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR)
# how a server says the share does not exist: STATUS_BAD_NETWORK_NAME (Windows), STATUS_NOT_FOUND (Samba)
_NO_SHARE = (0xC00000CC, 0xC0000225)


class _PollSelect:
    """``select.select`` for smbprotocol's transport, waiting through ``poll``.

    smbprotocol waits for each reply with ``select``, which refuses a socket numbered 1024 or more
    (``ValueError: filedescriptor out of range``): a server that has run for a while, or holds many
    files open, has such numbers, and then no share can be reached (jborean93/smbprotocol#219).
    """

    @staticmethod
    def select(
        readers: list[Any], writers: list[Any], errors: list[Any], timeout: float | None = None
    ) -> tuple[list[Any], list[Any], list[Any]]:
        poller = select.poll()
        for each in readers:
            poller.register(each, select.POLLIN)
        for each in writers:
            poller.register(each, select.POLLOUT | (select.POLLIN if each in readers else 0))
        ready = dict(poller.poll(None if timeout is None else timeout * 1000))
        # as select: a hung-up or failed socket is readable (its recv says what happened)
        readable = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL
        fileno = {id(each): each if isinstance(each, int) else each.fileno() for each in (*readers, *writers)}
        return (
            [each for each in readers if ready.get(fileno[id(each)], 0) & readable],
            [each for each in writers if ready.get(fileno[id(each)], 0) & select.POLLOUT],
            [],
        )


def _wait_by_poll() -> None:
    """Have smbprotocol's transport wait through ``poll`` (where there is one: not on Windows)."""
    from smbprotocol import transport

    if hasattr(select, "poll") and transport.select is select:
        transport.select = _PollSelect


@dataclass(frozen=True)
class SmbAddress:
    """Where a share is and who signs in: parsed from ``smb://USER@HOST[:PORT]/SHARE/PATH[?auth=kerberos]``."""

    user: str
    host: str
    port: int
    share: str
    path: tuple[str, ...]
    kerberos: bool = False

    @property
    def url(self) -> str:
        """The address as kept and shown: never a password."""
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        user = f"{self.user}@" if self.user else ""
        path = "".join(f"/{part}" for part in self.path)
        return f"smb://{user}{self.host}{port}/{self.share}{path}" + ("?auth=kerberos" if self.kerberos else "")

    def unc(self, *parts: str) -> str:
        """The UNC path of the share's folder or file: ``\\\\server\\share\\規程\\就業規則.docx``."""
        return "\\\\" + "\\".join((self.host, self.share, *self.path, *parts))


def parse_smb_url(url: str) -> SmbAddress:
    """The address of an ``smb://`` URL; ``SourceError`` for one that names no share or carries a password."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "smb" or not parts.hostname:
        raise SourceError(
            f"「{url}」は SMB の場所ではありません。smb://ユーザー@サーバー/共有/フォルダー の形で書いてください。"
        )
    if parts.password is not None:
        raise SourceError(
            "パスワードを URL に書かないでください（画面やログに残ります）。"
            "RAG_SMB_PASSWORD か --password-file で渡してください。"
        )
    segments = [unquote(s) for s in parts.path.replace("\\", "/").split("/") if s]
    if not segments:
        raise SourceError(
            f"「{url}」に共有名がありません。smb://ユーザー@サーバー/共有/フォルダー の形で書いてください。"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise SourceError(f"「{url}」のポート番号が読めません。") from None
    kerberos = "auth=kerberos" in parts.query.lower()
    return SmbAddress(unquote(parts.username or ""), parts.hostname, port, segments[0], tuple(segments[1:]), kerberos)


def _nanoseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND * 1000


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


class SmbSource:
    """The files of an SMB share's folder, read over SMB 2/3 with their size and last write time."""

    kind: Kind = "smb"

    def __init__(
        self, address: SmbAddress, password: str = "", patterns: Patterns | None = None, timeout: int = 30
    ) -> None:
        self.address = address
        self.location = address.url
        self.password = password
        self.patterns = patterns or Patterns()
        self.timeout = timeout
        self._cache: dict[str, Any] = {}
        self._connected = False

    def __repr__(self) -> str:  # never the password
        return f"SmbSource({self.location!r})"

    def _connect(self) -> None:
        import smbclient  # smbprotocol: only where a share is read
        from smbprotocol.exceptions import LogonFailure, SMBException

        if self._connected:
            return
        _wait_by_poll()
        address = self.address
        try:
            if address.kerberos:
                smbclient.register_session(
                    address.host,
                    username=address.user or None,
                    port=address.port,
                    auth_protocol="kerberos",
                    connection_timeout=self.timeout,
                    connection_cache=self._cache,
                )
            else:
                smbclient.register_session(
                    address.host,
                    username=address.user,
                    password=self.password,
                    port=address.port,
                    connection_timeout=self.timeout,
                    connection_cache=self._cache,
                )
        except LogonFailure:
            raise SourceUnavailableError(
                f"ファイルサーバー {address.host} にユーザー「{address.user}」でログオンできません。"
                "ユーザー名とパスワード（RAG_SMB_PASSWORD か --password-file）を確かめてください。"
            ) from None
        except (ValueError, OSError, SMBException) as error:
            raise SourceUnavailableError(self._unreachable(error)) from None
        self._connected = True

    def _unreachable(self, error: BaseException) -> str:
        detail = str(error).split(": ", 1)[-1] if "Failed to connect" in str(error) else type(error).__name__
        return (
            f"ファイルサーバー {self.address.host}:{self.address.port} に接続できません（{detail}）。"
            "サーバーが動いているか、ネットワークとファイアウォールを確かめてください。"
        )

    def listing(self) -> Listing:
        from smbprotocol.exceptions import SMBException, SMBOSError

        self._connect()
        listing = Listing()
        try:
            self._walk((), listing)
        except SMBOSError as error:
            self.close()
            if error.ntstatus in _NO_SHARE:
                raise SourceUnavailableError(
                    f"共有「{self.address.share}」がファイルサーバー {self.address.host} にありません。共有名を確かめてください。"
                ) from None
            if error.errno in _NOT_THERE:
                raise SourceUnavailableError(
                    f"共有のフォルダー「{self.address.unc()}」がありません。パスを確かめてください。"
                ) from None
            if error.errno == errno.EACCES:
                raise SourceUnavailableError(
                    f"共有のフォルダー「{self.address.unc()}」を読む権限がユーザー「{self.address.user}」にありません。"
                ) from None
            raise SourceUnavailableError(
                f"共有「{self.address.unc()}」を一覧できません（{error.strerror}）。"
            ) from None
        except (ValueError, OSError, SMBException) as error:
            self.close()
            raise SourceUnavailableError(self._unreachable(error)) from None
        return sort_listing(listing)

    def _walk(self, parts: tuple[str, ...], listing: Listing) -> None:
        import smbclient

        folder = self.address.unc(*parts)
        found = sorted(
            smbclient.scandir(folder, port=self.address.port, connection_cache=self._cache), key=lambda e: e.name
        )
        for child in found:
            info = child.smb_info
            if child.is_dir():
                if self.patterns.folder_counts(child.name):
                    self._walk((*parts, child.name), listing)
                continue
            path = document_name([*parts, child.name])
            reason = self.patterns.reason_left_out(path)
            if reason is not None:
                if reason:
                    listing.skipped.append((path, reason))
                continue
            handle = self.address.unc(*parts, child.name)
            listing.entries.append(Entry(path, int(info.end_of_file), _nanoseconds(info.last_write_time), handle))

    def read(self, entry: Entry) -> bytes:
        import smbclient
        from smbprotocol.exceptions import SMBException, SMBOSError

        self._connect()
        try:
            with smbclient.open_file(
                entry.handle, mode="rb", port=self.address.port, connection_cache=self._cache, share_access="rw"
            ) as handle:
                return bytes(handle.read())
        except SMBOSError as error:
            raise OSError(error.errno, _file_error(error)) from None
        except (ValueError, OSError, SMBException) as error:  # a timeout is an OSError
            self.close()
            raise SourceUnavailableError(self._unreachable(error)) from None

    def where(self, name: str) -> str:
        return self.address.unc(*name.split("/"))

    def close(self) -> None:
        import smbclient

        if self._cache:
            try:
                smbclient.reset_connection_cache(connection_cache=self._cache)
            except Exception:  # noqa: BLE001 - a connection already dead cannot be closed politely
                self._cache.clear()
        self._connected = False


def _file_error(error: Any) -> str:
    if error.errno in _NOT_THERE:
        return "共有から消えました（読む前に削除か移動されました）"
    if error.errno == errno.EACCES:
        return "読む権限がありません、または他の人が排他で開いています"
    return str(error.strerror or error)


def source_error_for_missing_password(address: SmbAddress) -> SourceError:
    """The refusal of a share with neither a password nor Kerberos."""
    return SourceError(
        f"{address.url} のパスワードがありません。RAG_SMB_PASSWORD に入れるか、"
        "このサービスだけが読めるファイルを --password-file で指定してください（Kerberos なら ?auth=kerberos）。"
    )
