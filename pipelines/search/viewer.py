"""A passage where it stands in its original file: a PDF page drawn with the passage marked, or the text, rows or slide around it.

The page's dialog 「原文を開く」 asks ``view_for(kind)`` which view suits a file, then calls one of
``render_page`` (PDF and image pages, PNG bytes; ``pipelines.search.page_view``), ``document_view``
(text, Markdown, Word, HTML), ``rows_view`` (Excel, CSV) or ``slide_view`` (PowerPoint; these three in
``pipelines.search.text_views``). Each reads the original file again, as the indexer read it, so that
a chunk's ``char_start``/``char_end`` point into the same text. Everything returned is data: text,
numbers and PNG bytes made there, never HTML. Where a passage stands on a drawn page:
``pipelines.search.spans``.
"""

from __future__ import annotations

from typing import Literal

View = Literal["page", "rows", "slide", "text"]
"""How the dialog shows a passage: a drawn page, spreadsheet rows, a slide's lines, or the text around it."""

_VIEWS: dict[str, View] = {"pdf": "page", "image": "page", "xlsx": "rows", "csv": "rows", "pptx": "slide"}


def view_for(kind: str) -> View:
    """The view for a file of ``kind`` (``LoadedFile.kind``): "page" (pdf, image), "rows" (xlsx, csv),
    "slide" (pptx), "text" (any other)."""
    return _VIEWS.get(kind, "text")
