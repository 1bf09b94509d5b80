"""The page behind sign-in: the form, a person's collections and buttons by the policy, sign-out, expiry, loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

from page.common import escape_markdown
from page.signin import SIGNED_IN, SignedIn
from pipelines.service import words
from pipelines.service.library import Library
from pipelines.service.results import Caller
from pipelines.service.service import Service
from pipelines.service.signin import NO_PASSWORD, UNREACHABLE, WRONG
from pipelines.settings import Settings
from testkit.ldap import GROUP_BASE, PEOPLE, USER_DN, Slapd
from testkit.page import APP, texts, wait_for_model
from testkit.servers import free_port

TANAKA, SATO = PEOPLE
DESIGN = "設計の基本方針は、安全と保守のしやすさを第一にすることです。"
POLICY = "group:jinji 人事* read,download\ngroup:gijutsu 技術* read,write\n"


@pytest.fixture
def signin_page(slapd: Slapd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    """The page with RAG_AUTH=ldap against the test directory, over three collections."""
    policy = tmp_path / "policy.txt"
    policy.write_text(POLICY, encoding="utf-8")
    for name, value in {
        # no model: these pages do not wait for one, and a model still loading when the tests end would
        # outlive them (the test that uploads sets the real one and waits for it)
        "RAG_EMBEDDING_MODEL": str(tmp_path / "no-model"),
        "RAG_AUTH": "ldap",
        "RAG_LDAP_URL": slapd.url,
        "RAG_LDAP_USER_DN": USER_DN,
        "RAG_LDAP_GROUP_BASE": GROUP_BASE,
        "RAG_POLICY_FILE": str(policy),
    }.items():
        monkeypatch.setenv(name, value)
    service = Service(Library(Settings.from_env()))
    for name in ("人事規程", "技術資料"):
        service.create_collection(Caller("cli"), name)
    service.close()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    yield at.run()
    st.cache_resource.clear()


def sign_in(at: AppTest, user: str, password: str) -> AppTest:
    at.text_input(key="sign-in-user").input(user)
    at.text_input(key="sign-in-password").input(password)
    next(b for b in at.button if b.label == "サインイン").click()
    return at.run()


def labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button} | {e.label for e in at.expander} | {s.value for s in at.subheader}


def test_the_page_is_a_sign_in_form_until_the_directory_accepts_the_person(signin_page: AppTest) -> None:
    at = signin_page
    assert not at.exception
    assert [t.label for t in at.text_input] == ["ユーザー名", "パスワード"]
    assert "サインイン" in labels(at)
    assert not at.selectbox  # nothing of the collections before sign-in
    sign_in(at, "tanaka", "違うパスワード")
    assert [e.value for e in at.error] == [WRONG]
    assert not at.selectbox
    sign_in(at, "tanaka", TANAKA.password)
    assert not at.exception, at.exception
    assert at.selectbox(key="collection").options == ["人事規程"]  # only what group jinji may read
    assert "tanaka としてサインインしています" in texts(at)
    shown = labels(at)
    assert "文書を追加" not in shown
    assert "取り込む" not in shown
    assert "コレクションの作成・削除" not in shown
    at.button(key="sign-out").click().run()
    assert not at.selectbox
    assert [t.label for t in at.text_input] == ["ユーザー名", "パスワード"]
    # both sign-ins are in the audit log: who, from which face, and the refusal's words
    service = Service(Library(Settings.from_env()))
    rows = [(e.action, e.who, e.face, e.outcome) for e in service.audit(Caller("cli"))]
    service.close()
    assert ("sign_in_failed", "tanaka", "page", "refused") in rows
    assert ("sign_in", "tanaka", "page", "ok") in rows
    assert rows.index(("sign_in_failed", "tanaka", "page", "refused")) < rows.index(("sign_in", "tanaka", "page", "ok"))


def test_a_person_who_may_write_uploads_and_without_download_gets_no_file(
    signin_page: AppTest, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))  # read at the next run
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    at = sign_in(signin_page, "sato", SATO.password)
    assert at.selectbox(key="collection").options == ["技術資料"]
    shown = labels(at)
    assert "文書を追加" in shown
    assert "取り込む" in shown
    assert "コレクションの作成・削除" not in shown  # no admin right
    wait_for_model(at)
    at.file_uploader[0].set_value([("設計.txt", DESIGN.encode(), "text/plain")])
    at.run()
    next(b for b in at.button if b.label == "取り込む").click().run()
    assert any(s.value.startswith("設計\\.txt: 追加") for s in at.success)
    at.text_input(key="question").input("設計").run()
    assert not at.exception, at.exception
    download = next(b for b in at.get("download_button") if b.proto.label == "元のファイルをダウンロード")
    assert download.proto.disabled  # read and write, no download
    assert download.proto.help == words.NO_DOWNLOAD


def test_a_link_into_a_collection_the_person_may_not_read_does_not_name_the_document(
    signin_page: AppTest,
) -> None:
    at = signin_page
    at.query_params.update({"collection": "技術資料", "doc": "秘密の設計.txt", "chunk": "0"})
    sign_in(at.run(), "tanaka", TANAKA.password)
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader if s.value.startswith("原文")] == ["原文"]
    assert any("技術資料" in w.value and "権限がありません" in w.value for w in at.warning)
    assert "秘密" not in texts(at) + "".join(s.value for s in at.subheader)


def test_a_sign_in_expires(signin_page: AppTest) -> None:
    at = sign_in(signin_page, "tanaka", TANAKA.password)
    signed = at.session_state[SIGNED_IN]
    at.session_state[SIGNED_IN] = SignedIn(signed.person, time.time() - 481 * 60)
    at.run()
    assert not at.selectbox
    assert "サインインの有効期限が切れました" in texts(at)


def test_an_empty_password_and_an_unreachable_directory_are_said(
    signin_page: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = sign_in(signin_page, "tanaka", "")
    assert [e.value for e in at.error] == [NO_PASSWORD]
    monkeypatch.setenv("RAG_LDAP_URL", f"ldap://127.0.0.1:{free_port()}")  # settings are read at each run
    sign_in(at, "tanaka", TANAKA.password)
    assert len(at.error) == 1
    assert at.error[0].value.startswith(escape_markdown(UNREACHABLE))
    assert not at.selectbox


@pytest.mark.parametrize("address", ["0.0.0.0", "", "192.0.2.1"])
def test_without_sign_in_the_page_serves_this_machine_only(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(tmp_path / "no-model"))
    before = config.get_option("server.address")
    config.set_option("server.address", address)
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
    finally:
        config.set_option("server.address", before)
    assert not at.selectbox
    assert "サインインなし" in at.error[0].value
    assert "docs/signin.md" in at.error[0].value


def test_the_configured_address_is_loopback() -> None:
    """The page's own config (.streamlit/config.toml) serves this machine, so it starts without sign-in."""
    assert config.get_option("server.address") == "127.0.0.1"


