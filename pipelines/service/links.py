"""Where a passage opens in the page's viewer: the query parameters the page reads, and the link other faces give out."""

from __future__ import annotations

import urllib.parse

from pipelines.store.collections import DEFAULT

VIEWER_PARAMS = ("doc", "chunk", "page", "collection")
"""The page's query parameters of a passage's view (page/viewer.py): document, chunk, page or slide, collection."""


def viewer_params(collection: str, source: str, chunk: int, page: int | None) -> dict[str, str]:
    """The query parameters that address a passage's view (its collection unless it is the default)."""
    return {
        "doc": source,
        "chunk": str(chunk),
        **({"page": str(page)} if page else {}),
        **({"collection": collection} if collection != DEFAULT else {}),
    }


def viewer_link(page_url: str, collection: str, source: str, chunk: int, page: int | None) -> str | None:
    """The link that opens a passage's view on the page at ``page_url`` (``RAG_PAGE_URL``; None without one)."""
    if not page_url:
        return None
    base = page_url.split("?", 1)[0].split("#", 1)[0]
    return f"{base}?{urllib.parse.urlencode(viewer_params(collection, source, chunk, page))}"
