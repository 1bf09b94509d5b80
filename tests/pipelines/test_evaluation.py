"""Evaluation: the metrics on hand-made cases, forced ranks through the real pipeline, bad files, the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from pipelines.evaluation import (
    Article,
    EvaluationError,
    Question,
    StsPair,
    answer_rank,
    evaluate_qa,
    evaluate_sts,
    load_qa,
    load_sts,
    pearson,
    spearman,
)
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import DEFAULT_FUSION, Hit
from pipelines.settings import Settings
from testkit.cli import run
from testkit.records import stored_chunk

SENTENCES = [
    "東京は日本の首都です。",
    "京都には古い寺が多い。",
    "富士山は日本一高い山です。",
    "吾輩は猫である。",
    "今日は雨が降っています。",
    "会議は午後三時から始まります。",
]


def hit(rank: int, text: str) -> Hit:
    return Hit(stored_chunk(text, "doc", rank - 1, version="h", chunk_id="h-c1"), rank, 0.5)


@pytest.mark.parametrize(
    ("x", "y", "expected_pearson", "expected_spearman"),
    [
        ([1, 2, 3, 4], [2, 4, 6, 8], 1.0, 1.0),
        ([1, 2, 3, 4], [8, 6, 4, 2], -1.0, -1.0),
        ([1, 2, 3, 4], [1, 4, 9, 16], 0.9843740386976972, 1.0),  # monotone but not linear
        ([1, 2, 2, 3], [1, 2, 3, 4], 0.9486832980505138, 0.9486832980505138),  # a tie: average ranks
    ],
)
def test_correlations_on_hand_made_values(
    x: list[float], y: list[float], expected_pearson: float, expected_spearman: float
) -> None:
    assert pearson(x, y) == pytest.approx(expected_pearson)
    assert spearman(x, y) == pytest.approx(expected_spearman)


def test_correlation_of_a_constant_is_an_error() -> None:
    with pytest.raises(EvaluationError, match="相関"):
        pearson([1, 1, 1], [1, 2, 3])


def test_sts_correlation_follows_the_labels(embedder: Embedder) -> None:
    """Labels set to the model's own cosines correlate perfectly; reversed, perfectly negatively."""
    pairs = [(a, b) for a in SENTENCES[:3] for b in SENTENCES[3:]]
    vectors = embedder.embed_queries(SENTENCES)
    cosine = {(a, b): float(vectors[SENTENCES.index(a)] @ vectors[SENTENCES.index(b)]) for a, b in pairs}
    agreeing = evaluate_sts(embedder, [StsPair(a, b, cosine[a, b]) for a, b in pairs])
    assert (agreeing.spearman, agreeing.pearson) == (pytest.approx(1.0), pytest.approx(1.0, abs=1e-5))
    assert agreeing.pairs == 9
    opposed = evaluate_sts(embedder, [StsPair(a, b, -cosine[a, b]) for a, b in pairs])
    assert opposed.spearman == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("texts", "answers", "rank"),
    [
        (["関係ない文", "答えはABC社です"], ["ＡＢＣ社"], 2),  # full-width answer, half-width text
        (["ｶﾀｶﾅの答え", "x"], ["カタカナ"], 1),  # half-width katakana in the passage
        (["一つ目", "二つ目", "正解は三つ目"], ["見つからない", "三つ目"], 3),  # any of several answers
        (["一つ目", "二つ目"], ["ない"], None),
        ([], ["何か"], None),
    ],
)
def test_answer_rank_matches_after_nfkc(texts: list[str], answers: list[str], rank: int | None) -> None:
    assert answer_rank([hit(i, t) for i, t in enumerate(texts, 1)], answers) == rank


@pytest.mark.slow
def test_qa_accuracy_with_forced_ranks(embedder: Embedder) -> None:
    """A question identical to an article is embedded to the same vector: its article comes first."""
    articles = [Article(f"記事{i}", text) for i, text in enumerate(SENTENCES)]
    questions = [
        Question("q1", SENTENCES[0], ("首都",)),
        Question("q2", SENTENCES[2], ("日本一高い", "富士山")),
        Question("q3", SENTENCES[3], ("吾輩",)),
        Question("q4", SENTENCES[4], ("答えはどこにもない",)),
    ]
    result = evaluate_qa(Settings(chunk_tokens=48, chunk_overlap=0), embedder, articles, questions, ks=(1, 5, 50))
    assert result.ranks == [1, 1, 1, None]
    assert result.topk == {1: 75.0, 5: 75.0, 50: 75.0}  # k = 50 is more than the 6 chunks
    assert result.mrr == pytest.approx(0.75)
    assert (result.questions, result.chunks, result.documents) == (4, 6, 6)
    assert result.embedding_seconds > 0


