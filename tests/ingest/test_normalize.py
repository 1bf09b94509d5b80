"""Japanese normalisation: NFKC, control characters, line joining, paragraphs, pages."""

from __future__ import annotations

import pytest

from ingest.normalize import join_pages, normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # full-width ASCII becomes half-width, half-width katakana becomes full-width
        ("ＡＢＣ１２３", "ABC123"),
        ("ｶﾀｶﾅとﾊﾟﾋﾟﾌﾟ", "カタカナとパピプ"),
        ("全角スペース　の後", "全角スペース の後"),
        ("㈱と①と㍻", "(株)と1と平成"),
        # NUL bytes, zero-width spaces, BOMs and other controls disappear
        ("東\x00京\x00都", "東京都"),
        ("\ufeff先頭のBOM", "先頭のBOM"),
        ("ゼロ\u200b幅", "ゼロ幅"),
        # line ends: Windows, old Mac, Unicode separators
        ("一行目。\r\n二行目。", "一行目。\n二行目。"),
        ("一行目。\r二行目。", "一行目。\n二行目。"),
        ("一段落目。\u2029二段落目。", "一段落目。\n\n二段落目。"),
        # a sentence broken mid-line is joined with no space between Japanese characters
        ("東京は日本の首都であり、政治と経済の中心\n地です。", "東京は日本の首都であり、政治と経済の中心地です。"),
        ("これは\n途中で\n改行された文です。", "これは途中で改行された文です。"),
        ("行末に空白   \nがあっても", "行末に空白があっても"),
        # Latin words broken across lines keep one space; Latin next to Japanese gets none
        ("This is an English\nsentence.", "This is an English sentence."),
        ("バージョンは\nPython 3.11 です。", "バージョンはPython 3.11 です。"),
        # a line that ends a sentence keeps its line break
        ("一文目です。\n二文目です。", "一文目です。\n二文目です。"),
        ("本当ですか？\nはい！", "本当ですか?\nはい!"),
        ("「こんにちは。」\n次の行", "「こんにちは。」\n次の行"),
        ("以下のとおり：\n項目", "以下のとおり:\n項目"),
        # list items, headings, tables and indented paragraphs are not glued to their neighbours
        ("買うもの\n・りんご\n・みかん", "買うもの\n・りんご\n・みかん"),
        ("手順\n1. 開く\n2. 閉じる", "手順\n1. 開く\n2. 閉じる"),
        ("# 見出し\n本文です。", "# 見出し\n本文です。"),
        ("第3章 概要\n本章では", "第3章 概要\n本章では"),
        ("| 列1 | 列2 |\n| --- | --- |", "| 列1 | 列2 |\n| --- | --- |"),
        # a title or heading without a full stop keeps its own line before a longer sentence
        (
            "社内規程\n有給休暇は、入社して六か月が経過した社員に付与します。",
            "社内規程\n有給休暇は、入社して六か月が経過した社員に付与します。",
        ),
        ("第1条（目的）\n本規程は、社員の休暇について定める。", "第1条(目的)\n本規程は、社員の休暇について定める。"),
        (
            "ＧＰＵサーバー利用案内\nサーバー室はA棟3階にあり、入室には申請が必要です。",
            "GPUサーバー利用案内\nサーバー室はA棟3階にあり、入室には申請が必要です。",
        ),
        # ... but a short line that ends in hiragana or a comma, or a next line that starts as a
        # continuation, is mid-sentence
        (
            "申請書を提出\nしてください。必要な書類は別紙のとおりです。",
            "申請書を提出してください。必要な書類は別紙のとおりです。",
        ),
        ("国家公務員の\n試験に合格した者は、次の研修を受ける。", "国家公務員の試験に合格した者は、次の研修を受ける。"),
        (
            "東京、大阪\n名古屋の三都市で開催される会議について説明する。",
            "東京、大阪名古屋の三都市で開催される会議について説明する。",
        ),
        (
            "提出期限\n、すなわち今月末までに提出された書類を受け付ける。",
            "提出期限、すなわち今月末までに提出された書類を受け付ける。",
        ),
        ("前の段落の終わり\n　字下げした新しい段落", "前の段落の終わり\n\n字下げした新しい段落"),
        # paragraphs survive as one blank line, however many there were
        ("段落一。\n\n\n\n段落二。", "段落一。\n\n段落二。"),
        ("段落一。\n  \n\t\n段落二。", "段落一。\n\n段落二。"),
        ("途中で切れた\n\n段落", "途中で切れた\n\n段落"),
        # runs of spaces collapse, ends are trimmed
        ("  前後の空白  と　　連続 ", "前後の空白 と 連続"),
        ("", ""),
        ("\x00\n\n \u3000", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_is_idempotent() -> None:
    raw = "ＡＢＣの\r\n文書は、途中で\n改行されています。\n\n・項目\n　字下げ"
    once = normalize_text(raw)
    assert normalize_text(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # a short line and a next line of runs of spaces: the heading rule measures the line as it is kept
        ("あ/\nア  あ", "あ/ア あ"),
        ("社内規程\n全角　　空白を　挟む長い行です。", "社内規程\n全角 空白を 挟む長い行です。"),
        ("見出し\nこの  行  は", "見出しこの 行 は"),
    ],
)
def test_spaces_collapse_before_lines_are_judged(raw: str, expected: str) -> None:
    once = normalize_text(raw)
    assert once == expected
    assert normalize_text(once) == once


