"""Keys of the HTTP API: the keys file read line by line, keys a header cannot carry, and each key's rights."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import AuthenticationError, SettingsError
from pipelines.service.keys import Keys, parse_keys
from pipelines.service.policy import RIGHTS, Grant

ADMIN = "admin-key-0123456789"
READER = "reader-key-0123456789"
HR = "hr-writer-key-0123456"
SEARCHER = "searcher-key-0123456"
DOWNLOADER = "downloader-key-01234"
CREATOR = "creator-key-012345678"
COLLECTIONS = ("技術文書", "人事規程", "default")


def test_keys_file_lines() -> None:
    """``read`` and ``write`` alone mean what they always meant; a comma list grants each of its words only."""
    text = (
        f"# comment\n\n{READER} * read\r\n{HR}\t人事*   write  # HR only\n"
        f"{DOWNLOADER} 技術* read,download\n{CREATOR} * admin\n{SEARCHER} ｄｅｆａｕｌｔ download\n"
    )
    assert parse_keys(text) == [
        Grant(READER, "*", frozenset({"read", "download"})),
        Grant(HR, "人事*", frozenset(RIGHTS)),
        Grant(DOWNLOADER, "技術*", frozenset({"read", "download"})),
        Grant(CREATOR, "*", frozenset({"admin"})),
        Grant(SEARCHER, "default", frozenset({"download"})),
    ]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"{READER} *", "1 行目を読めません"),
        (f"{READER} * 読み取り", "1 行目を読めません"),
        (f"{READER} * read,", "1 行目を読めません"),
        (f"{READER} * Write", "1 行目を読めません"),
        (f"{READER} * read extra", "1 行目を読めません"),
        (f"{READER} * read, download", "1 行目を読めません"),
        ("short * read", "短すぎます"),
        (f"# ok\n{READER} * read\n鍵-0123456789abcdef * read", "3 行目のキーに HTTP ヘッダーで送れない文字"),
        ("ｋｅｙ０１２３４５６７８９ａｂｃｄｅｆ * read", "1 行目のキーに HTTP ヘッダーで送れない"),
        ("key\x010123456789abcdef * read", "1 行目のキーに HTTP ヘッダーで送れない"),
    ],
)
def test_bad_keys_file_lines_are_refused_with_their_number(line: str, why: str) -> None:
    with pytest.raises(SettingsError, match=why):
        parse_keys(line)


def test_the_matrix(tmp_path: Path) -> None:
    """Each key's caller, against each collection and right (the service asks ``Caller.may``)."""
    path = tmp_path / "keys"
    path.write_text(
        f"{READER} * read\n{HR} 人事* write\n{SEARCHER} 技術* read,write\n{SEARCHER} default read\n"
        f"{DOWNLOADER} 技術* read,download\n{CREATOR} * admin\n",
        encoding="utf-8",
    )
    keys = Keys.from_settings(ADMIN, path)
    for header in (None, "", "Bearer", "Basic " + ADMIN, "Bearer wrong-key-0123456789"):
        with pytest.raises(AuthenticationError):
            keys.caller(header)
    admin, reader, hr = (keys.caller(f"Bearer {ADMIN}"), keys.caller(f"bearer {READER}"), keys.caller(f"Bearer {HR}"))
    allowed = {
        (who, collection, right)
        for who, caller in (("admin", admin), ("reader", reader), ("hr", hr))
        for collection in ("技術文書", "人事規程", "default")
        for right in ("read", "download", "write", "admin")
        if caller.may(collection, right)
    }
    everything = {(c, r) for c in ("技術文書", "人事規程", "default") for r in ("read", "download", "write", "admin")}
    assert {(c, r) for who, c, r in allowed if who == "admin"} == everything
    assert {(c, r) for who, c, r in allowed if who == "reader"} == {
        (c, r) for c, r in everything if r in ("read", "download")
    }
    assert {(c, r) for who, c, r in allowed if who == "hr"} == {(c, r) for c, r in everything if c == "人事規程"}
    rights = {
        header: {(c, r) for c in COLLECTIONS for r in RIGHTS if keys.caller(f"Bearer {header}").may(c, r)}
        for header in (SEARCHER, DOWNLOADER, CREATOR)
    }
    # a key on several lines has every line's grants
    assert rights[SEARCHER] == {
        ("技術文書", "read"),
        ("技術文書", "write"),
        ("default", "read"),
        ("default", "download"),
    }
    assert rights[DOWNLOADER] == {("技術文書", "read"), ("技術文書", "download")}
    assert rights[CREATOR] == {(c, "admin") for c in COLLECTIONS}
    # the log and the audit name a key by a digest, never by the key
    assert hr.name.startswith("key:")
    assert HR not in hr.name
    assert hr.name != reader.name


def test_without_keys_everything_is_allowed_and_a_short_key_is_refused(tmp_path: Path) -> None:
    keys = Keys.from_settings("", None)
    assert not keys.configured
    assert keys.caller(None).may("default", "admin")
    with pytest.raises(SettingsError, match="16 文字以上"):
        Keys.from_settings("short", None)
    with pytest.raises(SettingsError, match="読めません"):
        Keys.from_settings("", tmp_path / "missing")


@pytest.mark.parametrize(
    "key", ["管理者の鍵-0123456789", "admin key 0123456789", "admin-key-0123456789\n", "ａｄｍｉｎ-key-0123456789"]
)
def test_a_key_a_header_cannot_carry_is_refused_at_the_start(key: str) -> None:
    """Not accepted and never matched: the server does not start with it."""
    with pytest.raises(SettingsError, match="RAG_API_KEY に HTTP ヘッダーで送れない文字"):
        Keys.from_settings(key, None)
