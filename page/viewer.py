"""The view of a passage in its original file (「原文を開く」), opened from a card, a citation or a link.

The view is addressed by query parameters (?doc=…&chunk=…&page=…), so the browser's address is a link
that reopens it, for a colleague too. Every parameter is checked by the service against the store: the
name must be a stored document's (a label, never a path), the chunk and page numbers within it. What is
shown is escaped text, or an image the server rendered.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import PurePosixPath

import streamlit as st

from ingest.document import describe
from page.common import Here, escape_markdown
from pipelines.errors import PermissionDeniedError, RagError
from pipelines.search.page_view import PageImage
from pipelines.search.retrieval import Hit
from pipelines.search.text_views import RowsView, SlideView, TextView
from pipelines.service import words
from pipelines.service.links import VIEWER_PARAMS, viewer_params
from pipelines.service.results import PassageView
from pipelines.store.collections import DEFAULT


def _view_params(source: str, chunk: int, page: int | None) -> dict[str, str]:
    """The query parameters that address a passage's view (and its collection, unless it is the default)."""
    return viewer_params(st.session_state.get("collection", DEFAULT), source, chunk, page)


def open_view(source: str, chunk: int, page: int | None) -> None:
    """Point the address at a passage's view (a button's callback: the page then reruns and shows it)."""
    st.query_params.from_dict(_view_params(source, chunk, page))


def close_view() -> None:
    for key in VIEWER_PARAMS:
        st.query_params.pop(key, None)


def link(source: str, chunk: int, page: int | None) -> str:
    """The relative link that reopens a view."""
    return "?" + urllib.parse.urlencode(_view_params(source, chunk, page))


def focus_number(hit: Hit, offset: int) -> int | None:
    """The page (or slide) of the character at ``offset`` of a hit's text."""
    place = hit.chunk.place_at(offset)
    return place.page or place.slide


def _number(raw: str | None) -> int | None:
    """A query parameter that must be a small positive whole number; None for anything else."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 7:
        return None
    return int(raw)


def viewer_panel(here: Here) -> None:
    """The view the address asks for, when it asks for one; each refusal says why."""
    params = st.query_params
    if "doc" not in params:
        return
    # the link's collection, not the selector's: a link to one the person may not read says so
    here = dataclasses.replace(here, collection=params.get("collection") or DEFAULT)
    with st.container(border=True, key="viewer"):
        source = params.get("doc", "")
        header = st.empty()
        chunk = _number(params.get("chunk"))
        try:
            shown = here.service.passage(
                here.caller, here.collection, source, -1 if chunk is None else chunk, _number(params.get("page"))
            )
        except PermissionDeniedError as error:  # the link's document is not named to someone who may not read it
            header.subheader("原文", anchor=False)
            st.warning(escape_markdown(str(error)))
        except RagError as error:
            header.subheader(f"原文: {source}", anchor=False)
            st.warning(escape_markdown(str(error)))
        else:
            header.subheader(f"原文: {source}", anchor=False)
            _show(here, shown)
        st.button("閉じる", key="close-view", on_click=close_view)


def _show(here: Here, shown: PassageView) -> None:
    document, chunk, view = shown.document, shown.chunk, shown.view
    if shown.problem and view is None and shown.problem == words.ORIGINAL_NOT_KEPT:
        st.warning(shown.problem)
        return
    st.caption(
        f"{escape_markdown(document.source)} ・ {escape_markdown(describe(chunk.place, chunk.place_end))}"
        f" ・ チャンク {chunk.chunk_index}"
    )
    if shown.problem:
        st.error(escape_markdown(shown.problem))
    elif isinstance(view, PageImage):
        _page_view(shown, view)
    elif isinstance(view, RowsView):
        for sheet in view.sheets:  # each sheet the passage runs over, named
            rows = [{"行": n, "内容": text, "該当": "●" if marked else ""} for n, text, marked in sheet.rows]
            if sheet.sheet:
                st.caption(f"シート {escape_markdown(sheet.sheet)}")
            st.table(rows)  # plain cells: escaped text, readable by a screen reader
    elif isinstance(view, SlideView):
        st.caption(f"スライド {view.slide}")
        st.markdown("  \n".join(_mark(line) if marked else escape_markdown(line) for line, marked in view.lines))
    elif isinstance(view, TextView):
        if view.place.heading:
            st.caption(escape_markdown(" > ".join(view.place.heading)))
        # a few lines either side, so that the passage shows without scrolling; the download has the rest
        with st.container(height=480, key="view-text"):
            st.markdown(
                escape_markdown(view.before)
                + ("  \n" if view.before else "")
                + _mark(view.passage)
                + ("  \n" if view.after else "")
                + escape_markdown(view.after)
            )
    st.markdown(f"[この箇所へのリンク]({link(document.source, chunk.chunk_index, shown.page)})")
    # read when clicked, not as the view is drawn: a download is audited when it happens
    st.download_button(
        "元のファイルをダウンロード",
        data=lambda: here.service.original(here.caller, here.collection, document.source).data,
        file_name=download_name(document.source),
        key="view-download",
        on_click="ignore",
    )


def download_name(source: str) -> str:
    """The file name a download is saved under: the document's own, without the folders it was found in."""
    return PurePosixPath(source).name or "document"


def _mark(text: str) -> str:
    """Passage text, marked: each line highlighted (Markdown's background colour, escaped inside)."""
    return "  \n".join(f":orange-background[{escape_markdown(line)}]" for line in text.split("\n") if line)


def _page_view(shown: PassageView, image: PageImage) -> None:
    document, chunk = shown.document, shown.chunk
    first = chunk.place.page or 1
    last = chunk.place_end.page or first
    before, after = st.columns(2)
    before.button(
        "前のページ",
        key="view-previous",
        disabled=image.page <= 1,
        on_click=open_view,
        args=(document.source, chunk.chunk_index, image.page - 1),
    )
    after.button(
        "次のページ",
        key="view-next",
        disabled=image.page >= image.pages,
        on_click=open_view,
        args=(document.source, chunk.chunk_index, image.page + 1),
    )
    if not first <= image.page <= last:
        st.caption(f"この箇所は {describe(chunk.place, chunk.place_end)} にあります。")
    elif image.boxes == 0:
        st.caption("このページでは箇所に印を付けられませんでした。")
    st.image(image.png, alt=image.alt, caption=image.alt, width=760)  # a page as large as a screen shows it
