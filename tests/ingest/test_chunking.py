"""Japanese chunking: sentence boundaries, packing by token count, overlap, over-long sentences, pages."""

from __future__ import annotations

import itertools

import pytest

from ingest.chunking import chunk_text, split_sentences
from ingest.normalize import PagedText, join_pages
from pipelines.embedder import Embedder


def chars_plus_specials(text: str) -> int:
    """A stand-in token counter for the pure function: one token per character, plus <s> and </s>."""
    return len(text) + 2


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def plain(text: str) -> PagedText:
    return PagedText(text, (0,), (None,))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("一文目。二文目。", ["一文目。", "二文目。"]),
        ("本当?はい!そうです。", ["本当?", "はい!", "そうです。"]),
        ("本当？はい！", ["本当？", "はい！"]),
        ("えっ!?まさか。", ["えっ!?", "まさか。"]),
        ("「行くよ。」と言った。", ["「行くよ。」", "と言った。"]),
        ("『本当に？』（たぶん。）次へ。", ["『本当に？』", "（たぶん。）", "次へ。"]),
        ("改行で\n終わる行\n\n段落。", ["改行で\n", "終わる行\n\n", "段落。"]),
        ("Hello world. これは文。", ["Hello world. ", "これは文。"]),
        ("バージョン3.11を使う。", ["バージョン3.11を使う。"]),
        ("句点のない文", ["句点のない文"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


@pytest.mark.parametrize("text", ["一文目。二文目。\n三文目!?「四。」\n\n五", "句点なし", "。。。", "\n\n\n"])
def test_sentence_spans_cover_the_text_in_order(text: str) -> None:
    spans = split_sentences(text)
    assert "".join(text[a:b] for a, b in spans) == text
    assert all(a < b for a, b in spans)


def test_sentences_are_packed_up_to_the_budget() -> None:
    text = "あいうえお。" * 10  # ten sentences of 6 characters
    chunks = chunk_text(plain(text), chars_plus_specials, max_tokens=20)
    assert [c.text for c in chunks] == ["あいうえお。" * 3] * 3 + ["あいうえお。"]
    assert all(c.tokens == len(c.text) + 2 <= 20 for c in chunks)
    assert [c.index for c in chunks] == [0, 1, 2, 3]


def test_overlap_repeats_whole_sentences() -> None:
    text = "".join(f"文{i}です。" for i in range(8))  # sentences of 5 characters
    chunks = chunk_text(plain(text), chars_plus_specials, max_tokens=17, overlap_tokens=5)
    assert [c.text for c in chunks] == [
        "文0です。文1です。文2です。",
        "文2です。文3です。文4です。",
        "文4です。文5です。文6です。",
        "文6です。文7です。",
    ]


def test_chunks_cover_the_text_in_order_without_overlap() -> None:
    text = normalize_sample()
    chunks = chunk_text(plain(text), chars_plus_specials, max_tokens=30)
    assert "".join(text[c.start : c.end] for c in chunks).replace("\n", "") == text.replace("\n", "")
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))


def normalize_sample() -> str:
    return (
        "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。\n\n"
        "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。"
    )


def test_a_sentence_longer_than_the_budget_is_cut_at_commas_then_characters() -> None:
    long = "今日は、" + "とても" * 20 + "長い、文です。"
    chunks = chunk_text(plain(long), chars_plus_specials, max_tokens=20)
    assert "".join(c.text for c in chunks) == long  # nothing dropped
    assert all(c.tokens <= 20 for c in chunks)
    assert chunks[0].text.startswith("今日は、")


def test_no_commas_no_spaces_still_fits() -> None:
    long = "あ" * 100
    chunks = chunk_text(plain(long), chars_plus_specials, max_tokens=10)
    assert "".join(c.text for c in chunks) == long
    assert [len(c.text) for c in chunks] == [8] * 12 + [4]


def test_chunk_pages_come_from_the_page_offsets() -> None:
    paged = join_pages([(1, "一ページ目です。"), (2, "二ページ目です。"), (3, "三ページ目です。")])
    chunks = chunk_text(paged, chars_plus_specials, max_tokens=22)
    assert [(c.text, c.page, c.page_end) for c in chunks] == [
        ("一ページ目です。\n\n二ページ目です。", 1, 2),
        ("三ページ目です。", 3, 3),
    ]


def test_empty_and_blank_text_give_no_chunks() -> None:
    assert chunk_text(plain(""), chars_plus_specials, max_tokens=20) == []
    assert chunk_text(plain("\n\n  \n"), chars_plus_specials, max_tokens=20) == []


def test_invalid_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text(plain("あ"), chars_plus_specials, max_tokens=2)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_text(plain("あ"), chars_plus_specials, max_tokens=20, overlap_tokens=11)


def test_chunks_fit_the_model_tokenizer(embedder: Embedder) -> None:
    """With the model's own tokenizer, every chunk fits, special tokens included, and nothing is lost."""
    text = join_pages([(1, normalize_sample() * 30), (2, "ＡＢＣ全角と半角ｶﾀｶﾅ。" * 40)]).text
    chunks = chunk_text(plain(text), embedder.count_tokens, max_tokens=40, overlap_tokens=8)
    for chunk in chunks:
        assert chunk.tokens == embedder.count_tokens(chunk.text) <= 40
    covered = "".join(text[c.start : c.end] for c in chunks)
    for piece in ("吾輩は猫である。", "ABC全角と半角カタカナ。"):
        assert covered.count(piece) >= text.count(piece)


def test_huge_input_is_chunked() -> None:
    text = "これは長い文書の一文です。" * 50_000
    chunks = chunk_text(plain(text), chars_plus_specials, max_tokens=256, overlap_tokens=32)
    assert all(c.tokens <= 256 for c in chunks)
    assert chunks[-1].end == len(text)
