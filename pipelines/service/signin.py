"""Signing in against an LDAP directory: a user name and password to a ``Person`` with their groups.

``LdapDirectory.authenticate`` binds *as the person* (the DN of ``RAG_LDAP_USER_DN`` with their user
name in it), so the directory checks the password and nothing here holds a service account; then,
still bound as them, it reads the ``cn`` of every group under ``RAG_LDAP_GROUP_BASE`` whose ``member``
is their DN. The policy (pipelines/service/policy.py) turns the user and the groups into rights.

An empty password is refused before any bind: to LDAP, a name with an empty password is an
*unauthenticated* bind, which many directories accept. A user name with a character that would change
the DN (``,`` ``+`` ``=`` ``\\`` ``"`` ``<`` ``>`` ``;`` ``#``, a filter's ``*`` ``(`` ``)``, a control
character, spaces at either end) is refused rather than escaped: no real account needs one. An unknown
user and a wrong password get one message, so that a refusal does not tell which names exist.
"""

from __future__ import annotations

import contextlib
import ssl
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from pipelines.errors import AuthenticationError, DirectoryError
from pipelines.settings import Settings

WRONG = "ユーザー名かパスワードが違います。"
NO_PASSWORD = "パスワードを入力してください。"
UNREACHABLE = "サインインのためのディレクトリ（LDAP サーバー）に接続できません。しばらくしてからもう一度試すか、管理者に連絡してください。"
# characters that would change a DN or a search filter if they were put in one as they are
_FORBIDDEN = set(',+="\\<>;#*()')
# seconds to connect to the directory and to wait for each of its answers
TIMEOUT = 5  # whole seconds: ldap3 packs them into a socket option
INVALID_CREDENTIALS = 49
SERVICE_REFUSED = (
    "サインインのためのサービスアカウント（RAG_LDAP_BIND_DN）をディレクトリが受け付けません。管理者に連絡してください。"
)


@dataclass(frozen=True)
class Search:
    """How to find a person whose DN cannot be written from their name: a service account searches for them."""

    base: str
    filter: str
    bind_dn: str
    bind_password: str = field(repr=False)


def _first_cn(dn: str) -> str:
    """A group's name from its DN (``CN=人事部,OU=Groups,DC=corp`` → 人事部)."""
    first = dn.split(",", 1)[0]
    name, _, value = first.partition("=")
    return value.strip() if name.strip().lower() == "cn" else dn


@dataclass(frozen=True)
class Person:
    """Someone the directory knows: their user name as they typed it, and the names of their groups."""

    user: str
    groups: tuple[str, ...] = ()


def check_user(user: str) -> str:
    """The user name as it goes in the DN; refused when it is empty or holds a character that would change the DN."""
    if not user or user != user.strip():
        raise AuthenticationError(WRONG if not user else "ユーザー名の前後に空白があります。")
    if any(char in _FORBIDDEN or unicodedata.category(char).startswith("C") for char in user):
        raise AuthenticationError(
            'ユーザー名に使えない文字（, + = \\ " < > ; # * ( ) や制御文字）が含まれています。'
            "ユーザー名だけを入力してください。"
        )
    return user


