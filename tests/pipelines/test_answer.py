"""Answers with citations: LangChain's fake chat models for the prompt, budget and citations; a real HTTP exchange."""

from __future__ import annotations

import time

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
    ParrotFakeChatModel,
)

from pipelines.answers.answer import NO_ANSWER, Answerer, Passage, fit_passages, format_passage, parse_citations
from pipelines.errors import GenerationError, SettingsError
from pipelines.search.retrieval import Hit
from pipelines.service.compose import make_answerer
from pipelines.settings import Settings
from testkit.records import stored_chunk
from testkit.servers import ChatServer, Reply, free_port

FUJI = "富士山は日本で最も高い山です。標高は三七七六メートルです。"
TOKYO = "東京は日本の首都です。"
LONG = "琵琶湖は滋賀県にある日本最大の湖です。" * 6
BIWA = "琵琶湖は滋賀県にあります。"
QUESTION = "富士山の高さは？"


def hit(rank: int, text: str, source: str, page: int | None = None) -> Hit:
    return Hit(stored_chunk(text, source, rank - 1, page), rank, 1.0 - rank / 10)


HITS = [hit(1, FUJI, "富士山.pdf", 2), hit(2, TOKYO, "東京.txt"), hit(3, LONG, "湖.md"), hit(4, BIWA, "湖.md")]


def cost(n: int) -> int:
    """What passage n costs whole: its header line and text, one token per character."""
    return len(format_passage(Passage(n, HITS[n - 1], HITS[n - 1].chunk.text)))


def test_prompt_numbers_the_passages_and_asks_for_cited_japanese() -> None:
    answerer = Answerer(ParrotFakeChatModel())
    system, human = answerer.messages(QUESTION, answerer.passages(HITS[:2]))
    assert "日本語で簡潔に答えてください" in system.content
    assert "[1] や [2] のように書く" in system.content
    assert f"資料に答えが含まれていないときは「{NO_ANSWER}」とだけ答える" in system.content
    assert human.content == (
        "資料:\n\n"
        "[1] 富士山.pdf（2 ページ）\n富士山は日本で最も高い山です。標高は三七七六メートルです。\n\n"
        "[2] 東京.txt\n東京は日本の首都です。\n\n"
        "質問: 富士山の高さは？"
    )
    # the model receives exactly these messages (the parrot answers with the last one)
    assert answerer.answer(QUESTION, HITS[:2]).text == human.content


@pytest.mark.parametrize(
    ("budget", "given"),
    [
        (10_000, [1, 2, 3, 4]),
        (cost(1) + cost(2), [1, 2]),  # exactly full
        (cost(1) + cost(2) - 1, [1]),
        (cost(1) + cost(2) + cost(3) - 1, [1, 2]),  # 4 would fit, but passages are the best ones in order
    ],
)
def test_passages_fill_the_budget_whole_and_best_first(budget: int, given: list[int]) -> None:
    passages = fit_passages(HITS, budget)
    assert [p.n for p in passages] == given
    assert [p.text for p in passages] == [HITS[n - 1].chunk.text for n in given]
    assert [p.hit.rank for p in passages] == given  # passage n is the n-th card


def test_a_best_passage_over_budget_is_cut_between_sentences() -> None:
    header = len("[1] 富士山.pdf（2 ページ）\n")
    (passage,) = fit_passages(HITS, header + len("富士山は日本で最も高い山です。") + 5)
    assert passage.text == "富士山は日本で最も高い山です。"
    with pytest.raises(GenerationError, match="RAG_LLM_CONTEXT_TOKENS を大きくしてください"):
        fit_passages(HITS, header + 5)


def test_the_budget_counts_with_the_counter_given() -> None:
    def double(text: str) -> int:
        return 2 * len(text)

    answerer = Answerer(ParrotFakeChatModel(), context_tokens=2 * (cost(1) + cost(2)), count_tokens=double)
    assert [p.n for p in answerer.passages(HITS)] == [1, 2]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("標高は三七七六メートルです[1]。", [1]),
        ("首都は東京です[2]。高さは三七七六メートルです[1]。", [2, 1]),
        ("どちらも日本にあります[1][2]。", [1, 2]),
        ("どちらも日本にあります[1, 3]。", [1, 3]),
        ("どちらも日本にあります[1、3]。", [1, 3]),
        ("全角の括弧と数字［２］。", [2]),
        ("すみ付き括弧【1】。", [1]),
        ("二度目は数えない[1]。また[1]。", [1]),
        ("十番目[10]。", [10]),
        ("改行をはさむ[1]\r\n次の行[2]", [1, 2]),
        ("[ 3 ]空白入り", [3]),
        (NO_ANSWER, []),
        ("数字でない[注]や[a]は出典ではない。", []),
        ("", []),
    ],
)
def test_citations_are_parsed_from_the_answer(text: str, numbers: list[int]) -> None:
    assert parse_citations(text) == numbers


def test_citations_link_to_their_passages_and_unknown_ones_are_dropped() -> None:
    model = FakeListChatModel(responses=["標高は三七七六メートルです[1][4]。首都は東京です[2][0]。"])
    answer = Answerer(model).answer(QUESTION, HITS[:2])
    assert [(c.n, c.source, c.page, c.rank) for c in answer.citations] == [
        (1, "富士山.pdf", 2, 1),
        (2, "東京.txt", None, 2),
    ]
    assert answer.dropped == [4, 0]
    assert answer.answered
    assert answer.to_dict()["citations"] == [
        {"n": 1, "source": "富士山.pdf", "page": 2, "location": "2 ページ", "rank": 1},
        {"n": 2, "source": "東京.txt", "page": None, "location": "", "rank": 2},
    ]
    assert answer.to_dict()["dropped_citations"] == [4, 0]


