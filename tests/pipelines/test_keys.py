"""Keys of the HTTP API: the keys file read line by line, and who may read or write which collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import AuthenticationError, PermissionDeniedError, SettingsError
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
    path = tmp_path / "keys"
    path.write_text(f"{READER} * read\n{HR} 人事* write\n", encoding="utf-8")
    keys = Keys.from_settings(ADMIN, path)
    for header in (None, "", "Bearer", "Basic " + ADMIN, "Bearer wrong-key-0123456789"):
        with pytest.raises(AuthenticationError):
            keys.check(header, "人事規程", "read")
    keys.check(f"Bearer {ADMIN}", "技術文書", "write")
    keys.check(f"bearer {READER}", "技術文書", "read")
    keys.check(f"Bearer {HR}", "人事規程", "write")
    keys.check(f"Bearer {HR}", "人事規程", "read")  # write includes read
    with pytest.raises(PermissionDeniedError, match="書き込み"):
        keys.check(f"Bearer {READER}", "技術文書", "write")
    with pytest.raises(PermissionDeniedError, match="読み取り"):
        keys.check(f"Bearer {HR}", "技術文書", "read")
    assert keys.readable(f"Bearer {HR}", "人事規程")
    assert not keys.readable(f"Bearer {HR}", "default")


def test_without_keys_everything_is_allowed_and_a_short_key_is_refused(tmp_path: Path) -> None:
    keys = Keys.from_settings("", None)
    assert not keys.configured
    keys.check(None, "default", "write")
    with pytest.raises(SettingsError, match="16 文字以上"):
        Keys.from_settings("short", None)
    with pytest.raises(SettingsError, match="読めません"):
        Keys.from_settings("", tmp_path / "missing")