class LdapDirectory:
    """An LDAP directory people sign in to by binding as themselves; their groups are read as them."""

    def __init__(
        self,
        url: str,
        user_dn: str,
        group_base: str = "",
        starttls: bool = False,
        timeout: int = TIMEOUT,
        ca_file: Path | None = None,
        search: Search | None = None,
    ) -> None:
        self.url = url
        self.user_dn = user_dn
        self.group_base = group_base
        self.starttls = starttls
        self.timeout = timeout
        self.ca_file = ca_file
        self.search = search

    @classmethod
    def from_settings(cls, settings: Settings) -> LdapDirectory:
        """The directory of ``RAG_LDAP_URL``, ``RAG_LDAP_USER_DN``, ``RAG_LDAP_GROUP_BASE`` and ``RAG_LDAP_STARTTLS``."""
        return cls(
            settings.ldap_url,
            settings.ldap_user_dn,
            settings.ldap_group_base,
            settings.ldap_starttls,
            ca_file=settings.ldap_ca_file,
            search=Search(
                settings.ldap_search_base,
                settings.ldap_search_filter,
                settings.ldap_bind_dn,
                settings.ldap_bind_password,
            )
            if settings.ldap_search_base
            else None,
        )

    def dn(self, user: str) -> str:
        """The person's DN: the template with their (checked) user name in it."""
        return self.user_dn.replace("{user}", check_user(user))

    def authenticate(self, user: str, password: str) -> Person:
        """The person once the directory accepts their password, with their groups; refused otherwise.

        ``AuthenticationError`` for an unknown user or a wrong password (one message for both), an
        empty password or a user name that is not one; ``DirectoryError`` when the directory cannot be
        reached or answers with an error.
        """
        check_user(user)
        if not password:
            raise AuthenticationError(NO_PASSWORD)  # an empty password would be an unauthenticated bind
        try:
            listed: tuple[str, ...] = ()
            if self.search is None:
                dn = self.dn(user)
            else:
                dn, listed = self._find(user)
            with self._bound(dn, password) as connection:
                return Person(user, tuple(sorted({*listed, *self._groups(connection, dn)})))
        except LDAPException as error:
            raise DirectoryError(f"{UNREACHABLE}（{type(error).__name__}）") from error

    def _server(self) -> ldap3.Server:
        # the certificate is checked against the system's authorities (or RAG_LDAP_CA_FILE's): ldap3's
        # default checks nothing
        ca = str(self.ca_file) if self.ca_file is not None else None
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca)
        return ldap3.Server(
            self.url,
            use_ssl=self.url.startswith("ldaps://"),
            tls=tls,
            connect_timeout=self.timeout,
            get_info=ldap3.NONE,
        )

    @contextlib.contextmanager
    def _bound(self, dn: str, password: str) -> Iterator[ldap3.Connection]:
        """A connection bound as ``dn`` (over TLS first with STARTTLS); refused when the directory refuses the password."""
        connection = ldap3.Connection(self._server(), user=dn, password=password, receive_timeout=self.timeout)
        try:
            connection.open()
            if self.starttls and not connection.start_tls():
                raise DirectoryError(
                    f"{UNREACHABLE}（STARTTLS を始められません: {connection.result.get('description')}）"
                )
            if not connection.bind():
                if connection.result.get("result") == INVALID_CREDENTIALS:
                    raise AuthenticationError(WRONG)
                raise DirectoryError(f"{UNREACHABLE}（{connection.result.get('description')}）")
            yield connection
        finally:
            with contextlib.suppress(LDAPException):  # a connection TLS refused has no socket left to unbind
                connection.unbind()

    def _find(self, user: str) -> tuple[str, tuple[str, ...]]:
        """The person's DN and the groups their entry lists (``memberOf``), found by the service account."""
        assert self.search is not None
        search = self.search
        query = search.filter.replace("{user}", escape_filter_chars(user))
        try:
            with self._bound(search.bind_dn, search.bind_password) as connection:
                connection.search(search.base, query, ldap3.SUBTREE, attributes=["memberOf"], size_limit=2)
                entries = list(connection.entries)
        except AuthenticationError as error:  # the service account's password, not the person's
            raise DirectoryError(SERVICE_REFUSED) from error
        if len(entries) != 1:  # nobody, or a filter that is not unique: no one signs in as somebody else
            raise AuthenticationError(WRONG)
        entry = entries[0]
        listed = entry.entry_attributes_as_dict.get("memberOf", [])
        return entry.entry_dn, tuple(_first_cn(str(group)) for group in listed)

    def _groups(self, connection: ldap3.Connection, dn: str) -> tuple[str, ...]:
        if not self.group_base:
            return ()
        found = connection.search(
            self.group_base, f"(member={escape_filter_chars(dn)})", ldap3.SUBTREE, attributes=["cn"]
        )
        if not found and connection.result.get("result") not in (0, 32):  # 32: no such object, the base is absent
            raise DirectoryError(
                f"グループを読めません（{connection.result.get('description')}）。管理者に連絡してください。"
            )
        names = (value for entry in connection.entries for value in entry.cn.values)
        return tuple(sorted(dict.fromkeys(str(name) for name in names)))
