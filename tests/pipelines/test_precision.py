"""The precision policy: the guard, and each choice on each kind of hardware, with the reason it gives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.embedder import Embedder
from pipelines.precision import CALIBRATION_TEXTS, PrecisionChoice, PrecisionPolicy, compare_fast_path

QUANTIZED = object()  # stands for the int8 copy of the model


class Calibration:
    """A deterministic encoder: each precision is float32's vectors plus that precision's noise."""

    def __init__(self, noise: dict[str, float] | None = None) -> None:
        self.noise = noise or {}
        self.calls: list[str] = []
        rng = np.random.default_rng(0)
        self.reference = rng.normal(size=(len(CALIBRATION_TEXTS), 64)).astype(np.float32)

    def __call__(self, texts: Sequence[str], precision: str, model: Any = None) -> np.ndarray:
        assert list(texts) == list(CALIBRATION_TEXTS)
        assert (model is QUANTIZED) == (precision == "int8")
        self.calls.append(precision)
        scale = self.noise.get(precision, 0.0)
        vectors = self.reference + scale * np.random.default_rng(1 + len(precision)).normal(size=self.reference.shape)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def choose(
    requested: str = "auto", questions: str = "auto", device: str = "cpu", native: bool = True, **noise: float
) -> tuple[PrecisionChoice, Any, list[str]]:
    encode = Calibration(noise)
    verdict = PrecisionPolicy(requested, questions).choose(device, encode, lambda: QUANTIZED, bf16_native=native)  # type: ignore[arg-type]
    return verdict.choice, verdict.question_model, encode.calls


def test_native_bfloat16_and_int8_questions_when_both_reproduce_float32() -> None:
    choice, model, calls = choose()
    assert (choice.passages, choice.questions) == ("bfloat16", "int8")
    assert "順位も一致" in choice.passages_reason
    assert "順位も一致" in choice.questions_reason
    assert model is QUANTIZED
    assert sorted(calls) == ["bfloat16", "float32", "int8"]  # float32 computed once, shared by both checks


def test_without_native_bfloat16_passages_stay_float32_and_say_why() -> None:
    choice, _, calls = choose(native=False)
    assert choice.passages == "float32"
    assert choice.passages_reason == "この CPU は bfloat16 をそのまま計算できません"
    assert choice.questions == "int8"  # int8 needs no bfloat16 hardware
    assert "bfloat16" not in calls


def test_a_drifting_fast_path_is_refused_with_its_figure() -> None:
    choice, model, _ = choose(bfloat16=0.5, int8=0.5)
    assert (choice.passages, choice.questions) == ("float32", "float32")
    assert choice.passages_reason.startswith("bfloat16 は使いません: float32 とのコサインが最小")
    assert choice.questions_reason.startswith("int8 は使いません: ")
    assert model is None


def test_on_a_gpu_everything_is_float32_and_nothing_is_quantized() -> None:
    choice, model, calls = choose(device="cuda")
    assert choice == PrecisionChoice(
        "float32", "cuda では float32 を使います", "float32", "文書と同じ精度（int8 は CPU だけ）"
    )
    assert model is None
    assert calls == []


def test_forced_precisions_are_not_checked() -> None:
    choice, model, calls = choose("bfloat16", "int8", native=False)
    assert (choice.passages, choice.questions) == ("bfloat16", "int8")
    assert choice.passages_reason == "RAG_PRECISION=bfloat16（検査なし）"
    assert choice.questions_reason == "RAG_QUERY_PRECISION=int8（検査なし）"
    assert model is QUANTIZED
    assert calls == []
    plain, _, _ = choose("float32")
    assert (plain.passages, plain.questions) == ("float32", "float32")
    assert plain.questions_reason == "RAG_PRECISION=float32 に合わせます"


def test_a_quantization_that_fails_leaves_questions_as_passages() -> None:
    def broken() -> Any:
        raise RuntimeError("no qint8 engine")

    verdict = PrecisionPolicy().choose("cpu", Calibration(), broken, bf16_native=True)
    assert verdict.choice.questions == verdict.choice.passages == "bfloat16"
    assert verdict.choice.questions_reason == "int8 は使えません（RuntimeError: no qint8 engine）。文書と同じ精度"


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        PrecisionPolicy("int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_precision"):
        PrecisionPolicy("auto", "int4")  # type: ignore[arg-type]


def test_the_real_model_in_bfloat16_passes_the_guard(model_dir: Path) -> None:
    embedder = Embedder(str(model_dir), device="cpu", precision="float32")
    reference = embedder._encode(CALIBRATION_TEXTS, "float32")
    fast = embedder._encode(CALIBRATION_TEXTS, "bfloat16")
    ok, why = compare_fast_path(reference, fast)
    assert ok, why
    assert float((reference * fast).sum(axis=1).min()) >= 0.995


def test_a_fast_path_that_drifts_or_reorders_is_refused() -> None:
    reference = Calibration().reference
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    noise = np.random.default_rng(1).normal(scale=0.05, size=reference.shape).astype(np.float32)
    drifted = reference + noise
    drifted /= np.linalg.norm(drifted, axis=1, keepdims=True)
    ok, why = compare_fast_path(reference, drifted)
    assert not ok
    assert "0.995" in why
    swapped = reference[[1, 0, *range(2, len(reference))]]  # two texts trade places: same vectors, wrong order
    assert compare_fast_path(reference, swapped)[0] is False


def test_question_path_must_rank_the_passages_as_float32_does() -> None:
    rng = np.random.default_rng(0)
    passages = rng.normal(size=(6, 32)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    reference = passages.copy()
    assert compare_fast_path(reference, reference.copy(), passages)[0] is True
    # each question nudged towards its second-best passage: cosine with float32 stays high, order flips
    scores = reference @ passages.T
    second = np.argsort(-scores, axis=1)[:, 1]
    nudged = reference + 0.6 * passages[second]
    nudged /= np.linalg.norm(nudged, axis=1, keepdims=True)
    ok, why = compare_fast_path(reference, nudged, passages)
    assert not ok
    assert why  # the reason is shown to the person
