"""Conversations: the turns kept, follow-up questions rewritten into standalone ones through LangChain, saved as JSON or Markdown.

A follow-up such as 「それは入社何か月後から？」 means nothing to the search alone. Before retrieval,
``Rewriter`` gives the chat model the latest earlier turns that fit a token budget and asks for the
question rewritten so that it stands alone (a history-aware step, as LangChain's history-aware
retrievers do it); that standalone question is what is searched and answered. With no earlier turn
the question is searched as typed and no model is asked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from pipelines.answers.answer import Answer, Citation, PromptTokenEstimator, answered, estimate_tokens, explained
from pipelines.errors import HistoryError
from pipelines.search.retrieval import Hit

HISTORY_VERSION = 1

REWRITE_SYSTEM = """あなたは文書検索システムの質問整理係です。利用者とアシスタントのこれまでの会話と、利用者の新しい質問が与えられます。新しい質問を、会話を読んでいない人にも意味が通じる、単独の日本語の質問に書き換えてください。

守ること:
- 「それ」「その」「あれ」「前者」などの指示語や省略された主語・目的語を、会話に出てきた具体的な言葉で補う。
- 新しい質問がそれだけで意味が通じるときは、そのまま返す。
- 質問に答えない。説明や前置きを付けない。書き換えた質問を一行だけ出力する。"""

REWRITE_HUMAN = "新しい質問: {question}\n\n書き換えた質問:"

REWRITE_PROMPT = ChatPromptTemplate.from_messages(
    [("system", REWRITE_SYSTEM), MessagesPlaceholder("history"), ("human", REWRITE_HUMAN)]
)

# what models put before or around the one line asked for: 「書き換えた質問: 」, quotes, brackets
_LABEL = re.compile(r"^\s*(?:書き換えた質問|質問|standalone question)\s*[:：]\s*", re.IGNORECASE)
_QUOTES = (("「", "」"), ("『", "』"), ('"', '"'), ("“", "”"), ("'", "'"))


@dataclass(frozen=True)
class Turn:
    """One question and its answer in a conversation.

    ``standalone_question`` is what was searched (the question itself when it needed no rewriting).
    What a face shows besides stays in memory and is not saved in a history file: ``hits`` (the
    cards), ``emphases`` (each card's sentence closest to the question), ``query_id`` (the turn's row
    in the query log), ``dropped`` (cited numbers no passage had), ``passages`` (how many passages
    the model was given) and ``error`` (why no answer was made).
    """

    question: str
    standalone_question: str
    answer: str = ""
    citations: tuple[Citation, ...] = ()
    hits: tuple[Hit, ...] = ()
    query_id: int | None = None
    emphases: tuple[tuple[int, int], ...] = ()
    dropped: tuple[int, ...] = ()
    passages: int = 0
    error: str = ""

    @classmethod
    def answering(
        cls,
        question: str,
        standalone_question: str,
        result: Answer | str,
        hits: Sequence[Hit] = (),
        **shown: Any,
    ) -> Turn:
        """The turn for an answer, or for the message that says why none was made."""
        if isinstance(result, str):
            return cls(question, standalone_question, hits=tuple(hits), error=result, **shown)
        return cls(
            question,
            standalone_question,
            result.text,
            tuple(result.citations),
            tuple(hits),
            dropped=tuple(result.dropped),
            passages=len(result.passages),
            **shown,
        )

    @property
    def rewritten(self) -> bool:
        """Whether the question searched is not the one typed."""
        return self.standalone_question != self.question

    @property
    def answered(self) -> bool:
        """Whether the answer answers (the passages held it)."""
        return answered(self.answer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "citations": [c.to_dict() | {"chunk_index": c.chunk_index} for c in self.citations],
        }

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Turn:
        question = str(fields["question"])
        citations = tuple(
            Citation(
                n=int(c["n"]),
                source=str(c["source"]),
                page=c.get("page"),
                rank=int(c.get("rank", 0)),
                chunk_index=int(c.get("chunk_index", 0)),
                location=str(c.get("location", "")),
            )
            for c in fields.get("citations", [])
        )
        return cls(
            question=question,
            standalone_question=str(fields.get("standalone_question") or question),
            answer=str(fields.get("answer") or ""),
            citations=citations,
        )


@dataclass
class Conversation:
    """A conversation: its id (in the query log), when it started, and its turns in order."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    turns: list[Turn] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now().astimezone().strftime("%Y-%m-%d %H:%M"))

    def markdown(self) -> str:
        """The conversation as Markdown, with its sources (「会話を保存」)."""
        return conversation_markdown(self.turns, title=f"会話（{self.started}）")


# History files -----------------------------------------------------------------------------------


