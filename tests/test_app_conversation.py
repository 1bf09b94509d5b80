"""The page as a conversation (a chat model configured), driven with AppTest against the scripted chat server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest, app_test

from pipelines.service.querylog import FILE_NAME, QueryLog
from testkit.page import APP, texts, use_model, wait_for_model
from testkit.servers import ChatServer, Reply

RULES = "第1条（年次有給休暇）\n入社して六か月が経過した社員には、十日の年次有給休暇を付与する。"
TRIP = "出張の日当は一日三千円とする。"
FIRST = "有給休暇は何日？"
FOLLOW_UP = "それは入社何か月後から？"
STANDALONE = "年次有給休暇は入社何か月後から付与されますか？"


@pytest.fixture
def chat(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, chat_server: ChatServer, tmp_path: Path
) -> Iterator[AppTest]:
    """The page with the chat model configured and two documents ingested."""
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    use_model(monkeypatch, chat_server)
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", KeptMedia)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    wait_for_model(at)
    at.file_uploader[0].set_value(
        [("就業規則.txt", RULES.encode(), "text/plain"), ("出張.txt", TRIP.encode(), "text/plain")]
    )
    at.run()
    at.button[0].click().run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def ask(at: AppTest, question: str) -> None:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception


class KeptMedia(MemoryMediaFileStorage):
    """AppTest's in-memory media files (downloads among them), kept where a test can read them after a run."""

    latest: MemoryMediaFileStorage | None = None

    def __init__(self, media_endpoint: str) -> None:
        super().__init__(media_endpoint)
        KeptMedia.latest = self


def downloaded(at: AppTest, label: str) -> str:
    """What a download button hands the browser, from the media files of the latest run."""
    button = next(b for b in at.get("download_button") if b.proto.label == label)
    assert KeptMedia.latest is not None
    name = button.proto.url.rsplit("/", 1)[-1]
    return bytes(KeptMedia.latest.get_file(name).content).decode("utf-8")


def test_a_conversation_of_two_turns(chat: AppTest, chat_server: ChatServer) -> None:
    chat_server.replies = [Reply("入社して六か月後に十日付与されます[1]。")]
    ask(chat, FIRST)
    assert len(chat_server.requests) == 1  # no earlier turn: searched as typed, no rewriting request
    chat_server.replies = [Reply(f"書き換えた質問: {STANDALONE}"), Reply("六か月が経過してからです[1]。")]
    ask(chat, FOLLOW_UP)
    assert len(chat_server.requests) == 3

    rewrite, answer = chat_server.requests[1:]
    assert [m["content"] for m in rewrite["body"]["messages"][1:3]] == [
        FIRST,
        "入社して六か月後に十日付与されます[1]。",
    ]
    assert answer["body"]["messages"][1]["content"].endswith(f"質問: {STANDALONE}")

    # both turns, in order: each question, then its answer, sources and cards
    messages = chat.get("chat_message")
    assert [m.proto.name for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0].markdown[0].value == FIRST
    assert messages[2].markdown[0].value == FOLLOW_UP
    first, second = messages[1], messages[3]
    assert "入社して六か月後に十日付与されます\\[1\\]。" in [m.value for m in first.markdown]
    assert not any(c.value.startswith("検索した質問") for c in first.caption)
    assert f"検索した質問: {STANDALONE}" in [c.value for c in second.caption]
    assert "六か月が経過してからです\\[1\\]。" in [m.value for m in second.markdown]
    assert any(c.value.startswith("\\[1\\] 1 位の箇所: ") for c in second.caption)
    assert any("位** 類似度" in m.value for m in first.markdown)  # the cards of the first turn stay
    assert any("位** 類似度" in m.value for m in second.markdown)
    assert "回答の生成は設定されていません" not in texts(chat)

    saved = downloaded(chat, "会話を保存")
    assert saved.index(f"## 質問 1\n\n{FIRST}") < saved.index(f"## 質問 2\n\n{FOLLOW_UP}")
    assert f"検索した質問: {STANDALONE}" in saved
    assert "六か月が経過してからです[1]。" in saved
    cited = [line for line in saved.splitlines() if line.startswith("- [1] ")]
    assert len(cited) == 2  # each answer's source: file and place
    assert all(".txt" in line and "チャンク" in line for line in cited)

    chat.run()  # another action: the conversation stays, the model is not asked again
    assert len(chat_server.requests) == 3
    assert len(chat.get("chat_message")) == 4

    next(b for b in chat.button if b.label == "新しい会話").click().run()
    assert not chat.get("chat_message")
    assert next(b for b in chat.get("download_button") if b.proto.label == "会話を保存").proto.disabled
    chat_server.replies = [Reply("十日です[1]。")]
    ask(chat, FOLLOW_UP)  # a new conversation: nothing earlier to rewrite from
    assert len(chat_server.requests) == 4
    assert not any(c.value.startswith("検索した質問") for c in chat.caption)


def test_feedback_on_the_answer_and_a_card_is_logged(chat: AppTest, chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.replies = [Reply("十日です[1]。")]
    ask(chat, FIRST)
    ratings = chat.feedback
    assert len(ratings) == 1 + 2  # the answer and each card
    ratings[0].set_value(1).run()  # 👍 the answer
    chat.feedback[2].set_value(0).run()  # 👎 the second card
    chat.feedback[1].set_value(1).run()  # 👍 the first card
    comment = next(t for t in chat.text_input if t.label == "コメント（任意）" and "hit-1-" in (t.key or ""))
    comment.input("第1条に書いてある").run()
    assert not chat.exception

    log = QueryLog(tmp_path / "data" / FILE_NAME)
    (query,) = log.export()
    assert (query["question"], query["standalone_question"], query["face"]) == (FIRST, FIRST, "page")
    assert query["answer"] == "十日です[1]。"
    judged = {(f["target"], f["rank"]): (f["rating"], f["comment"]) for f in query["feedback"]}
    assert judged == {("answer", 0): (1, ""), ("hit", 1): (1, "第1条に書いてある"), ("hit", 2): (-1, "")}
    (item,) = log.judged_questions()
    assert item.chunk_ids == (query["hits"][0]["chunk_id"],)
    assert json.dumps(query, ensure_ascii=False)  # exportable as it is


def test_a_failed_answer_can_be_asked_again(chat: AppTest, chat_server: ChatServer) -> None:
    chat_server.replies = [Reply(status=500), Reply(status=500), Reply("出張の日当は三千円です[1]。")]
    ask(chat, "出張の日当は？")
    (error,) = chat.error
    assert error.value.startswith("回答を作れませんでした。回答用の言語モデル（テスト用モデル、")
    assert "HTTP 500" in error.value
    assert any("位** 類似度" in m.value for m in chat.markdown)  # the cards regardless
    next(b for b in chat.button if b.label == "もう一度回答を作る").click().run()
    assert not chat.exception
    assert not chat.error
    assert len(chat.get("chat_message")) == 2  # the failed turn replaced, not repeated
    assert "出張の日当は三千円です\\[1\\]。" in texts(chat)


def test_with_the_log_off_there_is_no_feedback_and_no_file(
    chat: AppTest, chat_server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_QUERY_LOG", "off")
    chat.run()
    wait_for_model(chat)
    chat_server.replies = [Reply("十日です[1]。")]
    ask(chat, FIRST)
    assert "十日です\\[1\\]。" in texts(chat)
    assert not chat.feedback
    assert not (tmp_path / "data" / FILE_NAME).exists()
