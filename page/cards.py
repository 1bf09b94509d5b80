"""A result card (rank, scores, file and place, the passage, its doors into the original) and 👍/👎."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from page.common import Here, escape_markdown, render_passage
from page.viewer import download_name, focus_number, open_view
from pipelines.errors import RagError
from pipelines.search.retrieval import Hit
from pipelines.service import words
from pipelines.service.querylog import Target


def show_hit(
    here: Here,
    hit: Hit,
    terms: list[str],
    emphasis: tuple[int, int],
    key: str = "",
    footer: Callable[[Hit], None] | None = None,
) -> None:
    """A result card; ``key`` sets its widgets apart from another turn's cards, ``footer`` adds to its end."""
    with st.container(border=True, key=f"{key}card-{hit.rank}"):
        ocr = "OCR で読み取り" if hit.chunk.ocr else ""  # its characters may be misrecognised
        where = "".join(f" ・ {escape_markdown(part)}" for part in (hit.chunk.location, ocr) if part)
        keyword = f"{hit.keyword_score:.2f}" if hit.keyword_score is not None else "—"
        places = f"意味 {words.place(hit.dense_rank)} ・ キーワード {words.place(hit.keyword_rank)}"
        rerank = f" ・ 再ランキング **{hit.rerank_score:.3f}**" if hit.rerank_score is not None else ""
        st.markdown(f"**{hit.rank} 位** 類似度 **{hit.cosine:.3f}** ・ BM25 **{keyword}**{rerank} ・ {places}")
        st.progress(min(max(hit.cosine, 0.0), 1.0))
        st.caption(f"{escape_markdown(hit.chunk.source)}{where} ・ チャンク {hit.chunk.chunk_index}")
        origin = _origin(here, hit.chunk.source)
        if origin:
            st.caption(f"{words.ORIGIN_LABEL}: {escape_markdown(origin)}")
        st.markdown(render_passage(hit.chunk.text, terms, emphasis))
        card_actions(here, hit, emphasis[0], key)
        with st.expander("前後の文を表示"):
            before, after = here.service.surroundings(here.caller, here.collection, hit)
            st.caption("前")
            st.markdown(escape_markdown(before) if before else "（文書の先頭です）")
            st.caption("後")
            st.markdown(escape_markdown(after) if after else "（文書の末尾です）")
        if footer is not None:
            footer(hit)


def _origin(here: Here, source: str) -> str:
    """Where the document's file lies on the share it is synced from (``\\\\server\\share\\…``); "" for an upload."""
    try:
        return here.service.origins(here.caller, here.collection, [source]).get(source, "")
    except RagError:  # the sync's records cannot be read: the card stands without its place on the share
        return ""


def card_actions(here: Here, hit: Hit, focus: int, key: str = "") -> None:
    """A card's doors into the original: open it at the sentence closest to the question, and download it."""
    kept = here.service.original_kept(here.caller, here.collection, hit.chunk.content_hash)
    left, right = st.columns(2)
    left.button(
        "原文を開く",
        key=f"{key}open-{hit.rank}",
        on_click=open_view,
        args=(hit.chunk.source, hit.chunk.chunk_index, focus_number(hit, focus)),
        disabled=not kept,
        help=None if kept else words.ORIGINAL_NOT_KEPT,
    )
    allowed = here.may("download")  # without the right the file is not offered (the service would refuse it)
    right.download_button(
        "元のファイルをダウンロード",
        data=lambda: here.service.original(here.caller, here.collection, hit.chunk.source).data,
        file_name=download_name(hit.chunk.source),
        key=f"{key}download-{hit.rank}",
        on_click="ignore",
        disabled=not (kept and allowed),
        help=None if kept and allowed else words.ORIGINAL_NOT_KEPT if not kept else words.NO_DOWNLOAD,
    )


def feedback(here: Here, query_id: int | None, target: Target, rank: int, key: str) -> None:
    """👍/👎 and an optional comment on an answer or a card, kept in the query log (none when the log is off)."""
    if not here.service.logging or query_id is None:
        return
    left, right = st.columns([1, 4], vertical_alignment="center")
    with left:
        st.feedback("thumbs", key=f"{key}rating", on_change=_judged, args=(here, query_id, target, rank, key))
    with right.popover("コメント", width="content"):
        st.text_input(
            "コメント（任意）",
            key=f"{key}comment",
            on_change=_judged,
            args=(here, query_id, target, rank, key),
            placeholder="例: 2 ページ目の表が答えです",
        )


def _judged(here: Here, query_id: int, target: Target, rank: int, key: str) -> None:
    """The rating and comment of one answer or card, as they now stand, into the log."""
    value = st.session_state.get(f"{key}rating")
    rating = None if value is None else (1 if value == 1 else -1)  # st.feedback: 1 is 👍, 0 is 👎
    comment = st.session_state.get(f"{key}comment")
    try:
        here.service.feedback(here.caller, query_id, target, rating, comment, rank)
    except RagError as error:  # the conversation goes on and says so
        st.toast(f"{words.LOG_FAILED}{error}")
