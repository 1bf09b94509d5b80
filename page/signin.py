"""Who the person is to the page: signed in against the directory (``RAG_AUTH=ldap``) or an OpenID
Connect provider (``oidc``), or this machine only.

With ``RAG_AUTH=none`` nobody signs in and the page has every right, so it serves only an address of
this machine (the server's ``server.address``, .streamlit/config.toml); any other refuses to start.
With ``ldap`` the page is a sign-in form until the directory accepts the person, then theirs for
``RAG_SESSION_MINUTES``: their caller carries their user name, their groups and the policy of
``RAG_POLICY_FILE``, read once per server process and reread as it changes (docs/signin.md). With
``oidc`` Streamlit's ``st.login`` (``[auth]`` in .streamlit/secrets.toml) signs them in at the
provider; their ID token's claims name them and their groups (pipelines/service/oidc.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import streamlit as st

from page.common import PAGE, escape_markdown
from pipelines.errors import AccessError, SettingsError
from pipelines.service.oidc import person_of
from pipelines.service.results import Caller
from pipelines.service.service import Service
from pipelines.service.signin import Person
from pipelines.settings import LOOPBACK, Settings

SIGNED_IN = "signed-in"


@dataclass(frozen=True)
class SignedIn:
    """A session's sign-in: the person and when (``time.time()``) the directory accepted them."""

    person: Person
    at: float


def page_caller(settings: Settings, service: Service) -> Caller:
    """This session's caller; until there is one the page shows why, or the sign-in form, and stops there."""
    if settings.auth == "none":
        address = str(st.get_option("server.address") or "")
        if address not in LOOPBACK:
            _refuse(
                f"この画面はサインインなしで、このマシンの外（server.address = {address or 'すべてのアドレス'}）に"
                "公開されようとしています。サインインなしでは誰でもすべての文書を読み書きできるため、起動しません。"
                "社内に公開するには RAG\\_AUTH=ldap と RAG\\_LDAP\\_URL、RAG\\_LDAP\\_USER\\_DN、RAG\\_POLICY\\_FILE を"
                "設定してください（docs/signin.md）。このマシンだけで使うなら --server.address 127.0.0.1 で起動してください。"
            )
        return PAGE
    try:
        service.policy  # noqa: B018 - read once per server process here, so that a bad file refuses the start
    except SettingsError as error:
        _refuse(f"設定に誤りがあります。\n\n{escape_markdown(str(error))}")
    if settings.auth == "oidc":
        return provider_caller(service)
    signed = st.session_state.get(SIGNED_IN)
    if isinstance(signed, SignedIn) and time.time() - signed.at > settings.session_minutes * 60:
        sign_out()
        st.info("サインインの有効期限が切れました。もう一度サインインしてください。")
        signed = None
    if not isinstance(signed, SignedIn):
        sign_in_form(service)
        st.stop()
        raise AssertionError  # as in _refuse
    person = signed.person
    with st.sidebar:
        st.caption(f"{escape_markdown(person.user)} としてサインインしています")
        st.button("サインアウト", key="sign-out", on_click=sign_out)
    return service.person("page", person)


def provider_caller(service: Service) -> Caller:
    """The person the OpenID Connect provider signed in (``st.login``); until then, the サインイン button."""
    try:
        configured = "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        configured = False
    if not configured:
        _refuse(
            "OpenID Connect（RAG\\_AUTH=oidc）でサインインするための設定がありません。"
            ".streamlit/secrets.toml の [auth] に redirect\\_uri（…/oauth2callback）、cookie\\_secret、"
            "client\\_id、client\\_secret、server\\_metadata\\_url を書いてください（docs/signin.md）。"
        )
    if not st.user.get("is_logged_in"):  # absent, not False, where no sign-in has been tried
        st.subheader("サインイン", anchor=False)
        st.button("サインイン", key="sign-in", type="primary", on_click=st.login)
        st.stop()
        raise AssertionError  # as in _refuse
    claims = st.user.to_dict()
    if provider_session_over(claims, service.settings.session_minutes, time.time()):
        sign_out()
        st.logout()  # the provider's cookie goes too (Streamlit keeps it 30 days): the サインイン button comes back
        st.stop()
    person = person_of(claims)
    caller = service.person("page", person)
    if st.session_state.get(SIGNED_IN) != person:  # once per session: the provider's sign-in, audited
        service.signed_in(caller)
        st.session_state[SIGNED_IN] = person
    with st.sidebar:
        st.caption(f"{escape_markdown(person.user)} としてサインインしています")
        if st.button("サインアウト", key="sign-out"):
            sign_out()
            st.logout()
    return caller


def provider_session_over(claims: Mapping[str, Any], minutes: int, now: float) -> bool:
    """Whether a provider's sign-in is older than ``RAG_SESSION_MINUTES``, by its ID token's ``iat`` (required by
    OpenID Connect; the claims live in Streamlit's cookie, so a reload does not start the count again)."""
    issued = claims.get("iat")
    return isinstance(issued, int | float) and now - float(issued) > minutes * 60


def sign_in_form(service: Service) -> None:
    """The user name and password; the directory's refusal, said in place."""
    with st.form("sign-in", clear_on_submit=True):  # the password does not stay in the form
        st.subheader("サインイン", anchor=False)
        user = st.text_input("ユーザー名", key="sign-in-user")
        password = st.text_input("パスワード", type="password", key="sign-in-password")
        submitted = st.form_submit_button("サインイン", type="primary")
    if not submitted:
        return
    try:
        caller = service.sign_in("page", user.strip(), password)
    except AccessError as error:
        st.error(escape_markdown(str(error)))
        return
    st.session_state[SIGNED_IN] = SignedIn(Person(caller.user, caller.groups), time.time())
    st.rerun()


def sign_out() -> None:
    """Forget everything of this session: the sign-in, the chosen collection, the questions and conversation."""
    for key in list(st.session_state):
        del st.session_state[key]


def _refuse(message: str) -> NoReturn:
    st.error(message)
    st.stop()
    raise AssertionError  # st.stop() ends the run; this line only satisfies the type checker