def test_no_answer_in_the_passages() -> None:
    answer = Answerer(FakeListChatModel(responses=[NO_ANSWER])).answer("月の裏側には何がありますか？", HITS[:2])
    assert answer.text == NO_ANSWER
    assert not answer.answered
    assert (answer.citations, answer.dropped) == ([], [])


def test_no_passages_means_no_model_call() -> None:
    model = FakeListChatModel(responses=["呼ばれてはいけない[1]。", "二度目"])
    answerer = Answerer(model)
    assert list(answerer.stream(QUESTION, [])) == [NO_ANSWER]
    assert answerer.answer(QUESTION, []).text == NO_ANSWER
    assert model.i == 0  # the fake counts its calls


def test_the_answer_streams_in_pieces() -> None:
    text = "富士山の標高は三七七六メートルです[1]。"
    answerer = Answerer(FakeListChatModel(responses=[text]))
    pieces = list(answerer.stream(QUESTION, answerer.passages(HITS)))
    assert len(pieces) == len(text)  # this fake streams one character at a time
    assert "".join(pieces) == text


def test_a_failure_that_is_not_the_endpoints_surfaces_as_it_is() -> None:
    answerer = Answerer(FakeListChatModel(responses=["途中で失敗する回答"], error_on_chunk_number=3))
    with pytest.raises(FakeListChatModelError):
        list(answerer.stream(QUESTION, answerer.passages(HITS)))


# Settings ----------------------------------------------------------------------------------------


def test_answers_are_off_unless_configured() -> None:
    assert make_answerer(Settings()) is None
    settings = Settings.from_env(
        {"RAG_LLM_URL": "http://127.0.0.1:11434/v1", "RAG_LLM_MODEL": "qwen2.5:7b", "RAG_LLM_TIMEOUT": "5"}
    )
    assert (settings.llm_url, settings.llm_model, settings.llm_timeout) == (
        "http://127.0.0.1:11434/v1",
        "qwen2.5:7b",
        5,
    )
    assert make_answerer(settings) is not None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RAG_LLM_URL": "http://127.0.0.1:11434/v1"}, "RAG_LLM_MODEL が空です"),
        ({"RAG_LLM_URL": "127.0.0.1:11434", "RAG_LLM_MODEL": "m"}, "http:// か https://"),
        ({"RAG_LLM_CONTEXT_TOKENS": "10"}, "RAG_LLM_CONTEXT_TOKENS は 100 以上"),
        ({"RAG_LLM_TIMEOUT": "0"}, "RAG_LLM_TIMEOUT は 1 秒以上"),
    ],
)
def test_bad_answer_settings_are_explained(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


# A real OpenAI-compatible server on 127.0.0.1 ------------------------------------------------------


def answerer_for(server: ChatServer, **settings: object) -> Answerer:
    answerer = make_answerer(Settings(llm_url=server.url, llm_model="テスト用モデル", **settings))  # type: ignore[arg-type]
    assert answerer is not None
    return answerer


def test_streamed_answer_over_http(chat_server: ChatServer) -> None:
    reply = "富士山の標高は三七七六メートルです[1]。"
    chat_server.replies = [Reply(reply, pieces=4)]
    answerer = answerer_for(chat_server, llm_api_key="sk-local-test")
    passages = answerer.passages(HITS[:2])
    pieces = list(answerer.stream(QUESTION, passages))
    assert len(pieces) == 4
    assert "".join(pieces) == reply
    (request,) = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-local-test"
    body = request["body"]
    assert (body["model"], body["stream"]) == ("テスト用モデル", True)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"].endswith(f"[2] 東京.txt\n{TOKYO}\n\n質問: {QUESTION}")
    answer = answerer.finish(QUESTION, passages, "".join(pieces))
    assert [(c.n, c.source, c.page) for c in answer.citations] == [(1, "富士山.pdf", 2)]


def test_whole_answer_over_http(chat_server: ChatServer) -> None:
    chat_server.replies = [Reply("首都は東京です[2]。")]
    answer = answerer_for(chat_server).answer("日本の首都は？", HITS[:2])
    assert answer.text == "首都は東京です[2]。"
    assert [(c.n, c.source) for c in answer.citations] == [(2, "東京.txt")]
    (request,) = chat_server.requests
    assert not request["body"].get("stream")
    assert request["headers"]["authorization"] == "Bearer none"  # never the OPENAI_API_KEY of the environment


def test_server_error_is_explained(chat_server: ChatServer) -> None:
    chat_server.replies = [Reply(status=500)]
    answerer = answerer_for(chat_server)
    with pytest.raises(GenerationError) as raised:
        list(answerer.stream(QUESTION, answerer.passages(HITS)))
    assert "（テスト用モデル、http://127.0.0.1:" in str(raised.value)
    assert "HTTP 500: 模擬サーバーの内部エラー" in str(raised.value)
    assert len(chat_server.requests) == 2  # one retry


@pytest.mark.slow
def test_timeout_is_explained(chat_server: ChatServer) -> None:
    chat_server.replies = [Reply("遅すぎる回答", delay=30)]
    answerer = answerer_for(chat_server, llm_timeout=1)
    started = time.monotonic()
    with pytest.raises(GenerationError, match=r"時間内に応答しませんでした.*RAG_LLM_TIMEOUT"):
        answerer.answer(QUESTION, HITS)
    assert time.monotonic() - started < 10  # two tries of one second, not the server's thirty


def test_unreachable_server_is_explained() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    answerer = make_answerer(Settings(llm_url=closed, llm_model="m", llm_timeout=2))
    assert answerer is not None
    with pytest.raises(GenerationError, match=r"に接続できません.*RAG_LLM_URL を確かめてください"):
        list(answerer.stream(QUESTION, answerer.passages(HITS)))
