"""Japanese chunking: sentence boundaries, packing by token count, overlap, over-long sentences, pages."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest

from ingest.chunking import chunk_text, split_sentences
from ingest.normalize import PagedText, join_pages
from pipelines.model.embedder import Embedder


def chars_plus_specials(text: str) -> int:
    """A stand-in token counter for the pure function: one token per character, plus <s> and </s>."""
    return len(text) + 2


# Pieces of two characters or a whole word, as a sentencepiece vocabulary has: a prefix's count is not its length.
_PIECE = re.compile(r"です|ます|した|東京|日本|[A-Za-z]+|[0-9]+|\s+|.", re.DOTALL)


def pieces_plus_specials(text: str) -> int:
    """A stand-in token counter that reads some pairs of characters and whole Latin words as one token."""
    return len(_PIECE.findall(text)) + 2


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def plain(text: str) -> PagedText:
    return PagedText.plain(text)


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


# What the chunker gave before it was made linear (issue 21), recorded by running it: the same text, offsets,
# pages and counts, with sentences, commas and spaces within budget and cuts between characters. Three cases
# ("crlf", "comma after the first sentence", "long comma sentences") differ from the recording where a
# sentence after the first was cut at the comma's offset plus the sentence's start instead of at the comma.
# The inputs of the recorded table, each chunked with both counters: (paged text, max tokens, overlap).
INPUTS: dict[str, tuple[PagedText, int, int]] = {
    "sentences": (
        plain("あいうえお。" * 10),
        20,
        0,
    ),
    "overlap": (
        plain("".join(f"文{i}です。" for i in range(8))),
        17,
        5,
    ),
    "paragraphs": (
        plain(normalize_sample()),
        30,
        8,
    ),
    "pages": (
        join_pages([(1, "一ページ目です。"), (2, "二ページ目です。"), (3, "三ページ目です。")]),
        22,
        0,
    ),
    "crlf": (
        join_pages(
            [
                (
                    1,
                    "東京は日本の首都であり、\r\n政治と経済の中心地です。\r\n\r\n京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます！",
                ),
                (2, "富士山は日本で最も高い山で、標高は三七七六メートルです？"),
            ]
        ),
        24,
        6,
    ),
    "commas": (
        plain("今日は、" + "とても" * 20 + "長い、文です。"),
        20,
        0,
    ),
    "comma after the first sentence": (
        plain("はい。あいうえおかきくけこ、さしすせそたちつてと、なにぬねの。"),
        14,
        0,
    ),
    "long comma sentences": (
        plain(
            "東京は日本の首都であり、政治と経済の中心地です。京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。"
        ),
        16,
        4,
    ),
    "long clause": (
        plain(
            "雨が降ったので、試合は翌週に延期されましたが選手たちは毎日の練習を欠かさず続けていましたので、監督は満足でした。"
        ),
        14,
        4,
    ),
    "spaces": (
        plain(
            "Retrieval augmented generation splits long documents into pieces that fit the model and searches them with vectors"
        ),
        12,
        3,
    ),
    "spaces in a long run": (
        plain("東京 大阪 名古屋 札幌 福岡 京都 神戸 横浜 川崎 さいたま 千葉 広島 仙台"),
        8,
        2,
    ),
    "characters": (
        plain("あ" * 100),
        10,
        0,
    ),
    "no ends": (
        plain(
            "吾輩は猫である名前はまだ無いどこで生れたかとんと見当がつかぬ何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している"
        ),
        10,
        2,
    ),
    "no ends, mixed": (
        plain(
            "会議の資料はPDFで配布し議事録はテキストファイルで保存してください社内規程によると有給休暇は入社6か月後から取得できます2024年4月1日"
        ),
        9,
        0,
    ),
}
RECORDED = [
    pytest.param(
        "sentences",
        chars_plus_specials,
        [
            ("あいうえお。あいうえお。あいうえお。", 0, 18, None, None, 20),
            ("あいうえお。あいうえお。あいうえお。", 18, 36, None, None, 20),
            ("あいうえお。あいうえお。あいうえお。", 36, 54, None, None, 20),
            ("あいうえお。", 54, 60, None, None, 8),
        ],
        id="sentences, chars",
    ),
    pytest.param(
        "sentences",
        pieces_plus_specials,
        [
            ("あいうえお。あいうえお。あいうえお。", 0, 18, None, None, 20),
            ("あいうえお。あいうえお。あいうえお。", 18, 36, None, None, 20),
            ("あいうえお。あいうえお。あいうえお。", 36, 54, None, None, 20),
            ("あいうえお。", 54, 60, None, None, 8),
        ],
        id="sentences, pieces",
    ),
    pytest.param(
        "overlap",
        chars_plus_specials,
        [
            ("文0です。文1です。文2です。", 0, 15, None, None, 17),
            ("文2です。文3です。文4です。", 10, 25, None, None, 17),
            ("文4です。文5です。文6です。", 20, 35, None, None, 17),
            ("文6です。文7です。", 30, 40, None, None, 12),
        ],
        id="overlap, chars",
    ),
    pytest.param(
        "overlap",
        pieces_plus_specials,
        [
            ("文0です。文1です。文2です。", 0, 15, None, None, 14),
            ("文2です。文3です。文4です。", 10, 25, None, None, 14),
            ("文4です。文5です。文6です。", 20, 35, None, None, 14),
            ("文6です。文7です。", 30, 40, None, None, 10),
        ],
        id="overlap, pieces",
    ),
    pytest.param(
        "paragraphs",
        chars_plus_specials,
        [
            ("吾輩は猫である。名前はまだ無い。", 0, 16, None, None, 18),
            ("名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。", 8, 34, None, None, 28),
            ("何でも薄暗いじめじめした所でニャーニャー泣いていた事だけ", 36, 64, None, None, 30),
            ("は記憶している。", 64, 72, None, None, 10),
        ],
        id="paragraphs, chars",
    ),
    pytest.param(
        "paragraphs",
        pieces_plus_specials,
        [
            ("吾輩は猫である。名前はまだ無い。", 0, 16, None, None, 18),
            ("名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。", 8, 34, None, None, 28),
            ("何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは", 36, 65, None, None, 30),
            ("記憶している。", 65, 72, None, None, 9),
        ],
        id="paragraphs, pieces",
    ),
    pytest.param(
        "pages",
        chars_plus_specials,
        [
            ("一ページ目です。\n\n二ページ目です。", 0, 18, 1, 2, 20),
            ("三ページ目です。", 20, 28, 3, 3, 10),
        ],
        id="pages, chars",
    ),
    pytest.param(
        "pages",
        pieces_plus_specials,
        [
            ("一ページ目です。\n\n二ページ目です。", 0, 18, 1, 2, 17),
            ("三ページ目です。", 20, 28, 3, 3, 9),
        ],
        id="pages, pieces",
    ),
    pytest.param(
        "crlf",
        chars_plus_specials,
        [
            ("東京は日本の首都であり、", 0, 12, 1, 1, 14),
            ("政治と経済の中心地です。", 12, 24, 1, 1, 14),
            ("京都には古い寺や神社が多く、", 26, 40, 1, 1, 16),
            ("毎年たくさんの観光客が訪れます!", 40, 56, 1, 1, 18),
            ("富士山は日本で最も高い山で、", 58, 72, 2, 2, 16),
            ("標高は三七七六メートルです?", 72, 86, 2, 2, 16),
        ],
        id="crlf, chars",
    ),
    pytest.param(
        "crlf",
        pieces_plus_specials,
        [
            ("東京は日本の首都であり、政治と経済の中心地です。", 0, 24, 1, 1, 23),
            ("京都には古い寺や神社が多く、", 26, 40, 1, 1, 16),
            ("毎年たくさんの観光客が訪れます!", 40, 56, 1, 1, 17),
            ("富士山は日本で最も高い山で、", 58, 72, 2, 2, 15),
            ("標高は三七七六メートルです?", 72, 86, 2, 2, 15),
        ],
        id="crlf, pieces",
    ),
    pytest.param(
        "commas",
        chars_plus_specials,
        [
            ("今日は、", 0, 4, None, None, 6),
            ("とてもとてもとてもとてもとてもとても", 4, 22, None, None, 20),
            ("とてもとてもとてもとてもとてもとても", 22, 40, None, None, 20),
            ("とてもとてもとてもとてもとてもとても", 40, 58, None, None, 20),
            ("とてもとても長い、文です。", 58, 71, None, None, 15),
        ],
        id="commas, chars",
    ),
    pytest.param(
        "commas",
        pieces_plus_specials,
        [
            ("今日は、", 0, 4, None, None, 6),
            ("とてもとてもとてもとてもとてもとても", 4, 22, None, None, 20),
            ("とてもとてもとてもとてもとてもとても", 22, 40, None, None, 20),
            ("とてもとてもとてもとてもとてもとても", 40, 58, None, None, 20),
            ("とてもとても長い、文です。", 58, 71, None, None, 14),
        ],
        id="commas, pieces",
    ),
    pytest.param(
        "comma after the first sentence",
        chars_plus_specials,
        [
            ("はい。", 0, 3, None, None, 5),
            ("あいうえおかきくけこ、", 3, 14, None, None, 13),
            ("さしすせそたちつてと、", 14, 25, None, None, 13),
            ("なにぬねの。", 25, 31, None, None, 8),
        ],
        id="comma after the first sentence, chars",
    ),
    pytest.param(
        "comma after the first sentence",
        pieces_plus_specials,
        [
            ("はい。", 0, 3, None, None, 5),
            ("あいうえおかきくけこ、", 3, 14, None, None, 13),
            ("さしすせそたちつてと、", 14, 25, None, None, 13),
            ("なにぬねの。", 25, 31, None, None, 8),
        ],
        id="comma after the first sentence, pieces",
    ),
    pytest.param(
        "long comma sentences",
        chars_plus_specials,
        [
            ("東京は日本の首都であり、", 0, 12, None, None, 14),
            ("政治と経済の中心地です。", 12, 24, None, None, 14),
            ("京都には古い寺や神社が多く、", 24, 38, None, None, 16),
            ("毎年たくさんの観光客が訪れま", 38, 52, None, None, 16),
            ("す。", 52, 54, None, None, 4),
            ("会議の資料はPDFで配布し、", 54, 68, None, None, 16),
            ("議事録はテキストファイルで保", 68, 82, None, None, 16),
            ("存してください。", 82, 90, None, None, 10),
        ],
        id="long comma sentences, chars",
    ),
    pytest.param(
        "long comma sentences",
        pieces_plus_specials,
        [
            ("東京は日本の首都であり、", 0, 12, None, None, 12),
            ("政治と経済の中心地です。", 12, 24, None, None, 13),
            ("京都には古い寺や神社が多く、", 24, 38, None, None, 16),
            ("毎年たくさんの観光客が訪れます", 38, 53, None, None, 16),
            ("。会議の資料はPDFで配布し、", 53, 68, None, None, 15),
            ("議事録はテキストファイルで保", 68, 82, None, None, 16),
            ("存してください。", 82, 90, None, None, 10),
        ],
        id="long comma sentences, pieces",
    ),
    pytest.param(
        "long clause",
        chars_plus_specials,
        [
            ("雨が降ったので、", 0, 8, None, None, 10),
            ("試合は翌週に延期されまし", 8, 20, None, None, 14),
            ("たが選手たちは毎日の練習", 20, 32, None, None, 14),
            ("を欠かさず続けていました", 32, 44, None, None, 14),
            ("ので、監督は満足でした。", 44, 56, None, None, 14),
        ],
        id="long clause, chars",
    ),
    pytest.param(
        "long clause",
        pieces_plus_specials,
        [
            ("雨が降ったので、", 0, 8, None, None, 10),
            ("試合は翌週に延期されました", 8, 21, None, None, 14),
            ("が選手たちは毎日の練習を", 21, 33, None, None, 14),
            ("欠かさず続けていましたので", 33, 46, None, None, 14),
            ("、監督は満足でした。", 46, 56, None, None, 11),
        ],
        id="long clause, pieces",
    ),
    pytest.param(
        "spaces",
        chars_plus_specials,
        [
            ("Retrieval", 0, 9, None, None, 11),
            ("augmented", 10, 19, None, None, 11),
            ("generation", 20, 30, None, None, 12),
            ("splits", 31, 37, None, None, 8),
            ("long", 38, 42, None, None, 6),
            ("documents", 43, 52, None, None, 11),
            ("into", 53, 57, None, None, 6),
            ("pieces", 58, 64, None, None, 8),
            ("that fit", 65, 73, None, None, 10),
            ("fit the", 70, 77, None, None, 9),
            ("the model", 74, 83, None, None, 11),
            ("and", 84, 87, None, None, 5),
            ("searches", 88, 96, None, None, 10),
            ("them with", 97, 106, None, None, 11),
            ("vectors", 107, 114, None, None, 9),
        ],
        id="spaces, chars",
    ),
    pytest.param(
        "spaces",
        pieces_plus_specials,
        [
            ("Retrieval augmented generation splits long", 0, 42, None, None, 11),
            ("generation splits long documents into", 20, 57, None, None, 11),
            ("long documents into pieces that", 38, 69, None, None, 11),
            ("into pieces that fit the", 53, 77, None, None, 11),
            ("that fit the model and", 65, 87, None, None, 11),
            ("the model and searches them", 74, 101, None, None, 11),
            ("and searches them with vectors", 84, 114, None, None, 11),
        ],
        id="spaces, pieces",
    ),
    pytest.param(
        "spaces in a long run",
        chars_plus_specials,
        [
            ("東京 大阪", 0, 5, None, None, 7),
            ("大阪 名古屋", 3, 9, None, None, 8),
            ("札幌 福岡", 10, 15, None, None, 7),
            ("福岡 京都", 13, 18, None, None, 7),
            ("京都 神戸", 16, 21, None, None, 7),
            ("神戸 横浜", 19, 24, None, None, 7),
            ("横浜 川崎", 22, 27, None, None, 7),
            ("川崎", 25, 27, None, None, 4),
            ("さいたま", 28, 32, None, None, 6),
            ("千葉 広島", 33, 38, None, None, 7),
            ("広島 仙台", 36, 41, None, None, 7),
        ],
        id="spaces in a long run, chars",
    ),
    pytest.param(
        "spaces in a long run",
        pieces_plus_specials,
        [
            ("東京 大阪", 0, 5, None, None, 6),
            ("大阪 名古屋", 3, 9, None, None, 8),
            ("札幌 福岡", 10, 15, None, None, 7),
            ("福岡 京都", 13, 18, None, None, 7),
            ("京都 神戸", 16, 21, None, None, 7),
            ("神戸 横浜", 19, 24, None, None, 7),
            ("横浜 川崎", 22, 27, None, None, 7),
            ("川崎", 25, 27, None, None, 4),
            ("さいたま", 28, 32, None, None, 6),
            ("千葉 広島", 33, 38, None, None, 7),
            ("広島 仙台", 36, 41, None, None, 7),
        ],
        id="spaces in a long run, pieces",
    ),
    pytest.param(
        "characters",
        chars_plus_specials,
        [
            ("ああああああああ", 0, 8, None, None, 10),
            ("ああああああああ", 8, 16, None, None, 10),
            ("ああああああああ", 16, 24, None, None, 10),
            ("ああああああああ", 24, 32, None, None, 10),
            ("ああああああああ", 32, 40, None, None, 10),
            ("ああああああああ", 40, 48, None, None, 10),
            ("ああああああああ", 48, 56, None, None, 10),
            ("ああああああああ", 56, 64, None, None, 10),
            ("ああああああああ", 64, 72, None, None, 10),
            ("ああああああああ", 72, 80, None, None, 10),
            ("ああああああああ", 80, 88, None, None, 10),
            ("ああああああああ", 88, 96, None, None, 10),
            ("ああああ", 96, 100, None, None, 6),
        ],
        id="characters, chars",
    ),
    pytest.param(
        "characters",
        pieces_plus_specials,
        [
            ("ああああああああ", 0, 8, None, None, 10),
            ("ああああああああ", 8, 16, None, None, 10),
            ("ああああああああ", 16, 24, None, None, 10),
            ("ああああああああ", 24, 32, None, None, 10),
            ("ああああああああ", 32, 40, None, None, 10),
            ("ああああああああ", 40, 48, None, None, 10),
            ("ああああああああ", 48, 56, None, None, 10),
            ("ああああああああ", 56, 64, None, None, 10),
            ("ああああああああ", 64, 72, None, None, 10),
            ("ああああああああ", 72, 80, None, None, 10),
            ("ああああああああ", 80, 88, None, None, 10),
            ("ああああああああ", 88, 96, None, None, 10),
            ("ああああ", 96, 100, None, None, 6),
        ],
        id="characters, pieces",
    ),
    pytest.param(
        "no ends",
        chars_plus_specials,
        [
            ("吾輩は猫である名", 0, 8, None, None, 10),
            ("前はまだ無いどこ", 8, 16, None, None, 10),
            ("で生れたかとんと", 16, 24, None, None, 10),
            ("見当がつかぬ何で", 24, 32, None, None, 10),
            ("も薄暗いじめじめ", 32, 40, None, None, 10),
            ("した所でニャーニ", 40, 48, None, None, 10),
            ("ャー泣いていた事", 48, 56, None, None, 10),
            ("だけは記憶してい", 56, 64, None, None, 10),
            ("る", 64, 65, None, None, 3),
        ],
        id="no ends, chars",
    ),
    pytest.param(
        "no ends",
        pieces_plus_specials,
        [
            ("吾輩は猫である名", 0, 8, None, None, 10),
            ("前はまだ無いどこ", 8, 16, None, None, 10),
            ("で生れたかとんと", 16, 24, None, None, 10),
            ("見当がつかぬ何で", 24, 32, None, None, 10),
            ("も薄暗いじめじめ", 32, 40, None, None, 10),
            ("した所でニャーニャ", 40, 49, None, None, 10),
            ("ー泣いていた事だ", 49, 57, None, None, 10),
            ("けは記憶している", 57, 65, None, None, 10),
        ],
        id="no ends, pieces",
    ),
    pytest.param(
        "no ends, mixed",
        chars_plus_specials,
        [
            ("会議の資料はP", 0, 7, None, None, 9),
            ("DFで配布し議", 7, 14, None, None, 9),
            ("事録はテキスト", 14, 21, None, None, 9),
            ("ファイルで保存", 21, 28, None, None, 9),
            ("してください社", 28, 35, None, None, 9),
            ("内規程によると", 35, 42, None, None, 9),
            ("有給休暇は入社", 42, 49, None, None, 9),
            ("6か月後から取", 49, 56, None, None, 9),
            ("得できます20", 56, 63, None, None, 9),
            ("24年4月1日", 63, 70, None, None, 9),
        ],
        id="no ends, mixed, chars",
    ),
    pytest.param(
        "no ends, mixed",
        pieces_plus_specials,
        [
            ("会議の資料はPDF", 0, 9, None, None, 9),
            ("で配布し議事録", 9, 16, None, None, 9),
            ("はテキストファ", 16, 23, None, None, 9),
            ("イルで保存して", 23, 30, None, None, 9),
            ("ください社内規", 30, 37, None, None, 9),
            ("程によると有給", 37, 44, None, None, 9),
            ("休暇は入社6か", 44, 51, None, None, 9),
            ("月後から取得で", 51, 58, None, None, 9),
            ("きます2024年4月1", 58, 69, None, None, 9),
            ("日", 69, 70, None, None, 3),
        ],
        id="no ends, mixed, pieces",
    ),
]


@pytest.mark.parametrize(("name", "count", "expected"), RECORDED)
def test_chunks_are_the_recorded_ones(
    name: str, count: Callable[[str], int], expected: list[tuple[str, int, int, int | None, int | None, int]]
) -> None:
    paged, max_tokens, overlap = INPUTS[name]
    chunks = chunk_text(paged, count, max_tokens, overlap)
    assert [(c.text, c.start, c.end, c.page, c.page_end, c.tokens) for c in chunks] == expected


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


def characters_counted(text: str) -> int:
    """How many characters the chunker gives the token counter to chunk ``text`` (64 tokens, overlap 16)."""
    counted = 0

    def counting(piece: str) -> int:
        nonlocal counted
        counted += len(piece)
        return chars_plus_specials(piece)

    chunk_text(plain(text), counting, max_tokens=64, overlap_tokens=16)
    return counted


@pytest.mark.parametrize(
    "unit",
    ["吾輩は猫である名前はまだ無い", "、", "」", "!", ".", "a.", "あ ", "、 "],
    ids=["no ends", "commas", "brackets", "exclamations", "dots", "a.", "words", "commas and spaces"],
)
def test_chunking_a_run_without_sentence_ends_is_linear(unit: str) -> None:
    """Issue 21: a run that has to be cut costs about the same per character as any text.

    Counted by the characters given to the token counter, not timed: counting or searching the rest of the
    run at every cut gives 16 times as much for 4 times the text, and a few counts per unit where units are
    short would give dozens of characters counted per character.
    """
    small, large = (unit * (n // len(unit)) for n in (4_000, 16_000))
    counted = characters_counted(large)
    assert counted <= 5 * characters_counted(small)
    assert counted <= 12 * len(large)


@pytest.mark.parametrize("unit", ["吾輩は猫である名前はまだ無い", "、", "」", "あ "])
def test_a_run_is_cut_into_the_longest_pieces_the_model_tokenizer_fits(embedder: Embedder, unit: str) -> None:
    """With the model's own tokenizer: every piece fits, nothing is lost, and one more character would not fit."""
    text = unit * (3_000 // len(unit))
    chunks = chunk_text(plain(text), embedder.count_tokens, max_tokens=40)
    assert "".join(text[c.start : c.end] for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert all(c.tokens == embedder.count_tokens(c.text) <= 40 for c in chunks)
    if " " not in unit:  # else chunks are packed words, not pieces cut between characters
        assert all(embedder.count_tokens(text[c.start : c.end + 1]) > 40 for c in chunks[:-1])
