"""The service layer: every operation checked against its caller's rights in one place, whatever spelling reached it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.errors import DocumentNotFoundError, NoChatModelError, PermissionDeniedError
from pipelines.model.embedder import Embedder
from pipelines.service import words
from pipelines.service.keys import LEGACY
from pipelines.service.library import Library
from pipelines.service.policy import Grant, parse_policy
from pipelines.service.querylog import FILE_NAME, QueryLog
from pipelines.service.results import Caller, Question
from pipelines.service.service import Service
from pipelines.settings import Settings

FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。"
ADMIN = Caller("cli")
HR_READER = Caller("api", "key:hr", "127.0.0.1", (Grant("k" * 16, "人事*", LEGACY["read"]),))
HR_WRITER = Caller("api", "key:hw", "127.0.0.1", (Grant("w" * 16, "人事*", LEGACY["write"]),))
# signed-in people: their rights are the policy's for their user name and groups
POLICY = parse_policy("user:田中 人事* read\ngroup:人事部 人事* read,download,write\ngroup:管理 * admin\n")
TANAKA = Caller("page", "user:田中", "192.0.2.7", POLICY, "田中", ("営業部",))
HR_MEMBER = Caller("page", "user:佐藤", "192.0.2.8", POLICY, "佐藤", ("人事部",))
MANAGER = Caller("page", "user:鈴木", "192.0.2.9", POLICY, "鈴木", ("管理",))


@pytest.fixture
def service(tmp_path: Path, model_dir: Path, embedder: Embedder) -> Service:
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", embedding_model=str(model_dir), chunk_tokens=48, chunk_overlap=8
    )
    made = Service(Library(settings, embedder=embedder))
    made.create_collection(ADMIN, "人事規程")
    made.upload(ADMIN, "人事規程", [("規程.txt", LEAVE.encode("utf-8"))])
    made.upload(ADMIN, "default", [("富士山.txt", FUJI.encode("utf-8"))])
    return made


def test_the_rights_matrix(service: Service) -> None:
    """Each caller × operation × collection: allowed, or refused before anything is read or written."""
    operations = {
        "search": lambda who, c: service.search(who, c, Question("有給休暇はいつから")),
        "documents": lambda who, c: service.documents(who, c),
        "download": lambda who, c: service.original(who, c, "規程.txt" if c.startswith("人事") else "富士山.txt"),
        "upload": lambda who, c: service.upload(who, c, [("追加.txt", "追加の文書です。".encode())]),
        "delete": lambda who, c: service.delete_document(who, c, "追加.txt"),
    }
    allowed = set()
    callers = {
        "admin": ADMIN,
        "reader": HR_READER,
        "writer": HR_WRITER,
        "tanaka": TANAKA,
        "member": HR_MEMBER,
        "manager": MANAGER,
    }
    for name, who in callers.items():
        for collection in ("人事規程", "default"):
            for operation, run in operations.items():
                refused = ""
                try:
                    run(who, collection)
                except PermissionDeniedError as error:
                    refused = str(error)
                if refused:
                    assert f"コレクション「{collection}」" in refused
                else:
                    allowed.add((name, collection, operation))
    everything = {(c, o) for c in ("人事規程", "default") for o in operations}
    assert {(c, o) for n, c, o in allowed if n == "admin"} == everything
    assert {(c, o) for n, c, o in allowed if n == "reader"} == {
        ("人事規程", "search"),
        ("人事規程", "documents"),
        ("人事規程", "download"),
    }
    assert {(c, o) for n, c, o in allowed if n == "writer"} == {(c, o) for c, o in everything if c == "人事規程"}
    assert {(c, o) for n, c, o in allowed if n == "tanaka"} == {("人事規程", "search"), ("人事規程", "documents")}
    assert {(c, o) for n, c, o in allowed if n == "member"} == {(c, o) for c, o in everything if c == "人事規程"}
    assert {(c, o) for n, c, o in allowed if n == "manager"} == set()  # admin alone reads nothing
    # collections are created and deleted by an admin only; a caller lists only what it may read
    for unable in (HR_READER, TANAKA, HR_MEMBER):
        with pytest.raises(PermissionDeniedError, match="「人事部」の管理の権限がありません"):
            service.create_collection(unable, "人事部")
    assert service.create_collection(MANAGER, "人事部").name == "人事部"
    assert service.delete_collection(MANAGER, "人事部").name == "人事部"
    assert service.collections(MANAGER) == []
    assert [info.name for info in service.collections(HR_READER)] == ["人事規程"]
    assert [info.name for info in service.collections(HR_MEMBER)] == ["人事規程"]
    assert service.collection_names(ADMIN) == ["default", "人事規程"]


@pytest.mark.parametrize(
    "spelling",
    ["documents", " default ", "ｄｅｆａｕｌｔ", "ｄｏｃｕｍｅｎｔｓ", "default\u3000"],
)
def test_another_spelling_of_a_collection_is_checked_under_the_name_it_resolves_to(
    service: Service, spelling: str
) -> None:
    """``documents`` (the default's Chroma name), full-width letters and spaces all reach ``default``, and are refused as it is."""
    sneaky = Caller("api", "key:doc", "", (Grant("d" * 16, "doc*", LEGACY["write"]),))
    with pytest.raises(PermissionDeniedError, match="「default」"):
        service.search(sneaky, spelling, Question("富士山"))
    found = service.search(ADMIN, spelling, Question("富士山"))
    assert found.collection == "default"
    assert found.hits[0].chunk.source == "富士山.txt"
    # one set of parts (one writer) for every spelling
    assert service.library.pipelines(spelling) is service.library.pipelines("default")


def test_a_search_is_logged_once_with_its_face_and_caller_and_a_refusal_not_at_all(service: Service) -> None:
    service.search(HR_READER, "人事規程", Question("有給休暇はいつから", k=2))
    with pytest.raises(PermissionDeniedError):
        service.search(HR_READER, "default", Question("富士山"))
    logged = QueryLog(service.settings.data_dir / FILE_NAME).export()
    assert [(q["face"], q["collection"], q["k"], q["question"]) for q in logged] == [
        ("api", "人事規程", 2, "有給休暇はいつから")
    ]


def test_ask_without_a_chat_model_is_refused_before_anything_happens(service: Service) -> None:
    with pytest.raises(NoChatModelError) as refused:
        service.ask(ADMIN, "default", Question(FUJI))
    assert str(refused.value) == words.NO_CHAT_MODEL
    assert QueryLog(service.settings.data_dir / FILE_NAME).export() == []


def test_a_passage_and_its_original_through_the_service(service: Service) -> None:
    shown = service.passage(ADMIN, "default", "富士山.txt", 0, None)
    assert shown.view is not None
    assert FUJI in shown.chunk.text
    assert service.original(ADMIN, "default", "富士山.txt").data == FUJI.encode("utf-8")
    with pytest.raises(DocumentNotFoundError, match=re.escape("「無い.txt」は登録されていません")):
        service.passage(ADMIN, "default", "無い.txt", 0, None)
    with pytest.raises(DocumentNotFoundError, match=re.escape(words.CHUNK_MISSING)):
        service.passage(ADMIN, "default", "富士山.txt", 9, None)
    # a reader of 人事規程 cannot see default's passage, nor learn whether it exists
    with pytest.raises(PermissionDeniedError):
        service.passage(HR_READER, "default", "富士山.txt", 0, None)
    with pytest.raises(PermissionDeniedError):
        service.passage(HR_READER, "default", "無い.txt", 0, None)


@pytest.mark.parametrize(
    ("iso", "shown"),
    [
        ("2026-12-07T14:32:00+00:00", "2026-12-07 23:32"),  # UTC as Tokyo reads it
        ("2026-12-31T15:00:00+00:00", "2027-01-01 00:00"),
        ("壊れた時刻", "壊れた時刻"),
    ],
)
def test_times_are_shown_in_the_machines_local_time(iso: str, shown: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert words.local_time(iso) == shown
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ({"type": "missing", "loc": ("body", "question"), "msg": "Field required"}, ("question", "必須です")),
        ({"type": "greater_than_equal", "loc": ("body", "k"), "ctx": {"ge": 1}}, ("k", "1 以上にしてください")),
        (
            {"type": "literal_error", "loc": ("body", "mode"), "ctx": {"expected": "'hybrid', 'dense' or 'keyword'"}},
            ("mode", "hybrid・dense・keyword のどれかにしてください"),
        ),
        ({"type": "extra_forbidden", "loc": ("body", "qestion")}, ("qestion", "この項目は使えません")),
        (
            {"type": "value_error", "loc": ("body", "question"), "msg": "Value error, 質問が空白だけです"},
            ("question", "質問が空白だけです"),
        ),
        ({"type": "json_invalid", "loc": ("body", 12)}, ("12", "JSON として読めません")),
        ({"type": "something_new", "loc": ("body",)}, ("本文", "値が正しくありません")),
    ],
)
def test_the_apis_validation_errors_in_japanese(error: dict[str, object], said: tuple[str, str]) -> None:
    assert words.validation_problem(error) == said


