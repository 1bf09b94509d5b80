"""The collection's sources (folders and SMB shares kept in sync) in the sidebar, for those who may administer it."""

from __future__ import annotations

import streamlit as st

from page.common import Here, escape_markdown
from pipelines.errors import RagError
from pipelines.service import words
from pipelines.service.syncstate import SourceInfo


def sources_panel(here: Here) -> None:
    """「同期元」: each source with its last sync, counts and failures, and 「今すぐ同期」; admins only."""
    if not here.may("admin"):
        return
    with st.expander(words.SOURCES_TITLE):
        try:
            sources = here.service.sources(here.caller, here.collection)
        except RagError as error:
            st.warning(escape_markdown(str(error)))
            return
        if not sources:
            st.caption(escape_markdown(words.NO_SOURCES))
        for info in sources:
            _source(here, info)
    said = st.session_state.pop("sync-said", None)
    if said is not None:
        for ok, text in said:
            (st.success if ok else st.warning)(escape_markdown(text))


def _source(here: Here, info: SourceInfo) -> None:
    kind = words.SOURCE_KINDS.get(info.kind, info.kind)
    st.markdown(f"**{info.id}. {escape_markdown(info.location)}**（{kind}）")
    synced = words.local_time(info.synced_at) if info.synced_at else "まだ同期していません"
    outcome = words.SYNC_OUTCOMES.get(info.outcome, info.outcome)
    st.caption(f"前回: {synced} ・ {outcome} ・ {info.files} ファイル")
    if info.counts:
        st.caption(escape_markdown(words.sync_summary(info.counts)))
    if info.failing:
        st.caption(f"読めないファイル {info.failing} 件（次の同期でもう一度試します）")
    if info.message:
        st.warning(escape_markdown(info.message))
    st.button(words.SYNC_NOW, key=f"sync-{info.id}", on_click=_sync, args=(here, info.id, False))
    if info.outcome == "held":
        confirmed = st.checkbox("消えたファイルの文書を削除してよい", key=f"confirm-sync-{info.id}")
        st.button(
            words.SYNC_CONFIRM_DELETIONS,
            key=f"sync-confirmed-{info.id}",
            disabled=not confirmed,
            on_click=_sync,
            args=(here, info.id, True),
        )


def _sync(here: Here, number: int, allow_deletions: bool) -> None:
    try:
        reports = here.service.sync(here.caller, here.collection, number, allow_deletions=allow_deletions)
    except RagError as error:
        st.session_state["sync-said"] = [(False, str(error))]
        return
    said = []
    for report in reports:
        line = f"{report.location}: {words.sync_summary(report.counts())}"
        failures = "".join(f"\n{name}: {reason}" for name, reason in report.failed[:10])
        said.append(
            (
                report.outcome == "ok",
                line + (f"\n{report.error or report.held}" if report.error or report.held else "") + failures,
            )
        )
    st.session_state["sync-said"] = said
