"""Highlight terms from Japanese questions, and their places in passages."""

from __future__ import annotations

import itertools

import pytest

from pipelines.search.highlight import query_terms, term_spans


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("有給休暇は入社後いつから取れますか？", ["有給休暇", "入社後", "休暇", "入社", "有給", "社後", "給休"]),
        ("ＧＰＵサーバーの場所は？", ["サーバー", "GPU", "場所"]),
        ("ｶﾀｶﾅで書かれたﾃｷｽﾄ", ["カタカナ", "テキスト"]),
        ("Python 3.11 の使い方", ["Python", "3.11"]),
        ("それはどこですか", []),
        ("", []),
    ],
)
def test_query_terms(question: str, terms: list[str]) -> None:
    assert sorted(query_terms(question)) == sorted(terms)


def test_term_spans_prefer_longer_terms_and_never_overlap() -> None:
    text = "有給休暇は、入社して六か月後から取得できます。休暇の申請はGPU担当へ。"
    spans = term_spans(text, query_terms("有給休暇は入社後いつから取れますか？ gpu"))
    assert [text[a:b] for a, b in spans] == ["有給休暇", "入社", "休暇", "GPU"]
    assert all(b <= c for (_, b), (c, _) in itertools.pairwise(spans))


def test_no_terms_no_spans() -> None:
    assert term_spans("本文", []) == []
