"""The precision policy: what an in-process embedder computes passages and questions in, and why.

float32 is the reference. A faster path is used only where it pays off and where, on fixed
calibration texts, it reproduces float32: every cosine ≥ 0.995 and the same nearest neighbours.

- passages: bfloat16 on a CPU that computes it natively (AVX512-BF16 or AMX), else float32;
- questions: one short text at a time, where reading the weights, not computing, is the cost: an
  int8 copy of the model (a quarter of float32's bytes) on a CPU, else as passages.

The verdict is a ``PrecisionChoice``, which every embedder exposes (a remote one says the server
decides), so that faces show it without knowing which embedder they have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipelines.choices import PRECISIONS, QUERY_PRECISIONS, Precision, QueryPrecision

# Texts whose token ids are checked against sentencepiece when a LUKE model loads: full-width and
# half-width forms, a character outside the vocabulary, and strings that look like special tokens.
TOKENIZER_CHECK_TEXTS = (
    "東京は日本の首都です。",
    "ＡＢＣ全角とｶﾀｶﾅ半角、１２３と123。",
    "𠮷野家の牛丼を食べた！本当に？",
    "文中の[MASK]や<s>や</s>や<mask>や<ent>はただの文字です。",
    "改行\nと\tタブ",
)
# Texts on which a faster precision must reproduce float32 before it is used: varied lengths and forms.
CALIBRATION_TEXTS = (
    *TOKENIZER_CHECK_TEXTS,
    "有給休暇は、入社して六か月が経過した社員に十日付与します。申請は上長に行ってください。",
    "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルと日本で最も高い。",
    "本規程は2024年4月1日から施行する。",
    "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。",
    "梅雨は、北海道と小笠原諸島を除く日本、朝鮮半島南部、中国の南部から長江流域にかけての沿海部、"
    "および台湾など、東アジアの広範囲においてみられる特有の気象現象で、5月から7月にかけて来る"
    "曇りや雨の多い期間のこと。雨季の一種である。",
    "GPUサーバーはA棟3階のサーバー室にあります。",
)
FAST_PATH_COSINE = 0.995


@dataclass(frozen=True)
class PrecisionChoice:
    """What passages and questions are computed in, each with the reason, in Japanese, for the faces."""

    passages: str
    passages_reason: str
    questions: str
    questions_reason: str

    @classmethod
    def undecided(cls) -> PrecisionChoice:
        """Before the model is loaded."""
        return cls("float32", "まだ読み込んでいません", "float32", "まだ読み込んでいません")

    @classmethod
    def decided_by(cls, where: str) -> PrecisionChoice:
        """A model that runs elsewhere (an embeddings server): its precision is its own."""
        reason = f"{where}が決めます"
        return cls("server", reason, "server", reason)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where it pays off."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def compare_fast_path(reference: np.ndarray, fast: np.ndarray, documents: np.ndarray | None = None) -> tuple[bool, str]:
    """Whether unit vectors from a fast path match float32's: every cosine ≥ 0.995 and the same neighbours.

    ``reference`` and ``fast`` embed the same texts, row by row. The neighbours of each text (the
    other texts ordered by similarity) must come in the same order: a faster model that ranks
    differently is a bug. For a path that embeds questions only, ``documents`` are the same texts
    as the passages are embedded: each fast question must rank them as the float32 question does.
    """
    cosines = (reference * fast).sum(axis=1)
    worst = float(cosines.min())
    if worst < FAST_PATH_COSINE:
        return False, f"float32 とのコサインが最小 {worst:.4f}（基準 {FAST_PATH_COSINE}）"
    against, fast_against = (reference, fast) if documents is None else (documents, documents)
    order = np.argsort(-(reference @ against.T), axis=1, kind="stable")
    fast_order = np.argsort(-(fast @ fast_against.T), axis=1, kind="stable")
    if not np.array_equal(order[:, :3], fast_order[:, :3]):
        return False, "類似度の順位が float32 と変わる"
    return True, f"float32 とのコサイン最小 {worst:.4f}、順位も一致"


class Encoder(Protocol):
    """Embeds texts as unit vectors in one precision (``int8``: with the quantized copy ``model``)."""

    def __call__(self, texts: Sequence[str], precision: str, model: Any = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Verdict:
    """The policy's result: the choice, and the int8 copy of the model when questions use it."""

    choice: PrecisionChoice
    question_model: Any = None