def test_a_place_in_a_list_reads_the_same_everywhere() -> None:
    assert words.place(3) == "3 位"
    assert words.place(None) == "候補外"


def test_rights_are_what_the_checks_allow(service: Service) -> None:
    """``rights`` lets a face offer only what the service will do, for any spelling of the name."""
    assert service.rights(ADMIN, "default") == {"read", "download", "write", "admin"}
    assert service.rights(HR_MEMBER, " 人事規程 ") == {"read", "download", "write"}
    assert service.rights(TANAKA, "人事規程") == {"read"}
    assert service.rights(TANAKA, "default") == set()
    assert service.rights(MANAGER, "default") == {"admin"}


def test_a_changed_policy_file_is_read_again_and_audited(service: Service, tmp_path: Path) -> None:
    """The service's policy follows its file; each reading (or refusal of a broken file) is an audit row."""
    import dataclasses
    import os
    import time

    policy = tmp_path / "policy.txt"
    policy.write_text("group:jinji 人事* read\n", encoding="utf-8")
    settings = dataclasses.replace(service.settings, policy_file=policy)
    watched = Service(Library(settings, embedder=service.embedder))
    person = Caller("page", "tanaka", "", watched.policy, user="tanaka", groups=("jinji",))
    assert person.may("人事規程", "read")
    assert not person.may("人事規程", "write")
    policy.write_text("group:jinji 人事* read,write\n", encoding="utf-8")
    os.utime(policy, (1, 1))  # another stamp, whatever the clock's resolution
    time.sleep(1.1)  # the file is looked at once a second at most
    assert person.may("人事規程", "write")
    rows = [e for e in watched.audit(ADMIN) if e.action == "policy_reloaded"]
    assert len(rows) == 1
    assert "読み直しました" in rows[0].detail