def test_openid_connect_without_auth_secrets_says_how_to_configure_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.txt"
    policy.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(tmp_path / "no-model"))
    monkeypatch.setenv("RAG_AUTH", "oidc")
    monkeypatch.setenv("RAG_POLICY_FILE", str(policy))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.selectbox
    assert "[auth]" in at.error[0].value
    assert "secrets.toml" in at.error[0].value
    # with [auth], the sign-in button and nothing else of the page
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "a-cookie-secret-of-enough-length-0123456789",
        "client_id": "jdocs",
        "client_secret": "secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
    at.run()
    assert not at.exception
    assert not at.selectbox
    assert [b.label for b in at.button] == ["サインイン"]


@pytest.mark.parametrize(
    ("issued", "now", "over"),
    [
        (1_000_000, 1_000_000 + 480 * 60, False),  # exactly the session's length: still on
        (1_000_000, 1_000_000 + 480 * 60 + 1, True),
        (1_000_000.5, 1_000_100, False),
        (None, 9_999_999_999, False),  # no iat (no OpenID Connect provider leaves it out): the cookie's own age
        ("1000000", 9_999_999_999, False),  # not a number: not trusted to end anything
    ],
)
def test_a_providers_sign_in_ends_after_the_session_minutes(issued: object, now: float, over: bool) -> None:
    from page.signin import provider_session_over

    claims = {"sub": "suzuki"} | ({"iat": issued} if issued is not None else {})
    assert provider_session_over(claims, 480, now) is over