class PrecisionPolicy:
    """Chooses the precisions from what was asked (``RAG_PRECISION``, ``RAG_QUERY_PRECISION``) and the hardware."""

    def __init__(self, requested: Precision = "auto", requested_questions: QueryPrecision = "auto") -> None:
        if requested not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
        if requested_questions not in QUERY_PRECISIONS:
            raise ValueError(f"query_precision must be one of {QUERY_PRECISIONS}, got {requested_questions!r}")
        self.requested = requested
        self.requested_questions = requested_questions

    def choose(
        self, device: str, encode: Encoder, quantize: Callable[[], Any], bf16_native: bool | None = None
    ) -> Verdict:
        """The precisions for a model on ``device`` (``cpu``, ``cuda``, …), checked with ``encode``.

        ``quantize`` makes the int8 copy of the model; it is called only when int8 is considered.
        ``bf16_native`` overrides what the CPU flags say (for tests).
        """
        on_cpu = device == "cpu"
        native = cpu_has_bf16() if bf16_native is None else bf16_native
        calibrated: dict[str, np.ndarray] = {}

        def vectors(precision: str) -> np.ndarray:
            if precision not in calibrated:  # each computed once, shared by both checks
                calibrated[precision] = encode(CALIBRATION_TEXTS, precision)
            return calibrated[precision]

        passages, why = self._passages(device, on_cpu, native, vectors)
        questions, question_why, model = self._questions(on_cpu, passages, vectors, encode, quantize)
        return Verdict(PrecisionChoice(passages, why, questions, question_why), model)

    def _passages(
        self, device: str, on_cpu: bool, native: bool, vectors: Callable[[str], np.ndarray]
    ) -> tuple[str, str]:
        if self.requested == "float32":
            return "float32", "RAG_PRECISION=float32"
        if not on_cpu:
            return "float32", f"{device} では float32 を使います"
        if self.requested == "bfloat16":
            return "bfloat16", "RAG_PRECISION=bfloat16（検査なし）"
        if not native:
            return "float32", "この CPU は bfloat16 をそのまま計算できません"
        ok, why = compare_fast_path(vectors("float32"), vectors("bfloat16"))
        return ("bfloat16", why) if ok else ("float32", f"bfloat16 は使いません: {why}")

    def _questions(
        self,
        on_cpu: bool,
        passages: str,
        vectors: Callable[[str], np.ndarray],
        encode: Encoder,
        quantize: Callable[[], Any],
    ) -> tuple[str, str, Any]:
        requested = self.requested_questions
        if requested == "auto" and self.requested == "float32":
            return passages, "RAG_PRECISION=float32 に合わせます", None
        if requested in ("auto", "int8") and not on_cpu:
            return passages, "文書と同じ精度（int8 は CPU だけ）", None
        if requested in ("float32", "bfloat16"):
            return requested, f"RAG_QUERY_PRECISION={requested}", None
        try:
            model = quantize()
        except (ImportError, AttributeError, RuntimeError) as error:
            return passages, f"int8 は使えません（{type(error).__name__}: {error}）。文書と同じ精度", None
        if requested == "int8":
            return "int8", "RAG_QUERY_PRECISION=int8（検査なし）", model
        # computed before any weights are stored in bfloat16, so float32 is still there to compare with
        ok, why = compare_fast_path(vectors("float32"), encode(CALIBRATION_TEXTS, "int8", model), vectors(passages))
        if ok:
            return "int8", why, model
        return passages, f"int8 は使いません: {why}。文書と同じ精度", None