def test_normalize_huge_input_is_linear_enough() -> None:
    raw = "長い文書の一行で、句点がないまま続きます\n" * 20_000
    text = normalize_text(raw)
    assert "\n" not in text
    assert len(text) == len("長い文書の一行で、句点がないまま続きます") * 20_000


def test_join_pages_continues_a_sentence_over_a_page_break() -> None:
    paged = join_pages([(1, "一ページ目の文は次のページに\n"), (2, "続きます。\n新しい文。"), (3, "三ページ目。")])
    assert paged.text == "一ページ目の文は次のページに続きます。\n新しい文。\n\n三ページ目。"
    assert paged.page_at(0) == 1
    assert paged.page_at(paged.text.index("続きます")) == 2
    assert paged.page_at(paged.text.index("新しい文")) == 2
    assert paged.page_at(paged.text.index("三ページ目")) == 3


def test_join_pages_skips_empty_pages_and_keeps_numbers() -> None:
    paged = join_pages([(1, "表紙。"), (2, "  \n"), (3, "本文。")])
    assert paged.text == "表紙。\n\n本文。"
    assert paged.page_at(paged.text.index("本文")) == 3
    assert [p.page for p in paged.places] == [1, 3]


def test_join_pages_of_text_without_pages() -> None:
    paged = join_pages([(None, "テキストファイル。")])
    assert paged.text == "テキストファイル。"
    assert paged.page_at(3) is None


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped lines without 。", "pages on one line"])
def test_normalising_a_long_unbroken_sentence_is_linear(wrapped: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A paragraph hard-wrapped without a sentence end, or pages that join into one line, is read once:
    the characters that ``continues`` looks at grow with the text, not with its square."""
    from ingest import normalize

    looked: list[int] = []
    real = normalize.continues

    def counting(prev: str, nxt: str) -> bool:
        looked.append(len(prev) + min(len(nxt), 2 * normalize._HEADING_CHARS + 1))
        return real(prev, nxt)

    monkeypatch.setattr(normalize, "continues", counting)
    line = "これは句点のない長い文で改行で折り返されている"

    def cost(lines: int) -> int:
        looked.clear()
        if wrapped:
            text = normalize.normalize_text("\n".join([line] * lines))
        else:
            text = normalize.join_pages([(number, line) for number in range(1, lines + 1)]).text
        assert text == line * lines  # one sentence, nothing lost, no space between Japanese characters
        return sum(looked)

    small, large = cost(500), cost(2000)
    assert large <= 5 * small, (small, large)
    assert large <= 2000 * 600  # a bounded view of the line so far, not all of it
