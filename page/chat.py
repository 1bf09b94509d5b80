"""The conversation (when a chat model is configured): each turn a question, the question searched, the answer with its sources, the cards.

A follow-up is rewritten from the earlier turns into a standalone question (the service does it);
👍/👎 on the answer and on each card go to the query log. The turns live in this session's state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import streamlit as st

from page.cards import feedback, show_hit
from page.common import Here, escape_markdown
from page.viewer import focus_number, open_view
from pipelines.answers.conversation import Conversation, Turn
from pipelines.choices import Mode
from pipelines.errors import RagError
from pipelines.search.highlight import query_terms
from pipelines.search.retrieval import Hit
from pipelines.service import words
from pipelines.service.results import (
    Answered,
    AnswerFailed,
    AskEvent,
    Delta,
    Question,
    RewriteFailed,
    Rewritten,
    Searched,
)


def current_chat() -> Conversation:
    """This session's conversation (a class from an imported module: the script's own are new each run)."""
    chat = st.session_state.get("chat")
    if not isinstance(chat, Conversation):
        chat = st.session_state["chat"] = Conversation()
    return chat


def _new_chat() -> None:
    st.session_state["chat"] = Conversation()


def _ask_again_in_chat(question: str) -> None:
    """Ask the last question again (its answer failed): the turn goes, the question comes back."""
    chat = current_chat()
    if chat.turns:
        chat.turns.pop()
    st.session_state["pending"] = question


def chat_toolbar(chat: Conversation) -> None:
    left, right = st.columns(2)
    left.button("新しい会話", on_click=_new_chat, disabled=not chat.turns)
    right.download_button(
        "会話を保存",
        data=chat.markdown(),
        file_name=f"会話-{words.local_time(chat.started, with_time=False)}.md",
        mime="text/markdown",
        on_click="ignore",
        disabled=not chat.turns,
        help="質問・検索した質問・回答と出典（ファイル名と場所）を Markdown で保存します。",
    )


def ask_in_chat(here: Here, chat: Conversation, question: str, k: int, mode: Mode, chosen: list[str]) -> bool:
    """One turn: the question made standalone, searched, logged and answered as it streams; False when it failed."""
    with st.chat_message("user"):
        st.markdown(escape_markdown(question))
    asked = Question(question, k, mode, tuple(chosen))
    with st.chat_message("assistant"):
        slot = st.empty()
        text = ""
        try:
            events: Iterator[AskEvent] = here.service.ask(here.caller, here.collection, asked, chat.turns, chat.id)
            if chat.turns:
                with st.spinner("それまでの会話を踏まえて、検索する質問を考えています…"):
                    first = next(events)
                events = itertools.chain([first], events)
            for event in events:
                if isinstance(event, RewriteFailed):
                    st.warning(escape_markdown(event.message))
                elif isinstance(event, Rewritten):
                    st.caption(words.SEARCHED_AS.format(question=escape_markdown(event.question)))
                elif isinstance(event, Searched):
                    if event.found.log_error:
                        st.toast(event.found.log_error)
                    slot = st.empty()
                elif isinstance(event, Delta):
                    text += event.text
                    slot.markdown(escape_markdown(text) + " ▌")
                elif isinstance(event, Answered | AnswerFailed):
                    chat.turns.append(event.turn)
        except RagError as error:
            st.error(escape_markdown(str(error)))
            return False
    remember(question)
    return True


def remember(question: str) -> None:
    """Keep the session's recent questions, newest first, without repeats."""
    recent = [q for q in st.session_state.get("recent", []) if q != question]
    st.session_state["recent"] = [question, *recent][:10]


def show_turn(here: Here, chat: Conversation, number: int, turn: Turn) -> None:
    """A turn of the conversation: the question, what was searched, the answer and its sources, the cards."""
    key = f"{chat.id[:8]}-{number}-"
    with st.chat_message("user"):
        st.markdown(escape_markdown(turn.question))
    with st.chat_message("assistant"):
        if turn.rewritten:
            st.caption(words.SEARCHED_AS.format(question=escape_markdown(turn.standalone_question)))
        hits = list(turn.hits)
        show_answer(turn, hits, key)
        if turn.error and number == len(chat.turns) - 1:
            st.button("もう一度回答を作る", key=f"{key}retry", on_click=_ask_again_in_chat, args=(turn.question,))
        feedback(here, turn.query_id, "answer", 0, f"{key}answer-")
        if not hits:
            st.warning(words.NO_HITS + words.NO_HITS_HINT)
            return
        terms = query_terms(turn.standalone_question)

        def judge(hit: Hit) -> None:
            feedback(here, turn.query_id, "hit", hit.rank, f"{key}hit-{hit.rank}-")

        for hit, emphasis in zip(hits, turn.emphases, strict=True):
            show_hit(here, hit, terms, emphasis, key, judge)


def show_answer(turn: Turn, hits: list[Hit], key: str = "") -> None:
    """An answer with its sources (each opens the original where its passage is), or why there is none."""
    if turn.error:
        st.error(f"{words.ANSWER_FAILED}{escape_markdown(turn.error)}\n\n見つかった箇所は下に表示しています。")
        return
    if turn.answered:
        st.markdown(escape_markdown(turn.answer))
    else:
        st.warning(escape_markdown(turn.answer))
    # a citation opens the page its passage's sentence closest to the question is on, as the card does
    pages = {hit.rank: focus_number(hit, span[0]) for hit, span in zip(hits, turn.emphases, strict=False)}
    for citation in turn.citations:
        where = f" ・ {escape_markdown(citation.location)}" if citation.location else ""
        st.caption(f"\\[{citation.n}\\] {citation.rank} 位の箇所: {escape_markdown(citation.source)}{where}")
        st.button(
            f"[{citation.n}] の原文を開く",
            key=f"{key}cite-{citation.n}",
            on_click=open_view,
            args=(citation.source, citation.chunk_index, pages.get(citation.rank, citation.page)),
            type="tertiary",
        )
    if turn.dropped:
        st.warning(words.dropped_citations(turn.dropped, escape=True))
    if turn.passages:
        st.caption(f"回答は上位 {turn.passages} 件の箇所だけから作っています。内容は出典で確かめてください。")


def conversation_panel(here: Here, k: int, mode: Mode, chosen: list[str], ready: Callable[[], bool]) -> None:
    """Earlier turns, the question box at the bottom, 「新しい会話」 and 「会話を保存」 above."""
    chat = current_chat()
    toolbar = st.container()  # filled last: the download holds this run's turn too
    for number, turn in enumerate(chat.turns):
        show_turn(here, chat, number, turn)
    typed = st.chat_input("質問を入力してください（続けて質問すると、それまでの会話を踏まえて検索します）")
    # a recent question from the sidebar, or a failed one asked again
    question = typed or st.session_state.pop("pending", None) or st.session_state.pop("question", None)
    with toolbar:
        chat_toolbar(chat)
    if not question or not question.strip() or not ready():
        return
    if ask_in_chat(here, chat, question, k, mode, chosen):
        st.rerun()  # the whole conversation again, the new turn with its cards and feedback
