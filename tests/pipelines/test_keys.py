"""Keys of the HTTP API: the keys file read line by line, and who may read or write which collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import AuthenticationError, SettingsError
from pipelines.service.keys import Grant, Keys, parse_keys

ADMIN = "admin-key-0123456789"
READER = "reader-key-0123456789"
HR = "hr-writer-key-0123456"


def test_keys_file_lines() -> None:
    text = f"# comment\n\n{READER} * read\r\n{HR}\t人事*   write  # HR only\n"
    assert parse_keys(text) == [Grant(READER, "*", "read"), Grant(HR, "人事*", "write")]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"{READER} *", "1 行目を読めません"),
        (f"{READER} * admin", "1 行目を読めません"),
        (f"{READER} * read extra", "1 行目を読めません"),
        ("short * read", "短すぎます"),
    ],
)
def test_bad_keys_file_lines_are_refused_with_their_number(line: str, why: str) -> None:
    with pytest.raises(SettingsError, match=why):
        parse_keys(line)


def test_the_matrix(tmp_path: Path) -> None:
    """Each key's caller, against each collection and right (the service asks ``Caller.may``)."""
    path = tmp_path / "keys"
    path.write_text(f"{READER} * read\n{HR} 人事* write\n", encoding="utf-8")
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
