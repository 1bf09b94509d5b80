"""Keys of the HTTP API: who may do what to which collections.

``RAG_API_KEY`` is one key with every right to every collection. ``RAG_API_KEYS_FILE`` names a file of
lines ``KEY COLLECTION-PATTERN RIGHTS`` (a glob on the collection's name, ``*`` for all; ``#`` starts a
comment). RIGHTS is a comma list of the rights words (``read,download``, ``admin``: each grants itself,
pipelines/service/policy.py), or one of the two words of before: ``read`` alone is ``read,download`` and
``write`` alone is ``read,download,write,admin`` (it has always let a key create and delete
collections). A key is 16 or more characters that an HTTP header can carry: printable ASCII, no spaces;
any other is refused when the keys are read. A request shows its key as ``Authorization: Bearer KEY``;
the API identifies it here, and the service checks its grants (``Caller.may``) like every caller's.
Without any key configured every request is allowed, and the server only listens on loopback
(``pipelines/faces/api.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from pipelines.errors import AuthenticationError, SettingsError
from pipelines.service.policy import RIGHTS, Grant, Right, parse_rights, pattern_of
from pipelines.service.results import Caller, Face

# the two rights words a keys file had before the comma lists, as they were meant
LEGACY: dict[str, frozenset[Right]] = {"read": frozenset(("read", "download")), "write": frozenset(RIGHTS)}


def sendable(key: str) -> bool:
    """Whether an HTTP header can carry the key as it is: printable ASCII, no spaces or control characters."""
    return bool(key) and all("!" <= char <= "~" for char in key)


def parse_keys(text: str, origin: str = "RAG_API_KEYS_FILE") -> list[Grant]:
    """The grants of a keys file; a line that is not ``KEY PATTERN RIGHTS`` is refused with its number."""
    grants = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        rights = (LEGACY.get(fields[2]) or parse_rights(fields[2])) if len(fields) == 3 else None
        if rights is None:
            raise SettingsError(
                f"{origin} の {number} 行目を読めません。各行は「キー コレクションのパターン 権限」です。権限は "
                f"read、write か、{','.join(RIGHTS)} をカンマで区切って並べたものです（例: s3cr3t 人事* read,download）。"
            )
        key, pattern, _ = fields
        if not sendable(key):
            raise SettingsError(
                f"{origin} の {number} 行目のキーに HTTP ヘッダーで送れない文字（ASCII 以外の文字や制御文字）があります。"
                "英数字と記号だけのキーにしてください（例: openssl rand -hex 24）。"
            )
        if len(key) < 16:
            raise SettingsError(f"{origin} の {number} 行目のキーが短すぎます（16 文字以上にしてください）。")
        grants.append(Grant(key, pattern_of(pattern), rights))
    return grants


class Keys:
    """The configured grants, checked in constant time per key."""

    def __init__(self, grants: list[Grant]) -> None:
        self.grants = grants

    @classmethod
    def from_settings(cls, api_key: str, keys_file: Path | None) -> Keys:
        """``RAG_API_KEY`` (every right to every collection) and the grants of ``RAG_API_KEYS_FILE``."""
        grants = [Grant(api_key, "*", frozenset(RIGHTS))] if api_key else []
        if api_key and not sendable(api_key):
            raise SettingsError(
                "RAG_API_KEY に HTTP ヘッダーで送れない文字（ASCII 以外の文字、空白や改行などの制御文字）があります。"
                "英数字と記号だけのキーにしてください（例: openssl rand -hex 24）。"
            )
        if api_key and len(api_key) < 16:
            raise SettingsError("RAG_API_KEY が短すぎます。推測されないよう 16 文字以上にしてください。")
        if keys_file is not None:
            try:
                text = keys_file.read_text(encoding="utf-8")
            except OSError as error:
                raise SettingsError(f"RAG_API_KEYS_FILE「{keys_file}」を読めません（{error}）。") from error
            grants += parse_keys(text, f"RAG_API_KEYS_FILE「{keys_file}」")
        return cls(grants)

    @property
    def configured(self) -> bool:
        """Whether any key is set (without one, every request is allowed)."""
        return bool(self.grants)

    def _known(self, key: str) -> list[Grant]:
        # compare_digest with every grant's key: how long a refusal takes says nothing about the keys
        return [g for g in self.grants if hmac.compare_digest(g.principal.encode(), key.encode())]

    @staticmethod
    def label(authorization: str | None) -> str:
        """A request's key as the query log and audit name it: a short digest, never the key itself."""
        key = (authorization or "").partition(" ")[2].strip()
        return f"key:{hashlib.sha256(key.encode()).hexdigest()[:8]}" if key else ""

    def knows(self, authorization: str | None) -> bool:
        """Whether the request shows a configured key (with ``RAG_AUTH=oidc`` any other bearer is a token)."""
        scheme, _, key = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and bool(key.strip()) and bool(self._known(key.strip()))

    def identify(self, authorization: str | None) -> list[Grant] | None:
        """The grants of the request's key (None: no key is configured, all is allowed); refused when unknown."""
        if not self.configured:
            return None
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("API キーがありません。Authorization: Bearer キー のヘッダーを付けてください。")
        grants = self._known(key.strip())
        if not grants:
            raise AuthenticationError("API キーが違います。管理者に確かめてください。")
        return grants

    def caller(self, authorization: str | None, face: Face = "api", address: str = "") -> Caller:
        """The caller a request's key makes (refused when unknown); with no key configured, one with every right."""
        grants = self.identify(authorization)
        return Caller(face, self.label(authorization), address, None if grants is None else tuple(grants))
