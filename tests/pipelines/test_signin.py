"""Signing in against a real OpenLDAP directory: the groups, one message for every wrong guess, no injection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelines.errors import AuthenticationError, DirectoryError, SettingsError
from pipelines.service.signin import NO_PASSWORD, UNREACHABLE, WRONG, LdapDirectory, Person, Search, check_user
from pipelines.settings import Settings
from testkit.ldap import BASE, GROUP_BASE, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, USER_DN, Slapd, available
from testkit.servers import free_port

TANAKA, SATO = PEOPLE


@pytest.fixture
def directory(slapd: Slapd) -> LdapDirectory:
    return LdapDirectory(slapd.url, USER_DN, GROUP_BASE, timeout=3)


def test_a_person_signs_in_with_their_groups(directory: LdapDirectory) -> None:
    assert directory.authenticate("tanaka", TANAKA.password) == Person("tanaka", ("jinji",))
    assert directory.authenticate("sato", SATO.password) == Person("sato", ("gijutsu",))


def test_without_a_group_base_no_groups_are_read(slapd: Slapd) -> None:
    assert LdapDirectory(slapd.url, USER_DN).authenticate("tanaka", TANAKA.password) == Person("tanaka")


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("tanaka", "違うパスワード"),
        ("tanaka", SATO.password),  # another person's password
        ("yamada", "なんでも"),  # nobody of that name
        ("TANAKA", TANAKA.password + " "),
    ],
)
def test_an_unknown_user_and_a_wrong_password_get_one_message(
    directory: LdapDirectory, user: str, password: str
) -> None:
    with pytest.raises(AuthenticationError) as refused:
        directory.authenticate(user, password)
    assert str(refused.value) == WRONG == "ユーザー名かパスワードが違います。"


def test_an_empty_password_is_refused_before_any_bind() -> None:
    """An empty password would be an unauthenticated bind, which the directory accepts: never sent."""
    nowhere = LdapDirectory(f"ldap://127.0.0.1:{free_port()}", USER_DN, GROUP_BASE, timeout=1)
    with pytest.raises(AuthenticationError, match=NO_PASSWORD):
        nowhere.authenticate("tanaka", "")  # no directory listens: refused before connecting


def test_an_unreachable_directory_says_so_not_a_wrong_password() -> None:
    nowhere = LdapDirectory(f"ldap://127.0.0.1:{free_port()}", USER_DN, GROUP_BASE, timeout=1)
    with pytest.raises(DirectoryError) as refused:
        nowhere.authenticate("tanaka", TANAKA.password)
    assert str(refused.value).startswith(UNREACHABLE)
    assert not isinstance(refused.value, AuthenticationError)


@pytest.mark.parametrize(
    "user",
    [
        "tanaka,ou=people,dc=example,dc=jp",
        "*",
        "tanaka)(uid=*",
        "x+uid=tanaka",
        'tan"aka',
        "tanaka\\2c",
        "#tanaka",
        "tan\x00aka",
        "tanaka\n",
        " tanaka",
        "uid=tanaka",
        "<tanaka>",
        "tanaka;",
    ],
)
def test_a_user_name_that_would_change_the_dn_is_refused(directory: LdapDirectory, user: str) -> None:
    with pytest.raises(AuthenticationError) as refused:
        directory.authenticate(user, TANAKA.password)
    assert str(refused.value) != WRONG or not user  # said for what it is, not as a wrong password
    with pytest.raises(AuthenticationError):
        check_user(user)


@pytest.mark.parametrize("user", ["tanaka", "田中", "t.tanaka", "tanaka-2", "ｔａｎａｋａ", "tanaka@example.jp"])
def test_ordinary_user_names_go_in_the_dn_as_typed(user: str) -> None:
    directory = LdapDirectory("ldap://127.0.0.1", USER_DN)
    assert directory.dn(user) == f"uid={user},ou=people,dc=example,dc=jp"


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"ldap_url": "127.0.0.1", "ldap_user_dn": USER_DN}, "RAG_LDAP_URL"),
        ({"ldap_url": "ldap://h", "ldap_user_dn": "uid=x,dc=jp"}, "RAG_LDAP_USER_DN"),
        ({"ldap_url": "ldap://h", "ldap_user_dn": "uid={user},cn={user}"}, "RAG_LDAP_USER_DN"),
        ({"ldap_url": "ldaps://h", "ldap_user_dn": USER_DN, "ldap_starttls": "on"}, "RAG_LDAP_STARTTLS"),
        ({"ldap_url": "ldap://h", "ldap_user_dn": USER_DN, "policy_file": ""}, "RAG_POLICY_FILE"),
        ({"ldap_url": "ldap://h", "ldap_user_dn": USER_DN, "session_minutes": "0"}, "RAG_SESSION_MINUTES"),
        ({"auth": "kerberos"}, "RAG_AUTH"),
        ({"ldap_url": "ldap://h", "ldap_search_base": "dc=corp", "ldap_bind_dn": "cn=r"}, "RAG_LDAP_BIND_PASSWORD"),
        (
            {"ldap_url": "ldap://h", "ldap_search_base": "dc=corp", "ldap_search_filter": "sAMAccountName={user}"},
            "RAG_LDAP_SEARCH_FILTER",
        ),
    ],
)
def test_sign_in_settings_that_cannot_work_are_refused(values: dict[str, str], fragment: str) -> None:
    environ = {"RAG_AUTH": "ldap", "RAG_POLICY_FILE": "/etc/rag-policy"}
    environ.update({f"RAG_{name.upper()}": value for name, value in values.items()})
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(environ)


def test_sign_in_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "RAG_AUTH": "ldap",
            "RAG_LDAP_URL": "ldap://ldap.example.jp",
            "RAG_LDAP_USER_DN": USER_DN,
            "RAG_LDAP_GROUP_BASE": GROUP_BASE,
            "RAG_LDAP_STARTTLS": "on",
            "RAG_POLICY_FILE": "/etc/rag-policy",
        }
    )
    directory = LdapDirectory.from_settings(settings)
    assert (directory.url, directory.user_dn, directory.group_base, directory.starttls) == (
        "ldap://ldap.example.jp",
        USER_DN,
        GROUP_BASE,
        True,
    )
    assert settings.session_minutes == 480
    assert Settings.from_env({}).auth == "none"
    oidc = Settings.from_env({"RAG_AUTH": "oidc", "RAG_POLICY_FILE": "policy.txt"})
    assert (oidc.auth, oidc.oidc_metadata_url, oidc.oidc_client_id, oidc.oidc_audience) == ("oidc", "", "", "")
    with pytest.raises(SettingsError, match="RAG_POLICY_FILE"):
        Settings.from_env({"RAG_AUTH": "oidc"})
    with pytest.raises(SettingsError, match="RAG_OIDC_METADATA_URL"):
        Settings.from_env({"RAG_AUTH": "oidc", "RAG_POLICY_FILE": "p", "RAG_OIDC_METADATA_URL": "login.example.jp"})


@pytest.fixture(scope="module")
def tls_slapd() -> Iterator[Slapd]:
    """The test directory with a certificate for 127.0.0.1 from a CA of its own, on ldap:// and ldaps://."""
    if not available():
        pytest.skip("slapd がありません（apt-get install slapd ldap-utils）")
    server = Slapd(tls=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.server
def test_ldaps_and_starttls_check_the_directorys_certificate(tls_slapd: Slapd) -> None:
    """With the company's CA the password goes over TLS, both ways; without it the certificate is refused, nothing sent."""
    tanaka = PEOPLE[0]
    assert tls_slapd.ca is not None
    for url, starttls in ((tls_slapd.ldaps_url, False), (tls_slapd.url, True)):
        trusted = LdapDirectory(url, USER_DN, GROUP_BASE, starttls, ca_file=tls_slapd.ca)
        assert trusted.authenticate(tanaka.uid, tanaka.password) == Person(tanaka.uid, tanaka.groups)
        with pytest.raises(AuthenticationError, match=WRONG):
            trusted.authenticate(tanaka.uid, "違うパスワード")
        untrusted = LdapDirectory(url, USER_DN, GROUP_BASE, starttls)  # the system's authorities only
        with pytest.raises(DirectoryError, match=UNREACHABLE):
            untrusted.authenticate(tanaka.uid, tanaka.password)


def test_active_directory_style_a_service_account_finds_the_person(slapd: Slapd) -> None:
    """RAG_LDAP_SEARCH_BASE: the service account searches for the person's entry, then the person binds with their password."""
    tanaka = PEOPLE[0]

    def directory(query: str = "(uid={user})", password: str = SERVICE_PASSWORD) -> LdapDirectory:
        search = Search(f"ou=people,{BASE}", query, SERVICE_DN, password)
        return LdapDirectory(slapd.url, "", GROUP_BASE, search=search)

    assert directory().authenticate(tanaka.uid, tanaka.password) == Person(tanaka.uid, tanaka.groups)
    for user, password in ((tanaka.uid, "違うパスワード"), ("nobody", "違うパスワード")):
        with pytest.raises(AuthenticationError, match=WRONG):
            directory().authenticate(user, password)
    # a filter that finds more than one entry signs nobody in (sato's password must not open tanaka)
    with pytest.raises(AuthenticationError, match=WRONG):
        directory("(|(uid={user})(uid=sato))").authenticate(tanaka.uid, PEOPLE[1].password)
    # the service account's own password refused: the administrator's to fix, not the person's
    with pytest.raises(DirectoryError, match="サービスアカウント"):
        directory(password="違う").authenticate(tanaka.uid, tanaka.password)
    assert "reader-pass" not in repr(Search(f"ou=people,{BASE}", "(uid={user})", SERVICE_DN, SERVICE_PASSWORD))
