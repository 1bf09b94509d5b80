"""The precision policy: the guard, the ranking check, the timing, each choice on each kind of hardware, the cache."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from pipelines.model.embedder import Embedder
from pipelines.model.precision import (
    CALIBRATION_TEXTS,
    RANKING_PASSAGES,
    RANKING_QUESTIONS,
    PrecisionChoice,
    PrecisionPolicy,
    VerdictCache,
    compare_fast_path,
    compare_ranking,
    model_files,
    precision_label,
)

ALL_TEXTS = (*CALIBRATION_TEXTS, *RANKING_PASSAGES, *RANKING_QUESTIONS)


class FakePaths:
    """Deterministic paths: each precision is float32's vectors plus its own noise, at a given speed."""

    def __init__(
        self,
        noise: dict[str, float] | None = None,
        speeds: dict[str, float] | None = None,
        missing: dict[str, str] | None = None,
    ) -> None:
        self.noise = noise or {}
        self.speeds = {"float32": 1000.0, "bfloat16": 2000.0, "int8": 2500.0, "float16": 5000.0, **(speeds or {})}
        self.missing = missing or {}
        self.encoded: list[str] = []
        self.timed: list[str] = []
        rng = np.random.default_rng(0)
        self.reference = rng.normal(size=(len(ALL_TEXTS), 64)).astype(np.float32)
        # each question points at its passage, so that float32 ranks them clearly
        first_passage = len(CALIBRATION_TEXTS)
        first_question = first_passage + len(RANKING_PASSAGES)
        for i in range(len(RANKING_QUESTIONS)):
            self.reference[first_question + i] += 1.5 * self.reference[first_passage + i]

    def unavailable(self, precision: str) -> str | None:
        return self.missing.get(precision)

    def encode(self, texts: Sequence[str], precision: str) -> np.ndarray:
        assert tuple(texts) == ALL_TEXTS
        assert precision not in self.missing
        self.encoded.append(precision)
        scale = self.noise.get(precision, 0.0)
        vectors = self.reference + scale * np.random.default_rng(1 + len(precision)).normal(size=self.reference.shape)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def tokens_per_second(self, precision: str) -> float:
        self.timed.append(precision)
        return self.speeds[precision]


def choose(requested: str = "auto", questions: str = "auto", device: str = "cpu", **options: dict) -> tuple:
    paths = FakePaths(**options)
    choice = PrecisionPolicy(requested, questions).choose(device, paths)  # type: ignore[arg-type]
    return choice, paths


def test_the_fastest_path_that_reproduces_float32_is_chosen_and_its_figures_said() -> None:
    choice, paths = choose()
    assert (choice.passages, choice.questions) == ("int8", "int8")
    assert choice.passages_reason.startswith("float32 とのコサイン最小 ")
    assert "順位も一致" in choice.passages_reason
    assert "int8（ONNX Runtime） 2,500、bfloat16 2,000、float32 1,000" in choice.passages_reason
    assert choice.questions_reason == "文書と同じ int8（ONNX Runtime）"
    assert sorted(paths.encoded) == ["bfloat16", "float32", "int8"]  # each computed once, shared by the checks
    assert sorted(paths.timed) == ["bfloat16", "float32", "int8"]


def test_where_bfloat16_is_faster_questions_still_take_int8_checked_against_bfloat16_passages() -> None:
    choice, _ = choose(speeds={"bfloat16": 3000.0})
    assert (choice.passages, choice.questions) == ("bfloat16", "int8")
    assert "bfloat16 3,000、int8（ONNX Runtime） 2,500" in choice.passages_reason
    assert "順位も一致" in choice.questions_reason


def test_without_native_bfloat16_int8_is_the_fast_path_and_the_reason_names_both() -> None:
    choice, paths = choose(missing={"bfloat16": "この CPU は bfloat16 をそのまま計算できません"})
    assert choice.passages == "int8"
    assert choice.passages_reason.endswith("bfloat16: この CPU は bfloat16 をそのまま計算できません")
    assert "bfloat16" not in paths.encoded + paths.timed


