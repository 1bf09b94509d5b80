"""Property tests (hypothesis): normalisation and chunking hold on any text, Japanese or not."""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import chunk_text, split_sentences
from ingest.normalize import PagedText, join_pages, normalize_text

# Random cases on a developer's machine, the same cases on CI (CI=true), as in test_fuzz.py: a new finding is a
# developer's to fix, never a reason for a submission to fail by chance.
settings.register_profile("properties", derandomize=bool(os.environ.get("CI")))
settings.load_profile("properties")

# Text made of what Japanese documents hold: kana, kanji, full- and half-width forms, sentence ends,
# brackets, line breaks of every kind, spaces, and now and then anything at all.
JAPANESE = st.sampled_from(
    [
        *list(
            "あいうえおかきくけこをんアイウエオｱｲｳｴｵ漢字日本語東京。、！？!?「」『』（）()ＡＢＣabc１２３123 \u3000\n\r\t\x00・-#|"
        ),
        "\r\n",
        "\n\n",
        "\u2028",
        "\ufeff",
        "\u200b",
        "㈱",
        "①",
        "\x0c",
    ]
)
TEXT = st.lists(st.one_of(JAPANESE, st.characters()), max_size=300).map("".join)


def count(text: str) -> int:
    return len(text) + 2


@given(TEXT)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_normalisation_is_idempotent_and_clean(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\x00" not in once
    assert "\r" not in once
    assert once == once.strip()
    assert "\n\n\n" not in once


@given(TEXT)
@settings(max_examples=300)
def test_sentences_cover_the_text(text: str) -> None:
    spans = split_sentences(text)
    assert "".join(text[a:b] for a, b in spans) == text


@given(st.lists(TEXT, min_size=1, max_size=4), st.integers(4, 40), st.data())
@settings(max_examples=200, deadline=None)
def test_chunks_cover_the_text_in_order_within_budget(pages: list[str], budget: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, budget // 2))
    paged = join_pages(list(enumerate(pages, 1)))
    chunks = chunk_text(paged, count, budget, overlap)
    text = paged.text
    assert all(c.tokens == count(c.text) <= budget for c in chunks)
    assert all(text[c.start : c.end] == c.text and c.text == c.text.strip() for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(a.start < b.start and a.end <= b.end for a, b in itertools.pairwise(chunks))
    # every non-blank character of the text is in some chunk
    covered = [False] * len(text)
    for chunk in chunks:
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    assert all(c.place in paged.places for c in chunks)


@given(TEXT)
@settings(max_examples=100)
def test_plain_text_chunking_never_crashes(text: str) -> None:
    paged = PagedText.plain(normalize_text(text))
    for chunk in chunk_text(paged, count, 16, 4):
        assert chunk.tokens <= 16


# A run with nowhere to cut but between characters; a kanji counts two tokens, so a prefix's count is not its
# length, though it never falls as the prefix grows.
KANJI = "漢字日本語東京"
RUN = st.text(alphabet="あいうえおかきくけこアイウエオ" + KANJI, min_size=1, max_size=400)


def uneven(text: str) -> int:
    return len(text) + sum(c in KANJI for c in text) + 2


@given(RUN, st.integers(4, 40))
@settings(max_examples=200, deadline=None)
def test_a_run_is_cut_into_the_longest_pieces_that_fit(text: str, budget: int) -> None:
    chunks = chunk_text(PagedText.plain(text), uneven, budget)
    assert "".join(c.text for c in chunks) == text
    assert all(c.tokens == uneven(c.text) <= budget for c in chunks)
    # one more character would not fit: each piece is the longest
    assert all(uneven(text[c.start : c.end + 1]) > budget for c in chunks[:-1])
