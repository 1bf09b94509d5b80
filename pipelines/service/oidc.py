"""Signing in with OpenID Connect: a provider's signed token, or the page's ID token claims, to a ``Person``.

The page signs people in with Streamlit's ``st.login`` (``[auth]`` in ``.streamlit/secrets.toml``) and
gives the claims of their ID token to ``person_of``. The API takes ``Authorization: Bearer TOKEN`` where
TOKEN is a JWT from the provider (an access token for the API's audience, or an ID token issued to
the client): ``TokenVerifier`` fetches the provider's metadata (``RAG_OIDC_METADATA_URL``) and its
signing keys (``jwks_uri``), keeps them, fetches them again when a token names a key it does not know
(the provider rotated its keys; at most once a minute), and checks the signature (asymmetric
algorithms only), ``iss`` (the metadata's issuer), ``aud`` (``RAG_OIDC_AUDIENCE``, by default
``RAG_OIDC_CLIENT_ID``) and ``exp``. A person's name is ``preferred_username``, else ``email``, else
``sub``; their groups are the ``groups`` claim, else ``roles``. The policy turns them into rights.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from pipelines.errors import AuthenticationError, DirectoryError
from pipelines.service.signin import Person
from pipelines.settings import Settings

# a provider signs with its private key; a symmetric algorithm would let a public key sign
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# seconds to wait for the provider's metadata and keys
TIMEOUT = 5.0
# at most this often, the keys are fetched again for a token signed with a key not seen yet
REFETCH_SECONDS = 60.0
# clocks of the provider and this machine may differ this much (seconds)
LEEWAY = 30
INVALID = (
    "トークンを確かめられません（署名・発行者・対象が違います）。サインインし直して新しいトークンを使ってください。"
)
EXPIRED = "トークンの有効期限が切れています。サインインし直して新しいトークンを使ってください。"
MISSING = "API キーかトークンがありません。Authorization: Bearer キーかトークン のヘッダーを付けてください。"
UNREACHABLE = "サインインのための OpenID Connect プロバイダーに接続できません。しばらくしてからもう一度試すか、管理者に連絡してください。"


def person_of(claims: Mapping[str, Any]) -> Person:
    """A person from a token's claims: ``preferred_username``, else ``email``, else ``sub``; groups from ``groups``, else ``roles``."""
    user = next((str(claims[c]) for c in ("preferred_username", "email", "sub") if claims.get(c)), "")
    if not user:
        raise AuthenticationError(INVALID)
    found = claims.get("groups") or claims.get("roles") or ()
    groups = [found] if isinstance(found, str) else list(found) if isinstance(found, list | tuple) else []
    return Person(user, tuple(sorted(dict.fromkeys(str(g) for g in groups))))


def _fetch(url: str) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise DirectoryError(f"{UNREACHABLE}（{url}: {type(error).__name__}）") from error
    if not isinstance(body, dict):
        raise DirectoryError(f"{UNREACHABLE}（{url} の応答が JSON のオブジェクトではありません）")
    return body


class TokenVerifier:
    """The provider of ``metadata_url``'s tokens for ``audience``, checked against its keys (kept, refetched on rotation)."""

    def __init__(
        self,
        metadata_url: str,
        audience: str,
        fetch: Callable[[str], dict[str, Any]] = _fetch,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata_url = metadata_url
        self.audience = audience
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._issuer = ""
        self._keys: KeySet | None = None
        self._fetched = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The provider of ``RAG_OIDC_METADATA_URL``, for ``RAG_OIDC_AUDIENCE`` (by default ``RAG_OIDC_CLIENT_ID``)."""
        return cls(settings.oidc_metadata_url, settings.oidc_audience or settings.oidc_client_id)

    def _load(self, again: bool) -> tuple[str, KeySet]:
        """The issuer and keys, fetched the first time, and again when ``again`` and not within the last minute."""
        with self._lock:
            stale = again and time.monotonic() - self._fetched > REFETCH_SECONDS
            if self._keys is None or stale:
                metadata = self._fetch(self.metadata_url)
                if not metadata.get("issuer") or not metadata.get("jwks_uri"):
                    raise DirectoryError(f"{UNREACHABLE}（{self.metadata_url} に issuer か jwks_uri がありません）")
                try:
                    keys = KeySet.import_key_set(self._fetch(str(metadata["jwks_uri"])))  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError) as error:
                    raise DirectoryError(f"{UNREACHABLE}（鍵を読めません: {type(error).__name__}）") from error
                self._issuer, self._keys, self._fetched = str(metadata["issuer"]), keys, time.monotonic()
            return self._issuer, self._keys

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature, issuer, audience and expiry hold; ``AuthenticationError`` otherwise."""
        issuer, keys = self._load(again=False)
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            except (ValueError, JoseError):  # perhaps a key the provider rotated in since
                issuer, keys = self._load(again=True)
                decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                now=lambda: int(self._clock()),
                leeway=LEEWAY,
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            )
            registry.validate(decoded.claims)
        except ExpiredTokenError as error:
            raise AuthenticationError(EXPIRED) from error
        except (ValueError, JoseError) as error:
            raise AuthenticationError(INVALID) from error
        return dict(decoded.claims)

    def person(self, authorization: str | None) -> Person:
        """The person of a request's ``Authorization: Bearer TOKEN``; refused when there is none or it does not hold."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(MISSING)
        return person_of(self.verify(token.strip()))
