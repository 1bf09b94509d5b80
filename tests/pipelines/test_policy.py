"""The rights policy: its file line by line, users and groups against collections and rights, and its rereading."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipelines.errors import SettingsError
from pipelines.service.policy import (
    RIGHTS,
    Grant,
    PolicyFile,
    PolicySource,
    load_policy,
    parse_policy,
    principal_name,
)
from pipelines.service.results import Caller

COLLECTIONS = ("人事規程", "人事評価", "技術文書", "default")
POLICY_TEXT = """\
# principal            collections   rights
user:田中              人事規程       read
group:人事部           人事*          read,download,write\r
group:"Domain Users"   技術*          read   # spaces in a name: in quotes
user:Ｓｕｚｕｋｉ       *              admin,read
\tgroup:ｼﾞﾝｼﾞ\t技術文書\tdownload
"""


def member(user: str, *groups: str, policy: PolicySource | None = None) -> Caller:
    return Caller("page", f"user:{user}", "", policy if policy is not None else parse_policy(POLICY_TEXT), user, groups)


def rights_of(caller: Caller) -> set[tuple[str, str]]:
    return {(c, r) for c in COLLECTIONS for r in RIGHTS if caller.may(c, r)}


def test_policy_file_lines() -> None:
    policy = parse_policy(POLICY_TEXT)
    assert policy.grants == {
        "user:田中": (Grant("user:田中", "人事規程", frozenset({"read"})),),
        "group:人事部": (Grant("group:人事部", "人事*", frozenset({"read", "download", "write"})),),
        "group:domain users": (Grant("group:domain users", "技術*", frozenset({"read"})),),
        "user:suzuki": (Grant("user:suzuki", "*", frozenset({"admin", "read"})),),
        "group:ジンジ": (Grant("group:ジンジ", "技術文書", frozenset({"download"})),),
    }
    assert parse_policy("").grants == {}
    assert parse_policy('user:"田中 太郎" "人事 規程" read').grants["user:田中 太郎"][0].pattern == "人事 規程"
    assert parse_policy('user:"田中 太郎" "人事 規程" read').grants_of("田中\u3000太郎")
    # a principal on several lines has every line's grants; a full-width pattern is kept as names are
    twice = parse_policy("user:田中 人事* read\nuser:たなか * read\nuser:田中 ＡＢＣ* write\n")
    assert [g.pattern for g in twice.grants["user:田中"]] == ["人事*", "ABC*"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("田中 人事* read", 1),  # no user: or group:
        ("role:管理 * read", 1),
        ("user: * read", 1),  # no name
        ("user:田中 人事*", 1),
        ("user:田中 人事* read extra", 1),
        ("user:田中 人事* reed", 1),
        ("user:田中 人事* Read", 1),
        ("user:田中 人事* read,", 1),
        ("user:田中 人事* read, download", 1),  # a space in the list
        ('user:田中 人事* write\ngroup:"人事部 人事* read', 2),  # an unclosed quote
        ("# only a comment\n\nuser:田中 人事* read\nuser:田中 人事* 読み取り", 4),
    ],
)
def test_a_bad_line_refuses_the_file_with_its_number(text: str, line: int) -> None:
    with pytest.raises(SettingsError, match=f"RAG_POLICY_FILE の {line} 行目を読めません"):
        parse_policy(text)


def test_the_matrix_of_users_and_groups() -> None:
    """Each person's rights: their own and every group's, to the collections their patterns match, nothing else."""
    everything = {(c, r) for c in COLLECTIONS for r in RIGHTS}
    assert rights_of(member("田中")) == {("人事規程", "read")}
    hr = {(c, r) for c in ("人事規程", "人事評価") for r in ("read", "download", "write")}
    assert rights_of(member("佐藤", "人事部")) == hr
    assert rights_of(member("田中", "人事部")) == hr  # the user's grants and the group's together
    assert rights_of(member("山田", "Domain Users")) == {("技術文書", "read")}
    assert rights_of(member("山田", "営業部", "Domain Users", "人事部")) == hr | {("技術文書", "read")}
    assert rights_of(member("suzuki")) == {(c, r) for c, r in everything if r in ("admin", "read")}
    # a name the policy does not know, a group's name as a user's and a user's as a group's: nothing
    assert rights_of(member("山田")) == set()
    assert rights_of(member("人事部")) == set()
    assert rights_of(member("山田", "田中")) == set()
    # a signed-in person with no policy file has no rights; the CLI (no grants at all) has every one
    assert rights_of(member("田中", "人事部", policy=load_policy(None))) == set()
    assert rights_of(Caller("cli")) == everything


@pytest.mark.parametrize(
    ("written", "signed_in"),
    [
        ("user:Tanaka", "tanaka"),
        ("user:tanaka", "TANAKA"),
        ("user:ｔａｎａｋａ", "Tanaka"),
        ("user:TANAKA", "ｔａｎａｋａ"),
        ("user:Straße", "STRASSE"),
        ("user:ﾀﾅｶ", "タナカ"),
        ("user:タナカ", "ﾀﾅｶ"),
        ("group:ｼﾞﾝｼﾞ", "ジンジ"),
        ("group:Domain-Users", "domain-users"),
    ],
)
def test_a_principals_name_is_compared_after_nfkc_and_case_folding(written: str, signed_in: str) -> None:
    policy = parse_policy(f"{written} 人事* read\n")
    kind = written.partition(":")[0]
    caller = member(signed_in, policy=policy) if kind == "user" else member("誰か", signed_in, policy=policy)
    assert caller.may("人事規程", "read")
    assert not caller.may("技術文書", "read")
    assert principal_name(written.partition(":")[2]) == principal_name(signed_in)


def test_the_file_is_reread_when_it_changes_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "権限.txt"
    path.write_text("user:田中 人事* read\n", encoding="utf-8")
    now = [100.0]
    policy = PolicyFile(path, clock=lambda: now[0])
    tanaka = member("田中", policy=policy)
    assert tanaka.may("人事規程", "read")
    assert not tanaka.may("人事規程", "write")

    path.write_text("user:田中 人事* read,write\n", encoding="utf-8")
    now[0] += 0.5
    assert not tanaka.may("人事規程", "write")  # looked at less than a second ago
    now[0] += 0.6
    assert tanaka.may("人事規程", "write")  # the same caller: the policy is asked at each check

    # the same size, a new time: still seen
    path.write_text("user:田中 技術* read,write\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    now[0] += 1.1
    assert tanaka.may("技術文書", "write")
    assert not tanaka.may("人事規程", "read")


def test_a_broken_file_keeps_the_last_good_policy_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "権限.txt"
    path.write_text("group:人事部 人事* read\n", encoding="utf-8")
    now = [0.0]
    policy = PolicyFile(path, clock=lambda: now[0])
    sato = member("佐藤", "人事部", policy=policy)

    def checks(times: int) -> list[bool]:
        seen = []
        for _ in range(times):
            now[0] += 1.5
            seen.append(sato.may("人事規程", "read") and not sato.may("技術文書", "read"))
        return seen

    caplog.set_level(logging.INFO, logger="pipelines.service.policy")
    path.write_text("group:人事部 人事* read\ngroup:人事部 * 全部\n", encoding="utf-8")  # invalid: opens nothing
    assert checks(3) == [True] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 行目を読めません" in warnings[0]
    assert "前回読めた権限のまま" in warnings[0]

    path.unlink()  # gone: still the last good policy, said once more
    assert checks(3) == [True] * 3
    path.write_bytes(b"group:\xff * read\n")  # not UTF-8
    assert checks(2) == [True] * 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("読めません" in w and "前回読めた権限のまま" in w for w in warnings[1:])

    path.write_text("group:人事部 * read\n", encoding="utf-8")  # mended: read again
    now[0] += 1.5
    assert sato.may("技術文書", "read")
    assert any("読み直しました" in r.getMessage() for r in caplog.records)


def test_a_file_that_cannot_be_read_at_the_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"RAG_POLICY_FILE「.*」を読めません"):
        PolicyFile(tmp_path / "ない.txt")
    bad = tmp_path / "権限.txt"
    bad.write_text("user:田中 人事* read\n\nuser:田中 人事* 読み\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="の 3 行目を読めません"):
        load_policy(bad)