def test_a_drifting_fast_path_is_refused_with_its_figure() -> None:
    choice, paths = choose(noise={"int8": 0.5, "bfloat16": 0.5})
    assert (choice.passages, choice.questions) == ("float32", "float32")
    assert "int8（ONNX Runtime） は使いません: float32 とのコサインが最小" in choice.passages_reason
    assert "bfloat16 は使いません: " in choice.passages_reason
    assert choice.questions_reason.startswith("int8 は使いません: ")
    assert paths.timed == []  # nothing to time against float32


def test_one_drifting_path_leaves_the_other() -> None:
    choice, _ = choose(noise={"int8": 0.5})
    assert (choice.passages, choice.questions) == ("bfloat16", "bfloat16")
    assert "int8（ONNX Runtime） は使いません" in choice.passages_reason
    assert choice.questions_reason.startswith("int8 は使いません: ")


def test_a_fast_path_that_is_not_faster_is_not_used() -> None:
    choice, _ = choose(speeds={"int8": 1050.0, "bfloat16": 900.0})
    assert choice.passages == "float32"
    assert "速い計算がありません" in choice.passages_reason
    assert choice.questions == "int8"  # a question is not timed: one short text is bound by reading weights


def test_an_export_that_fails_leaves_the_others() -> None:
    choice, _ = choose(missing={"int8": "ONNX への書き出しに失敗しました（RuntimeError: x）"})
    assert (choice.passages, choice.questions) == ("bfloat16", "bfloat16")
    assert "int8（ONNX Runtime）: ONNX への書き出しに失敗しました" in choice.passages_reason
    assert (
        choice.questions_reason
        == "int8 は使えません（ONNX への書き出しに失敗しました（RuntimeError: x））。文書と同じ精度"
    )


def test_on_a_gpu_float16_under_the_guard_and_questions_as_passages() -> None:
    choice, paths = choose(device="cuda")
    assert (choice.passages, choice.questions) == ("float16", "float16")
    assert "順位も一致" in choice.passages_reason
    assert choice.questions_reason == "文書と同じ精度（int8 は CPU だけ）"
    assert paths.timed == []
    drifting, _ = choose(device="cuda", noise={"float16": 0.5})
    assert drifting.passages == "float32"
    assert drifting.passages_reason.startswith("float16 は使いません: float32 とのコサインが最小")


def test_forced_precisions_are_not_checked() -> None:
    choice, paths = choose("bfloat16", "int8")
    assert (choice.passages, choice.questions) == ("bfloat16", "int8")
    assert choice.passages_reason == "RAG_PRECISION=bfloat16（検査なし）"
    assert choice.questions_reason == "RAG_QUERY_PRECISION=int8（検査なし）"
    assert paths.encoded == paths.timed == []
    plain, _ = choose("float32")
    assert (plain.passages, plain.questions) == ("float32", "float32")
    assert plain.questions_reason == "RAG_PRECISION=float32 に合わせます"
    cpu_only, _ = choose("float16", missing={"float16": "float16 は GPU だけ"})
    assert cpu_only.passages_reason == "RAG_PRECISION=float16 は使えません（float16 は GPU だけ）"


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        PrecisionPolicy("int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_precision"):
        PrecisionPolicy("auto", "int4")  # type: ignore[arg-type]


def test_a_fast_path_that_drifts_or_reorders_is_refused() -> None:
    reference = FakePaths().encode(ALL_TEXTS, "float32")[: len(CALIBRATION_TEXTS)]
    noise = np.random.default_rng(1).normal(scale=0.05, size=reference.shape).astype(np.float32)
    drifted = reference + noise
    drifted /= np.linalg.norm(drifted, axis=1, keepdims=True)
    ok, why = compare_fast_path(reference, drifted)
    assert not ok
    assert "0.995" in why
    swapped = reference[[1, 0, *range(2, len(reference))]]  # two texts trade places: same vectors, wrong order
    assert compare_fast_path(reference, swapped)[0] is False