@pytest.mark.slow
def test_qa_accuracy_grows_with_k(embedder: Embedder) -> None:
    articles = [Article(f"記事{i}", text) for i, text in enumerate(SENTENCES)]
    questions = [Question(f"q{i}", "日本についての質問", (text[:4],)) for i, text in enumerate(SENTENCES)]
    result = evaluate_qa(Settings(chunk_tokens=48, chunk_overlap=0), embedder, articles, questions, ks=(1, 2, 3, 6))
    values = list(result.topk.values())
    assert values == sorted(values)
    assert result.topk[6] == 100.0  # every chunk is among the top 6
    assert result.topk[1] == pytest.approx(100.0 / 6)  # one question per article: exactly one is first
    assert result.mrr == pytest.approx(sum(1 / r for r in range(1, 7)) / 6)


def test_invalid_k_is_refused(embedder: Embedder) -> None:
    with pytest.raises(EvaluationError, match="k"):
        evaluate_qa(Settings(), embedder, [Article("a", "本文。")], [Question("q", "本文", ("本文",))], ks=(0,))


@pytest.mark.slow
def test_qa_searches_as_the_settings_say(embedder: Embedder) -> None:
    """The evaluation's searcher is built from the same settings as every face's: the mode is the setting's."""
    articles = [Article(f"記事{i}", text) for i, text in enumerate(SENTENCES)]
    questions = [Question("q", "ＸＹＺ", (SENTENCES[0][:4],))]  # shares no word with any article
    keyword = evaluate_qa(
        Settings(chunk_tokens=48, chunk_overlap=8, retrieval_mode="keyword"), embedder, articles, questions
    )
    dense = evaluate_qa(
        Settings(chunk_tokens=48, chunk_overlap=8, retrieval_mode="dense"), embedder, articles, questions
    )
    assert (keyword.mode, dense.mode) == ("keyword", "dense")
    assert keyword.ranks == [None]  # keyword search finds nothing without a shared word
    assert dense.ranks[0] is not None  # the nearest by meaning are always there


@pytest.mark.slow
def test_qa_fuses_with_the_settings_weight(embedder: Embedder) -> None:
    """RAG_KEYWORD_WEIGHT reaches the evaluation's searcher: 0 orders hybrid as dense, 1 as keyword."""
    articles = [Article(f"記事{i}", text) for i, text in enumerate(SENTENCES)]
    questions = [Question(str(i), text[:6] + "について", (text,)) for i, text in enumerate(SENTENCES)]
    chunks = {"chunk_tokens": 48, "chunk_overlap": 8, "chunk_context": False}

    def ranks(**settings: object) -> list[int | None]:
        return evaluate_qa(Settings(**chunks, **settings), embedder, articles, questions).ranks  # type: ignore[arg-type]

    assert Settings().keyword_weight == DEFAULT_FUSION.keyword_weight  # one default, in the setting and the rule
    dense, keyword = ranks(retrieval_mode="dense"), ranks(retrieval_mode="keyword")
    assert dense != keyword  # the random-weight model and BM25 disagree, so the weight shows
    assert ranks(retrieval_mode="hybrid", keyword_weight=0.0) == dense
    assert ranks(retrieval_mode="hybrid", keyword_weight=1.0) == keyword


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loaders_read_jsts_and_jsquad(tmp_path: Path) -> None:
    sts = write(
        tmp_path,
        "sts.json",
        '{"sentence1": "あ", "sentence2": "い", "label": 4.2}\n\n{"sentence1": "う", "sentence2": "え", "label": 0}\n',
    )
    assert load_sts(sts) == [StsPair("あ", "い", 4.2), StsPair("う", "え", 0.0)]
    squad = {
        "data": [
            {
                "title": "梅雨",
                "paragraphs": [
                    {
                        "context": "梅雨 [SEP] 梅雨は雨の多い時期。",
                        "qas": [
                            {
                                "id": "1",
                                "question": "梅雨とは",
                                "answers": [{"text": "雨の多い時期"}, {"text": "雨の多い時期"}],
                            }
                        ],
                    },
                    {"context": "梅雨 [SEP] 六月に多い。", "qas": [{"id": "2", "question": "いつ", "answers": []}]},
                ],
            }
        ]
    }
    articles, questions = load_qa(write(tmp_path, "qa.json", json.dumps(squad, ensure_ascii=False)))
    assert articles == [Article("梅雨", "梅雨は雨の多い時期。\n\n六月に多い。")]
    assert questions == [Question("1", "梅雨とは", ("雨の多い時期",))]  # the unanswerable one is skipped


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "見つかりません"),
        ("empty.json", "", "空です"),
        ("bad-line.json", '{"sentence1": "あ", "sentence2": "い", "label": 1}\nこれはJSONではない\n', "2 行目"),
        ("no-label.json", '{"sentence1": "あ", "sentence2": "い"}\n', "JSTS 形式ではありません"),
        ("one-pair.json", '{"sentence1": "あ", "sentence2": "い", "label": 1}\n', "2 組以上"),
        ("not-utf8.json", "SJIS", "UTF-8"),
    ],
)
def test_bad_sts_files_get_clear_errors(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content == "SJIS":
        path.write_bytes('{"sentence1": "あ"}'.encode("cp932"))
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(EvaluationError, match=message):
        load_sts(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2, 3]", "SQuAD/JSQuAD 形式ではありません"),
        ('{"data": [{"title": "t"}]}', "SQuAD/JSQuAD 形式ではありません"),
        ("{壊れた", "SQuAD/JSQuAD 形式ではありません"),
        ('{"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": []}]}]}', "質問が 1 つもありません"),
    ],
)
def test_bad_qa_files_get_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        load_qa(write(tmp_path, "qa.json", content))