def load_history(path: Path) -> Conversation:
    """A conversation from a history file; a file that does not exist yet (or is empty) is a new one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Conversation()
    except (OSError, UnicodeDecodeError) as error:
        raise HistoryError(f"会話の履歴ファイル「{path}」を読めません（{error}）。") from None
    if not text.strip():
        return Conversation()
    try:
        data = json.loads(text)
        if isinstance(data, list):  # a bare list of turns, as a person might write one
            data = {"turns": data}
        version = int(data.get("version", HISTORY_VERSION))
        if version > HISTORY_VERSION:
            raise HistoryError(
                f"会話の履歴ファイル「{path}」は新しい版の形式（{version}）です。製品を新しくしてください。"
            )
        conversation = Conversation(turns=[Turn.from_dict(t) for t in data["turns"]])
        conversation.id = str(data.get("conversation") or conversation.id)
        conversation.started = str(data.get("started") or conversation.started)
        return conversation
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise HistoryError(
            f"会話の履歴ファイル「{path}」の形式が違います（{type(error).__name__}: {error}）。"
            '{"turns": [{"question": …, "standalone_question": …, "answer": …, "citations": […]}]} の JSON にしてください。'
        ) from None


def save_history(path: Path, conversation: Conversation) -> None:
    """Write a history file whole or not at all (a temporary file beside it, then renamed over it)."""
    data = {
        "version": HISTORY_VERSION,
        "conversation": conversation.id,
        "started": conversation.started,
        "turns": [t.to_dict() for t in conversation.turns],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, ensure_ascii=False, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def conversation_markdown(turns: Sequence[Turn], title: str = "会話") -> str:
    """The conversation as Markdown: each question, the question searched, the answer and its sources."""
    lines = [f"# {title}", ""]
    for number, turn in enumerate(turns, 1):
        lines += [f"## 質問 {number}", "", turn.question, ""]
        if turn.rewritten:
            lines += [f"検索した質問: {turn.standalone_question}", ""]
        lines += ["### 回答", "", turn.answer or f"（回答なし{'：' + turn.error if turn.error else ''}）", ""]
        if turn.citations:
            lines += ["出典:", ""]
            for c in turn.citations:
                where = f" ・ {c.location}" if c.location else ""
                lines.append(f"- [{c.n}] {c.source}{where}（チャンク {c.chunk_index}）")
            lines.append("")
    return "\n".join(lines)


# Rewriting follow-ups ----------------------------------------------------------------------------


def history_window(turns: Sequence[Turn], budget: int, count: PromptTokenEstimator = estimate_tokens) -> list[Turn]:
    """The latest turns, in order, whose questions and answers fit in ``budget`` tokens.

    The turn just before the new question is always given: its answer is cut to what fits, its
    question kept whole (the follow-up most likely refers to it). Older turns are given whole or
    not at all, newest first, until one does not fit.
    """
    window: list[Turn] = []
    left = budget
    for turn in reversed(turns):
        cost = count(turn.question) + count(turn.answer)
        if cost > left:
            if window:
                break
            room = max(left - count(turn.question), 0)
            turn = dataclasses.replace(turn, answer=_head(turn.answer, room, count))
            cost = left
        window.insert(0, turn)
        left -= cost
    return window


def _head(text: str, budget: int, count: PromptTokenEstimator) -> str:
    """The longest start of ``text`` within ``budget`` tokens (by characters; counters are monotone)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def history_messages(turns: Sequence[Turn]) -> list[BaseMessage]:
    """Earlier turns as chat messages: the question as the person typed it, the answer as given."""
    messages: list[BaseMessage] = []
    for turn in turns:
        messages += [HumanMessage(turn.question), AIMessage(turn.answer or "（回答なし）")]
    return messages


def clean_question(text: str) -> str:
    """The one line a model gave as the rewritten question, without labels or quotes around it."""
    line = next((line.strip() for line in text.strip().splitlines() if line.strip()), "")
    line = _LABEL.sub("", line).strip()
    for opening, closing in _QUOTES:
        if len(line) > 2 and line.startswith(opening) and line.endswith(closing):
            line = line[1:-1].strip()
    return line


class Rewriter:
    """Follow-up questions made standalone by a chat model, from the latest earlier turns within a token budget.

    The model comes in through the constructor: the product's ``ChatOpenAI``
    (``pipelines.service.compose``) or one of LangChain's fake chat models in tests.
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        history_tokens: int = 1000,
        count_tokens: PromptTokenEstimator = estimate_tokens,
        model_description: str = "",
    ) -> None:
        self.model = model
        self.history_tokens = history_tokens
        self.count_tokens = count_tokens
        self.model_description = model_description or "質問の書き換えに使う言語モデル"
        # {"question", "history": [messages]} -> the standalone question, as a LangChain runnable
        self.rewriting: Runnable[dict[str, Any], str] = (
            REWRITE_PROMPT | model | StrOutputParser() | RunnableLambda(clean_question)
        )

    def window(self, turns: Sequence[Turn]) -> list[Turn]:
        """The earlier turns the model is given."""
        return history_window(turns, self.history_tokens, self.count_tokens)

    def messages(self, question: str, turns: Sequence[Turn]) -> list[BaseMessage]:
        """The messages the model receives to rewrite ``question`` after ``turns``."""
        return REWRITE_PROMPT.format_messages(question=question, history=history_messages(self.window(turns)))

    def standalone(self, question: str, turns: Sequence[Turn], config: RunnableConfig | None = None) -> str:
        """``question`` as a standalone question: as typed when there is no earlier turn (no model call)."""
        window = self.window(turns)
        if not window or not question.strip():
            return question
        with explained(self.model_description):
            rewritten = self.rewriting.invoke({"question": question, "history": history_messages(window)}, config)
        return rewritten or question