def test_the_ranking_check_allows_near_ties_and_refuses_real_swaps() -> None:
    passages = np.eye(4, dtype=np.float32)
    questions = np.array([[0.9, 0.3, 0.1, 0.0], [0.1, 0.9, 0.8995, 0.0]], dtype=np.float32)
    assert compare_ranking(questions, passages, questions, passages) == (True, "質問に対する文章の順位も一致")
    # the second question's two best passages are 0.0005 apart in float32: their swap is rounding
    tie = questions.copy()
    tie[1, 1], tie[1, 2] = 0.8995, 0.9
    assert compare_ranking(questions, passages, tie, passages)[0] is True
    # the first question's best passage falls behind one float32 put 0.6 below it
    swap = questions.copy()
    swap[0, 0], swap[0, 1] = 0.3, 0.9
    ok, why = compare_ranking(questions, passages, swap, passages)
    assert (ok, why) == (False, "質問に対する文章の順位が float32 と変わる")


def test_a_verdict_is_kept_per_model_files_cpu_request_and_threads(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    cache = VerdictCache(tmp_path / "cache")
    folder = cache.model_dir("pkshatech/GLuCoSE-base-ja", model_files(model))
    assert folder.parent == tmp_path / "cache"
    assert folder.name.startswith("GLuCoSE-base-ja-")
    choice = PrecisionChoice("int8", "速い", "int8", "文書と同じ")
    assert cache.read(folder, "cpu", ("auto", "auto"), 2) is None
    cache.write(folder, "cpu", ("auto", "auto"), 2, choice)
    assert cache.read(folder, "cpu", ("auto", "auto"), 2) == choice
    assert cache.read(folder, "cpu", ("auto", "float32"), 2) is None
    assert cache.read(folder, "cpu", ("auto", "auto"), 4) is None
    assert cache.read(folder, "cuda", ("auto", "auto"), 2) is None
    (written,) = folder.glob("verdict-*.json")
    record = json.loads(written.read_text(encoding="utf-8"))
    assert "AVX2" in record["cpu"] or record["cpu"]  # the CPU's features, as numpy read them
    assert record["libraries"]["torch"] != "-"
    (model / "model.safetensors").write_bytes(b"changed")  # new weights: a new folder, nothing kept
    assert cache.model_dir("pkshatech/GLuCoSE-base-ja", model_files(model)) != folder
    written.write_text("{broken", encoding="utf-8")
    assert cache.read(folder, "cpu", ("auto", "auto"), 2) is None


def test_the_offline_model_passes_the_guard_in_bfloat16_and_int8(model_dir: Path) -> None:
    embedder = Embedder(str(model_dir), device="cpu", precision="float32")
    reference = embedder.encode(ALL_TEXTS, "float32")
    for precision in ("bfloat16", "int8"):
        assert embedder.unavailable(precision) in (None, "この CPU は bfloat16 をそのまま計算できません")
        if embedder.unavailable(precision) is not None:
            continue
        fast = embedder.encode(ALL_TEXTS, precision)
        ok, why = compare_fast_path(reference[: len(CALIBRATION_TEXTS)], fast[: len(CALIBRATION_TEXTS)])
        assert ok, (precision, why)
        assert float((reference * fast).sum(axis=1).min()) >= 0.995, precision


@pytest.mark.parametrize(
    ("precision", "label"),
    [
        ("server", "埋め込みサーバー"),
        ("int8", "int8"),
        ("bfloat16", "bfloat16"),
        ("float16", "float16"),
        ("float32", "float32"),
    ],
)
def test_each_precision_has_a_label_for_people(precision: str, label: str) -> None:
    assert precision_label(precision) == label


def test_a_server_s_precision_is_labelled_in_japanese_and_kept_as_server_in_json() -> None:
    choice = PrecisionChoice.decided_by("埋め込みサーバー（http://127.0.0.1:8080/v1）")
    assert (choice.passages_label, choice.questions_label) == ("埋め込みサーバー", "埋め込みサーバー")
    assert json.loads(json.dumps(asdict(choice)))["passages"] == "server"
    assert "passages_label" not in asdict(choice)
    local = PrecisionChoice("int8", "速い", "float32", "文書と同じ")
    assert (local.passages_label, local.questions_label) == ("int8", "float32")