@pytest.fixture
def qa_file(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    paragraphs = [
        {"context": f"記事{i} [SEP] {s}", "qas": [{"id": str(i), "question": s, "answers": [{"text": s[:5]}]}]}
        for i, s in enumerate(SENTENCES)
    ]
    data = {"data": [{"title": f"記事{i}", "paragraphs": [p]} for i, p in enumerate(paragraphs)]}
    return write(tmp_path, "qa.json", json.dumps(data, ensure_ascii=False))


@pytest.mark.slow
def test_cli_evaluate_qa_json_markdown_and_chart(qa_file: Path, tmp_path: Path) -> None:
    status, out, _ = run("evaluate", "qa", str(qa_file), "--json", "--chunk-tokens", "48", "--chunk-overlap", "0")
    assert status == 0
    result = json.loads(out)
    assert result["topk"] == {"1": 100.0, "5": 100.0, "10": 100.0, "50": 100.0}
    assert (result["mrr"], result["questions"], result["chunks"]) == (1.0, 6, 6)
    earlier = write(tmp_path, "earlier.json", json.dumps(result | {"label": "前回"}))
    chart = tmp_path / "chart.png"
    status, out, err = run(
        "evaluate", "qa", str(qa_file), "--markdown", "-k", "1", "3", "--chart", str(chart), "--compare", str(earlier)
    )
    assert status == 0
    assert out == "| top-1 | top-3 | MRR |\n| --- | --- | --- |\n| 100.0 | 100.0 | 1.000 |\n"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "グラフを保存しました" in err


@pytest.mark.slow
def test_cli_evaluate_sts(qa_file: Path, tmp_path: Path) -> None:
    lines = [
        json.dumps({"sentence1": a, "sentence2": b, "label": i}, ensure_ascii=False)
        for i, (a, b) in enumerate(itertools.pairwise(SENTENCES))
    ]
    path = write(tmp_path, "sts.json", "\n".join(lines))
    status, out, _ = run("evaluate", "sts", str(path), "--json")
    assert status == 0
    result = json.loads(out)
    assert set(result) >= {"spearman", "pearson"}
    assert all(-1.0 <= result[key] <= 1.0 and not math.isnan(result[key]) for key in ("spearman", "pearson"))
    status, out, _ = run("evaluate", "sts", str(path), "--markdown")
    assert out.startswith("| metric | value |\n| --- | --- |\n| Spearman | ")
    status, _, err = run("evaluate", "sts", str(tmp_path / "ない.json"))
    assert status == 2
    assert "見つかりません" in err
