"""Evaluation through the product's own pipeline: JSTS-style similarity, JSQuAD-style retrieval, and the query log.

The GLuCoSE model card reports Spearman/Pearson on JSTS and top-k retrieval accuracy (the share of
questions with an answer string in one of the top k passages, as in the DPR paper). These functions
measure the same things for whatever embedder and chunking the product is configured with, and
top-k on a team's own questions: those whose cards got 👍 in the query log, each liked card's chunk
being an answer, searched again in the product's store as it is now.
"""

from __future__ import annotations

import json
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import RagError
from pipelines.model.embedder import Progress, TextEmbedder
from pipelines.search.retrieval import Hit
from pipelines.service.compose import Pipelines, build
from pipelines.service.querylog import JudgedQuestion
from pipelines.settings import Settings
from pipelines.store.chroma import ChromaStore
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer

DEFAULT_KS = (1, 5, 10, 50)
_JAPANESE_FONTS = ("IPAexGothic", "IPAGothic", "IPAPGothic", "Noto Sans CJK JP", "Noto Sans JP", "TakaoGothic")


class EvaluationError(RagError):
    """An evaluation file that cannot be read: missing, empty, or not in the expected format."""


# Data --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StsPair:
    sentence1: str
    sentence2: str
    label: float


@dataclass(frozen=True)
class Article:
    """A document of the QA corpus: its title (the document name) and its paragraphs joined."""

    title: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"評価ファイル「{path}」が見つかりません。") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(
            f"評価ファイル「{path}」を読めません（{error}）。UTF-8 の JSON にしてください。"
        ) from None
    if not text.strip():
        raise EvaluationError(f"評価ファイル「{path}」が空です。")
    return text


def load_sts(path: Path) -> list[StsPair]:
    """Pairs from a JSTS-format file: JSON lines with ``sentence1``, ``sentence2`` and a numeric ``label``."""
    pairs = []
    for number, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(StsPair(str(row["sentence1"]), str(row["sentence2"]), float(row["label"])))
        except (ValueError, KeyError, TypeError) as error:
            raise EvaluationError(
                f"{path} の {number} 行目が JSTS 形式ではありません（{type(error).__name__}: {error}）。"
                '各行は {"sentence1": …, "sentence2": …, "label": 数値} の JSON にしてください。'
            ) from None
    if len(pairs) < 2:
        raise EvaluationError(f"{path}: 相関を計算するには 2 組以上の文のペアが必要です（{len(pairs)} 組）。")
    return pairs


def load_qa(path: Path) -> tuple[list[Article], list[Question]]:
    """Articles and questions from a SQuAD/JSQuAD-format file.

    Each article becomes one document, its paragraphs joined by blank lines; JSQuAD's ``"title [SEP] "``
    prefix of every paragraph is dropped. Questions without an answer (SQuAD 2's impossible ones) are
    skipped: they cannot be scored.
    """
    try:
        data = json.loads(_read(path))["data"]
        articles, questions = [], []
        for article in data:
            title = str(article["title"])
            paragraphs = [str(p["context"]).split("[SEP]", 1)[-1].strip() for p in article["paragraphs"]]
            articles.append(Article(title, "\n\n".join(paragraphs)))
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = tuple(dict.fromkeys(str(a["text"]) for a in qa.get("answers", []) if a["text"]))
                    if answers:
                        questions.append(Question(str(qa["id"]), str(qa["question"]), answers))
    except (ValueError, KeyError, TypeError) as error:
        raise EvaluationError(
            f"{path} が SQuAD/JSQuAD 形式ではありません（{type(error).__name__}: {error}）。"
            '{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers"}]}]}]} の形にしてください。'
        ) from None
    if not questions:
        raise EvaluationError(f"{path}: 答えのある質問が 1 つもありません。")
    return articles, questions


# Metrics -----------------------------------------------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties sharing their average rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="mergesort")
    position = np.empty(len(values), dtype=np.intp)
    position[order] = np.arange(len(values))
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = starts.cumsum()[position]  # 1-based index of each value's tie group
    bounds = np.r_[np.nonzero(starts)[0], len(values)]
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson's correlation coefficient."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denominator == 0.0:
        raise EvaluationError("値がすべて同じため相関を計算できません。")
    return float((a * b).sum() / denominator)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation coefficient (Pearson's on average ranks)."""
    return pearson(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def answer_rank(hits: Sequence[Hit], answers: Sequence[str]) -> int | None:
    """The rank of the first hit containing one of the answers (both NFKC-normalised), or None."""
    wanted = [_nfkc(a) for a in answers]
    for hit in hits:
        text = _nfkc(hit.chunk.text)
        if any(answer in text for answer in wanted):
            return hit.rank
    return None


# Runs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StsResult:
    spearman: float
    pearson: float
    pairs: int
    seconds: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "sts",
            "spearman": self.spearman,
            "pearson": self.pearson,
            "pairs": self.pairs,
            "seconds": self.seconds,
            "model": self.model,
        }


@dataclass(frozen=True)
class QaResult:
    topk: dict[int, float]
    mrr: float
    questions: int
    chunks: int
    documents: int
    questions_per_second: float
    embedding_seconds: float
    seconds: float
    model: str
    chunk_tokens: int
    chunk_overlap: int
    mode: str = "hybrid"
    ranks: list[int | None] = field(repr=False, default_factory=list)
    # from the query log: the judged questions left out because none of their liked chunks is stored any more
    left_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "qa",
            "topk": {str(k): v for k, v in self.topk.items()},
            "mrr": self.mrr,
            "questions": self.questions,
            "chunks": self.chunks,
            "documents": self.documents,
            "questions_per_second": self.questions_per_second,
            "embedding_seconds": self.embedding_seconds,
            "seconds": self.seconds,
            "model": self.model,
            "chunk_tokens": self.chunk_tokens,
            "chunk_overlap": self.chunk_overlap,
            "mode": self.mode,
            "left_out": self.left_out,
        }


