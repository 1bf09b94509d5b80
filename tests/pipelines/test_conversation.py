"""Conversations: follow-ups rewritten by LangChain's fake chat models, the history window, history files, Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from pipelines.answers.answer import Citation
from pipelines.answers.conversation import (
    Conversation,
    Rewriter,
    Turn,
    clean_question,
    conversation_markdown,
    history_window,
    load_history,
    save_history,
)
from pipelines.errors import HistoryError
from pipelines.service.compose import build
from pipelines.settings import Settings

LEAVE = Turn(
    "有給休暇は何日？",
    "有給休暇は何日？",
    "入社して六か月後に十日付与されます[1]。",
    (Citation(1, "就業規則.pdf", 3, 1, 7, "3 ページ"),),
)
FOLLOW_UP = "それは入社何か月後から？"
STANDALONE = "有給休暇は入社何か月後から取れますか？"


def test_no_earlier_turn_means_no_model_call() -> None:
    model = FakeListChatModel(responses=["呼ばれてはいけない", "二度目"])
    rewriter = Rewriter(model)
    assert rewriter.standalone("有給休暇は何日？", []) == "有給休暇は何日？"
    assert model.i == 0  # the fake counts its calls


def test_a_follow_up_is_rewritten_from_the_earlier_turn() -> None:
    model = FakeListChatModel(
        responses=[f"書き換えた質問: 「{STANDALONE}」\n（「それ」を有給休暇に置き換えました）", "二度目"]
    )
    rewriter = Rewriter(model)
    assert rewriter.standalone(FOLLOW_UP, [LEAVE]) == STANDALONE
    assert model.i == 1
    system, question, answer, human = rewriter.messages(FOLLOW_UP, [LEAVE])
    assert "単独の日本語の質問に書き換えてください" in system.content
    assert "そのまま返す" in system.content
    assert (question.type, question.content) == ("human", "有給休暇は何日？")
    assert (answer.type, answer.content) == ("ai", "入社して六か月後に十日付与されます[1]。")
    assert human.content == f"新しい質問: {FOLLOW_UP}\n\n書き換えた質問:"


def test_an_empty_rewrite_falls_back_to_the_question_typed() -> None:
    assert Rewriter(FakeListChatModel(responses=["\n  \n"])).standalone(FOLLOW_UP, [LEAVE]) == FOLLOW_UP


@pytest.mark.parametrize(
    ("text", "question"),
    [
        (STANDALONE, STANDALONE),
        (f"  {STANDALONE}  \n", STANDALONE),
        (f"「{STANDALONE}」", STANDALONE),
        (f"『{STANDALONE}』", STANDALONE),
        (f'"{STANDALONE}"', STANDALONE),
        (f"書き換えた質問：{STANDALONE}", STANDALONE),
        (f"質問: {STANDALONE}\r\n説明は要りません", STANDALONE),
        (f"\n\n{STANDALONE}\n補足", STANDALONE),
        ("「有給」と「代休」の違いは？", "「有給」と「代休」の違いは？"),  # quotes inside stay
        ("", ""),
    ],
)
def test_the_rewritten_line_is_cleaned(text: str, question: str) -> None:
    assert clean_question(text) == question


def turn(n: int, size: int) -> Turn:
    return Turn(f"質問{n}", f"質問{n}", "あ" * size)


TURNS = [turn(1, 10), turn(2, 20), turn(3, 30)]  # each costs len("質問n") = 3 plus its answer


@pytest.mark.parametrize(
    ("budget", "kept"),
    [
        (1000, ["質問1", "質問2", "質問3"]),
        (33 + 23 + 13, ["質問1", "質問2", "質問3"]),  # exactly full
        (33 + 23 + 12, ["質問2", "質問3"]),
        (33 + 22, ["質問3"]),
        (33, ["質問3"]),
    ],
)
def test_the_history_window_keeps_the_latest_turns_within_the_budget(budget: int, kept: list[str]) -> None:
    window = history_window(TURNS, budget)
    assert [t.question for t in window] == kept
    assert sum(len(t.question) + len(t.answer) for t in window) <= budget


def test_the_last_turn_is_given_even_over_budget_its_answer_cut() -> None:
    (last,) = history_window(TURNS, 13)
    assert (last.question, last.answer) == ("質問3", "あ" * 10)
    (last,) = history_window(TURNS, 2)  # not even its question fits: the question whole, no answer
    assert (last.question, last.answer) == ("質問3", "")
    assert history_window([], 100) == []
    rewriter = Rewriter(FakeListChatModel(responses=["x"]), history_tokens=33 + 23)
    messages = rewriter.messages("次は？", TURNS)
    assert [m.content for m in messages[1:-1]] == ["質問2", "あ" * 20, "質問3", "あ" * 30]


def test_history_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "会話" / "履歴.json"
    assert load_history(path).turns == []  # a new conversation
    second = Turn(FOLLOW_UP, STANDALONE, "六か月後からです[1]。", LEAVE.citations, query_id=4, passages=2)
    save_history(path, Conversation("c-1", [LEAVE, second], "2026-11-27 09:00"))
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["version"], data["conversation"], data["started"]) == (1, "c-1", "2026-11-27 09:00")
    assert data["turns"][1] == {
        "question": FOLLOW_UP,
        "standalone_question": STANDALONE,
        "answer": "六か月後からです[1]。",
        "citations": [
            {"n": 1, "source": "就業規則.pdf", "page": 3, "location": "3 ページ", "rank": 1, "chunk_index": 7}
        ],
    }
    assert load_history(path) == Conversation(
        "c-1", [LEAVE, Turn(FOLLOW_UP, STANDALONE, "六か月後からです[1]。", LEAVE.citations)], "2026-11-27 09:00"
    )
    assert [p.name for p in path.parent.iterdir()] == ["履歴.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "形式が違います"),
        ('{"turns": [{"answer": "質問がない"}]}', "形式が違います"),
        ('{"version": 9, "turns": []}', "新しい版の形式"),
    ],
)
def test_a_bad_history_file_is_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "履歴.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(HistoryError, match=message):
        load_history(path)


def test_a_list_of_turns_written_by_hand_is_read(tmp_path: Path) -> None:
    path = tmp_path / "履歴.json"
    path.write_text('\ufeff[{"question": "有給休暇は何日？", "answer": "十日です。"}]', encoding="utf-8")
    conversation = load_history(path)
    assert conversation.turns == [Turn("有給休暇は何日？", "有給休暇は何日？", "十日です。")]
    assert conversation.id  # a new id for the log


def test_markdown_holds_every_turn_with_its_sources() -> None:
    second = Turn(FOLLOW_UP, STANDALONE, "六か月後からです[1]。", LEAVE.citations)
    failed = Turn("三つ目", "三つ目", error="サーバーがエラーを返しました")
    text = conversation_markdown([LEAVE, second, failed])
    assert "## 質問 3\n\n三つ目\n\n### 回答\n\n（回答なし：サーバーがエラーを返しました）" in text
    assert text.index("## 質問 1\n\n有給休暇は何日？") < text.index(f"## 質問 2\n\n{FOLLOW_UP}")
    assert f"検索した質問: {STANDALONE}" in text
    assert text.count("検索した質問") == 1  # the first question was searched as typed
    assert text.count("- [1] 就業規則.pdf ・ 3 ページ（チャンク 7）") == 2


def test_the_rewriter_shares_the_answerers_model_and_is_off_without_one() -> None:
    assert build(Settings()).rewriter is None
    parts = build(Settings(llm_url="http://127.0.0.1:9/v1", llm_model="m", llm_history_tokens=500))
    assert parts.rewriter is not None
    assert parts.answerer is not None
    assert parts.rewriter.model is parts.answerer.model
    assert parts.rewriter.history_tokens == 500


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RAG_LLM_HISTORY_TOKENS": "10"}, "RAG_LLM_HISTORY_TOKENS は 100 以上"),
        ({"RAG_QUERY_LOG": "たぶん"}, "RAG_QUERY_LOG は on か off"),
    ],
)
def test_bad_conversation_settings_are_explained(environ: dict[str, str], message: str) -> None:
    from pipelines.errors import SettingsError

    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)
