"""A real OpenID Connect provider for the sign-in tests: ``oidc-provider-mock`` on 127.0.0.1, two people.

The mock signs ID tokens (RS256) with the user's claims, ``aud`` the client's id; any client id and
secret is accepted. ``sign_in`` goes through its authorization-code flow as a browser would (the
form's ``sub`` posted, the code exchanged) and returns the token response. Its access tokens are
opaque, so the API tests send the ID token, a JWT for the client id (the API's default audience).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from typing import Any

import httpx

from testkit.servers import BIN, Server, free_port

CLIENT_ID = "jdocs-test"
CLIENT_SECRET = "jdocs-test-secret"
# preferred_username goes in the ID token with the ``profile`` scope; groups always
PEOPLE = (
    {"sub": "suzuki", "preferred_username": "suzuki", "email": "suzuki@example.jp", "groups": ["jinji"]},
    {"sub": "yamada", "preferred_username": "yamada", "roles": ["gijutsu"]},
)


def available() -> bool:
    """Whether ``oidc-provider-mock`` is installed (requirements-dev.txt)."""
    return (BIN / "oidc-provider-mock").exists() or shutil.which("oidc-provider-mock") is not None


class Provider(Server):
    """``oidc-provider-mock`` on a free port with ``PEOPLE``; ``token_max_age`` seconds for its tokens."""

    def __init__(self, token_max_age: int = 3600) -> None:
        port = free_port()
        command = [str(BIN / "oidc-provider-mock"), "--port", str(port), "--token-max-age", str(token_max_age)]
        for person in PEOPLE:
            command += ["--user-claims", json.dumps(person)]
        super().__init__(command, port, "/.well-known/openid-configuration")
        self.url = f"http://127.0.0.1:{port}"
        self.metadata_url = f"{self.url}/.well-known/openid-configuration"

    def sign_in(self, sub: str, redirect_uri: str = "http://127.0.0.1/oauth2callback") -> dict[str, Any]:
        """The token response (``id_token``, ``access_token``) for ``sub``, through the authorization-code flow."""
        query = {
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "openid profile email",
        }
        with httpx.Client(base_url=self.url, timeout=10) as client:
            authorize = f"/oauth2/authorize?{urllib.parse.urlencode(query)}"
            assert client.get(authorize).status_code == 200  # the form
            answer = client.post(authorize, data={"sub": sub})
            assert answer.status_code == 302, answer.text
            code = urllib.parse.parse_qs(urllib.parse.urlparse(answer.headers["location"]).query)["code"][0]
            token = client.post(
                "/oauth2/token",
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
                auth=(CLIENT_ID, CLIENT_SECRET),
            )
            assert token.status_code == 200, token.text
            body: dict[str, Any] = token.json()
            return body
