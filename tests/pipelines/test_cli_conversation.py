"""The CLI in a conversation: ``ask --history`` over the scripted chat server, ``log``, ``evaluate qa --from-log``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.service.querylog import FILE_NAME, QueryLog
from testkit.cli import run
from testkit.servers import ChatServer, Reply

pytestmark = pytest.mark.slow  # each test ingests and asks through the CLI, loading the model

RULES = {
    "就業規則.txt": "第1条（年次有給休暇）\n入社して六か月が経過した社員には、十日の年次有給休暇を付与する。",
    "在宅勤務.txt": "在宅勤務は週に二日までとし、前日までに上長に申請する。",
    "出張.txt": "出張の日当は一日三千円とする。",
}
FIRST = "有給休暇は何日？"
FOLLOW_UP = "それは入社何か月後から？"
STANDALONE = "年次有給休暇は入社何か月後から付与されますか？"


@pytest.fixture
def rules(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, chat_server: ChatServer) -> Path:
    """Three small rule files ingested, and the scripted chat server configured as the chat model."""
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    monkeypatch.setenv("RAG_LLM_URL", chat_server.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "テスト用モデル")
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "5")
    folder = tmp_path / "規程"
    folder.mkdir()
    for name, text in RULES.items():
        (folder / name).write_text(text, encoding="utf-8")
    status, _, err = run("ingest", str(folder))
    assert status == 0, err
    return folder


def test_a_follow_up_is_searched_and_answered_as_a_standalone_question(
    rules: Path, chat_server: ChatServer, tmp_path: Path
) -> None:
    history = tmp_path / "会話.json"
    chat_server.replies = [Reply("入社して六か月後に十日付与されます[1]。")]
    status, out, err = run("ask", FIRST, "--history", str(history))
    assert status == 0, err
    assert out.startswith("回答:\n入社して六か月後に十日付与されます[1]。")
    assert "検索した質問" not in out  # nothing earlier: searched as typed, and no rewriting request
    assert len(chat_server.requests) == 1
    turns = json.loads(history.read_text(encoding="utf-8"))["turns"]
    assert [(t["question"], t["standalone_question"]) for t in turns] == [(FIRST, FIRST)]

    chat_server.replies = [Reply(f"「{STANDALONE}」"), Reply("入社して六か月が経過してからです[1]。")]
    status, out, err = run("ask", FOLLOW_UP, "--history", str(history), "--json", "-k", "2")
    assert status == 0, err
    result = json.loads(out)
    assert (result["question"], result["standalone_question"]) == (FOLLOW_UP, STANDALONE)
    assert result["answer"] == "入社して六か月が経過してからです[1]。"
    assert result["citations"][0]["source"] == "就業規則.txt"

    rewrite, answer = chat_server.requests[1:]
    messages = rewrite["body"]["messages"]
    # the request for the follow-up carries the earlier turn, question and answer, then the follow-up
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == FIRST
    assert messages[2]["content"] == "入社して六か月後に十日付与されます[1]。"
    assert messages[3]["content"].startswith(f"新しい質問: {FOLLOW_UP}")
    # the standalone question is the one searched and answered
    assert answer["body"]["messages"][1]["content"].endswith(f"質問: {STANDALONE}")
    _, searched, _ = run("search", STANDALONE, "--json", "-k", "2")
    assert result["hits"] == json.loads(searched)

    data = json.loads(history.read_text(encoding="utf-8"))
    assert [(t["question"], t["standalone_question"]) for t in data["turns"]] == [
        (FIRST, FIRST),
        (FOLLOW_UP, STANDALONE),
    ]
    assert data["turns"][1]["citations"][0]["source"] == "就業規則.txt"
    assert data["conversation"]

    # the human output says what was searched
    chat_server.replies = [Reply("在宅勤務の申請は前日までです"), Reply("前日までです[1]。")]
    status, out, err = run("ask", "申請の期限は？", "--history", str(history))
    assert status == 0, err
    assert out.startswith("検索した質問: 在宅勤務の申請は前日までです\n回答:\n前日までです[1]。")
    assert len(json.loads(history.read_text(encoding="utf-8"))["turns"]) == 3


def test_the_log_holds_every_question_and_liked_cards_become_an_evaluation(
    rules: Path, chat_server: ChatServer, tmp_path: Path
) -> None:
    history = tmp_path / "会話.json"
    chat_server.replies = [Reply("十日です[1]。")]
    run("ask", FIRST, "--history", str(history))
    chat_server.replies = [Reply(STANDALONE), Reply("六か月後からです[1]。")]
    run("ask", FOLLOW_UP, "--history", str(history))
    run("search", "出張の日当")

    status, out, _ = run("log", "--json")
    assert status == 0
    logged = json.loads(out)
    assert [(q["question"], q["standalone_question"], q["face"]) for q in logged] == [
        (FIRST, FIRST, "cli"),
        (FOLLOW_UP, STANDALONE, "cli"),
        ("出張の日当", "出張の日当", "cli"),
    ]
    assert logged[0]["conversation"] == logged[1]["conversation"] != ""
    assert (logged[0]["turn"], logged[1]["turn"]) == (0, 1)
    assert logged[1]["answer"] == "六か月後からです[1]。"
    assert logged[1]["citations"][0]["n"] == 1
    assert logged[2]["answer"] is None
    assert all(h["chunk_id"] for q in logged for h in q["hits"])
    status, out, _ = run("log")
    assert f"（検索: {STANDALONE}）" in out.splitlines()[1]

    status, _, err = run("evaluate", "qa", "--from-log")
    assert status == 2
    assert "👍 の付いたカードがありません" in err

    # a person likes the card with the rule on the follow-up, and the card for the trip's allowance
    log = QueryLog(tmp_path / "data" / FILE_NAME)
    follow_up, trip = logged[1], logged[2]
    rule_rank = next(h["rank"] for h in follow_up["hits"] if h["source"] == "就業規則.txt")
    trip_rank = next(h["rank"] for h in trip["hits"] if h["source"] == "出張.txt")
    log.feedback(follow_up["id"], "hit", 1, "ここに書いてある", rank=rule_rank)
    log.feedback(trip["id"], "hit", 1, rank=trip_rank)
    log.feedback(trip["id"], "answer", -1, "回答がない")
    status, out, err = run("log")
    assert "👍 1 👎 1" in out.splitlines()[2]

    status, out, err = run("evaluate", "qa", "--from-log", "--json", "-k", "1", "3")
    assert status == 0, err
    result = json.loads(out)
    assert result["questions"] == 2
    assert result["documents"] == 3
    ranks = [rule_rank, trip_rank]  # the same search as then: the same ranks
    assert result["topk"] == {"1": 50.0 * sum(r <= 1 for r in ranks), "3": 100.0}
    assert result["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 2)
    assert result["left_out"] == 0
    status, out, _ = run("evaluate", "qa", "--from-log", "-k", "1", "3")
    assert "2 questions" in out

    # a liked card whose document is deleted can no longer be found: its question is left out
    run("delete", "出張.txt")
    status, out, err = run("evaluate", "qa", "--from-log", "--json", "-k", "3")
    assert status == 0, err
    assert (json.loads(out)["questions"], json.loads(out)["left_out"]) == (1, 1)
    assert "除きました" in err


def test_evaluate_takes_a_file_or_the_log(rules: Path, tmp_path: Path) -> None:
    status, _, err = run("evaluate", "qa")
    assert status == 2
    assert "--from-log" in err
    status, _, err = run("evaluate", "qa", str(tmp_path / "jsquad.json"), "--from-log")
    assert status == 2
    assert "どちらか一つ" in err


def test_with_the_log_off_nothing_is_written(
    rules: Path, chat_server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_QUERY_LOG", "off")
    chat_server.replies = [Reply("十日です[1]。")]
    assert run("ask", FIRST)[0] == 0
    assert run("search", FIRST)[0] == 0
    assert not (tmp_path / "data" / FILE_NAME).exists()
    status, out, _ = run("log")
    assert (status, out) == (0, "質問の記録はまだありません（RAG_QUERY_LOG=off のため記録していません）。\n")
    assert json.loads(run("log", "--json")[1]) == []


def test_a_rewriting_failure_searches_the_question_as_typed(
    rules: Path, chat_server: ChatServer, tmp_path: Path
) -> None:
    history = tmp_path / "会話.json"
    history.write_text(json.dumps({"turns": [{"question": FIRST, "answer": "十日です。"}]}), encoding="utf-8")
    chat_server.replies = [Reply(status=500), Reply(status=500), Reply("六か月後からです[1]。")]
    status, out, err = run("ask", FOLLOW_UP, "--history", str(history))
    assert status == 0, err
    assert "注意: 質問を書き換えられなかったため、入力どおりに検索します。" in err
    assert "HTTP 500" in err
    assert "検索した質問" not in out
    assert json.loads(history.read_text(encoding="utf-8"))["turns"][1]["standalone_question"] == FOLLOW_UP


def test_a_broken_history_file_is_refused(rules: Path, tmp_path: Path) -> None:
    history = tmp_path / "会話.json"
    history.write_text("{壊れた", encoding="utf-8")
    status, out, err = run("ask", FOLLOW_UP, "--history", str(history))
    assert (status, out) == (2, "")
    assert "会話の履歴ファイル" in err
    assert history.read_text(encoding="utf-8") == "{壊れた"  # left as it was