def evaluate_sts(embedder: TextEmbedder, pairs: Sequence[StsPair], progress: Progress | None = None) -> StsResult:
    """Correlation of the cosine similarity of each pair's embeddings with its gold label."""
    started = time.perf_counter()
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    vectors = embedder.embed_queries(sentences, progress)
    index = {s: i for i, s in enumerate(sentences)}
    cosines = [float(vectors[index[p.sentence1]] @ vectors[index[p.sentence2]]) for p in pairs]
    labels = [p.label for p in pairs]
    return StsResult(
        spearman=spearman(cosines, labels),
        pearson=pearson(cosines, labels),
        pairs=len(pairs),
        seconds=time.perf_counter() - started,
        model=embedder.model_name,
    )


FileStep = Callable[[str, int, int], None]
"""Called as ``step(what, done, total)`` while a QA run ingests articles and asks questions."""


def evaluate_qa(
    settings: Settings,
    embedder: TextEmbedder,
    articles: Sequence[Article],
    questions: Sequence[Question],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    step: FileStep | None = None,
) -> QaResult:
    """Top-k accuracy and MRR of the real ingest and search path on a fresh temporary store.

    The indexer and searcher are the product's, built from ``settings`` (chunking, retrieval mode,
    candidates, reranker) as every other face builds them.
    """
    if not ks or min(ks) < 1:
        raise EvaluationError(f"k は 1 以上の整数で指定してください（{list(ks)}）。")
    ks = sorted(set(ks))
    started = time.perf_counter()
    embedding_before = embedder.stats.seconds
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as scratch:
        store = ChromaStore.persistent(Path(scratch))
        parts = build(settings, embedder=embedder, store=store, keyword=KeywordIndex(SudachiAnalyzer()))
        for number, article in enumerate(articles, 1):
            parts.indexer.ingest_text(article.title, article.text)
            if step is not None:
                step("文書", number, len(articles))
        chunks = store.count()
        documents = len(store.documents())

        asked = time.perf_counter()

        def asking(done: int, total: int) -> None:
            if step is not None:
                step("質問", done, total)

        results = parts.searcher.search_many(
            [q.question for q in questions], max(ks), progress=asking, mode=settings.retrieval_mode
        )
        asking_seconds = time.perf_counter() - asked
        store.close()
    ranks = [answer_rank(hits, q.answers) for hits, q in zip(results, questions, strict=True)]
    return _qa_result(
        ranks,
        ks,
        settings,
        embedder,
        chunks=chunks,
        documents=documents,
        asking_seconds=asking_seconds,
        embedding_seconds=embedder.stats.seconds - embedding_before,
        seconds=time.perf_counter() - started,
    )


def _qa_result(
    ranks: list[int | None],
    ks: Sequence[int],
    settings: Settings,
    embedder: TextEmbedder,
    *,
    chunks: int,
    documents: int,
    asking_seconds: float,
    embedding_seconds: float,
    seconds: float,
    left_out: int = 0,
) -> QaResult:
    found = [r for r in ranks if r is not None]
    return QaResult(
        topk={k: 100.0 * sum(1 for r in found if r <= k) / len(ranks) for k in ks},
        mrr=sum(1.0 / r for r in found) / len(ranks),
        questions=len(ranks),
        chunks=chunks,
        documents=documents,
        questions_per_second=len(ranks) / asking_seconds if asking_seconds else 0.0,
        embedding_seconds=embedding_seconds,
        seconds=seconds,
        model=embedder.model_name,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        mode=settings.retrieval_mode,
        ranks=ranks,
        left_out=left_out,
    )


def chunk_rank(hits: Sequence[Hit], chunk_ids: Sequence[str]) -> int | None:
    """The rank of the first hit that is one of ``chunk_ids``, or None."""
    wanted = set(chunk_ids)
    return next((hit.rank for hit in hits if hit.chunk_id in wanted), None)


def evaluate_log(
    parts: Pipelines,
    judged: Sequence[JudgedQuestion],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    step: FileStep | None = None,
) -> QaResult:
    """Top-k accuracy and MRR on the questions whose cards got 👍 (``QueryLog.judged_questions``).

    Each question is searched again in the product's store with today's settings; it counts as
    found at the rank of the first of its liked chunks. A question none of whose liked chunks is
    stored any more (its document was replaced or deleted) is left out and counted in ``left_out``.
    """
    if not ks or min(ks) < 1:
        raise EvaluationError(f"k は 1 以上の整数で指定してください（{list(ks)}）。")
    if not judged:
        raise EvaluationError(
            "質問の記録に 👍 の付いたカードがありません。ページの会話で、正しい箇所のカードに 👍 を付けてください"
            "（記録は RAG_QUERY_LOG=on のときだけ残ります）。"
        )
    ks = sorted(set(ks))
    started = time.perf_counter()
    embedder = parts.embedder
    stored = parts.store.chunks_by_id([c for q in judged for c in q.chunk_ids])
    kept = [q for q in judged if any(c in stored for c in q.chunk_ids)]
    if not kept:
        raise EvaluationError(
            f"👍 の付いた {len(judged)} 件の質問のカードは、どれも今の文書にありません（文書が置き換えられたか、削除されました）。"
        )
    embedding_before = embedder.stats.seconds

    def asking(done: int, total: int) -> None:
        if step is not None:
            step("質問", done, total)

    asked = time.perf_counter()
    results = parts.searcher.search_many(
        [q.question for q in kept], max(ks), progress=asking, mode=parts.settings.retrieval_mode
    )
    asking_seconds = time.perf_counter() - asked
    ranks = [chunk_rank(hits, q.chunk_ids) for hits, q in zip(results, kept, strict=True)]
    return _qa_result(
        ranks,
        ks,
        parts.settings,
        embedder,
        chunks=parts.store.count(),
        documents=len(parts.store.documents()),
        asking_seconds=asking_seconds,
        embedding_seconds=embedder.stats.seconds - embedding_before,
        seconds=time.perf_counter() - started,
        left_out=len(judged) - len(kept),
    )


# Reports -----------------------------------------------------------------------------------------


def sts_table(result: StsResult, markdown: bool = False) -> str:
    rows = [("Spearman", f"{result.spearman:.4f}"), ("Pearson", f"{result.pearson:.4f}"), ("pairs", str(result.pairs))]
    if markdown:
        lines = ["| metric | value |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows)]
        return "\n".join(lines) + "\n"
    return f"model: {result.model}\n" + "".join(f"{a:<10}{b}\n" for a, b in rows)


def qa_table(result: QaResult, markdown: bool = False) -> str:
    heads = [f"top-{k}" for k in result.topk] + ["MRR"]
    values = [f"{v:.1f}" for v in result.topk.values()] + [f"{result.mrr:.3f}"]
    if markdown:
        return (
            "\n".join(["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads), "| " + " | ".join(values) + " |"])
            + "\n"
        )
    return (
        f"model: {result.model}  mode: {result.mode}  chunks: {result.chunk_tokens} tokens, overlap {result.chunk_overlap}\n"
        f"{result.documents} documents, {result.chunks} chunks, {result.questions} questions, "
        f"{result.questions_per_second:.1f} questions/s, embedding {result.embedding_seconds:.1f} s "
        f"of {result.seconds:.1f} s\n"
        + "  ".join(f"{h:>7}" for h in heads)
        + "\n"
        + "  ".join(f"{v:>7}" for v in values)
        + "\n"
    )


def save_chart(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """A PNG of top-k accuracy against k, one line per run (``QaResult.to_dict()`` or its JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Run labels may be Japanese: use a Japanese font when one is installed (fonts-ipafont-gothic,
    # fonts-noto-cjk); without one, the missing glyphs are drawn as boxes rather than failing.
    japanese = [f.name for f in font_manager.fontManager.ttflist if any(k in f.name for k in _JAPANESE_FONTS)]
    plt.rcParams["font.family"] = [*dict.fromkeys(japanese), "DejaVu Sans"]
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for run in runs:
        ks = sorted(int(k) for k in run["topk"])
        label = run.get("label") or f"{run['model']} ({run['chunk_tokens']}/{run['chunk_overlap']})"
        axes.plot(ks, [run["topk"][str(k)] for k in ks], marker="o", label=label)
    axes.set_xscale("log")
    every_k = sorted({int(k) for run in runs for k in run["topk"]})
    axes.set_xticks(every_k, [str(k) for k in every_k])
    axes.minorticks_off()
    axes.set_xlabel("k")
    axes.set_ylabel("top-k accuracy (%)")
    axes.set_ylim(0, 100)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        figure.tight_layout()
        figure.savefig(path)
    plt.close(figure)
