"""The embedder: GLuCoSE's trained token ids, real loading code on the offline model, clear load errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from pipelines.embedder import Embedder
from pipelines.errors import ModelLoadError, TokenizerMismatchError

TEXTS = [
    "東京は日本の首都です。",
    "吾輩は猫である。名前はまだ無い。",
    "ＡＢＣ全角と半角ｶﾀｶﾅ、①㈱。",
    "𠮷野家で😀を食べた",  # outside the vocabulary: <unk>
    "文中の[MASK]や<s>、</s>、<mask>、<ent>はただの文字です。",
    "  前後に空白  ",
    "",
]


def trained_ids(sp: spm.SentencePieceProcessor, text: str) -> list[int]:
    """The ids GLuCoSE was trained on: fairseq's <s>=0 <pad>=1 </s>=2 <unk>=3, pieces shifted by one."""
    return [0] + [i + 1 if i else 3 for i in sp.encode(text)] + [2]


@pytest.mark.parametrize("text", TEXTS)
def test_model_is_fed_the_trained_ids(embedder: Embedder, model_dir: Path, text: str) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "sentencepiece.bpe.model"))
    features = embedder.model.preprocess([text], processing_kwargs={"text": {"split_special_tokens": True}})
    assert features["input_ids"][0].tolist() == trained_ids(sp, text)
    assert embedder.count_tokens(text) == len(trained_ids(sp, text))


def test_tokenizer_is_the_slow_mluke_one(embedder: Embedder) -> None:
    assert type(embedder.model.tokenizer).__name__ == "MLukeTokenizer"
    assert embedder.model.tokenizer.pad_token_id == 1


def test_a_shifted_tokenizer_is_refused(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What transformers 5 does to GLuCoSE (ids one lower, <s> on the padding id) must stop the load."""
    from transformers.models.mluke.tokenization_mluke import MLukeTokenizer

    def shifted(self: MLukeTokenizer, token: str) -> int:
        return int(self.sp_model.PieceToId(token))

    monkeypatch.setattr(MLukeTokenizer, "_convert_token_to_id", shifted)
    with pytest.raises(TokenizerMismatchError, match=r"transformers==4\.57\.6"):
        Embedder(str(model_dir)).load()


def test_embeddings_are_unit_vectors_in_input_order(embedder: Embedder) -> None:
    texts = ["短い。", "これはもう少し長い文で、並べ替えの順序を確かめます。", "中くらいの文です。"]
    vectors = embedder.embed_documents(texts)
    assert vectors.shape == (3, embedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, vector in zip(texts, vectors, strict=True):
        assert np.allclose(embedder.embed_query(text), vector, atol=1e-5)


def test_batches_report_progress_and_stats(model_dir: Path) -> None:
    fresh = Embedder(str(model_dir), batch_size=2)
    calls: list[tuple[int, int]] = []
    fresh.embed_documents(
        ["一。", "二です。", "三番目の文。", "四。", "五。"], progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert fresh.stats.texts == 5
    assert fresh.stats.tokens == sum(
        fresh.count_tokens(t) for t in ["一。", "二です。", "三番目の文。", "四。", "五。"]
    )
    assert fresh.stats.seconds > 0


def test_model_loads_from_a_copied_directory(model_dir: Path, tmp_path: Path, embedder: Embedder) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "コピー")
    other = Embedder(str(copy))
    assert np.allclose(other.fingerprint(), embedder.fingerprint(), atol=1e-5)


def test_missing_directory_names_it_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        Embedder(str(tmp_path / "no-such-model")).load()
    message = str(caught.value)
    assert "no-such-model" in message
    assert "RAG_EMBEDDING_MODEL" in message


def test_hub_model_without_network_names_model_cause_and_local_copy() -> None:
    # HF_HUB_OFFLINE=1 (conftest): the same failure as a machine with no network, without the wait.
    with pytest.raises(ModelLoadError) as caught:
        Embedder("pkshatech/GLuCoSE-base-ja").load()
    message = str(caught.value)
    assert "pkshatech/GLuCoSE-base-ja" in message
    assert "hf download pkshatech/GLuCoSE-base-ja --local-dir models/GLuCoSE-base-ja" in message
    assert "RAG_EMBEDDING_MODEL=models/GLuCoSE-base-ja" in message


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("モデルではありません", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        Embedder(str(tmp_path)).load()


def test_fast_path_that_matches_float32_is_accepted(model_dir: Path) -> None:
    from pipelines.embedder import CALIBRATION_TEXTS, compare_fast_path

    embedder = Embedder(str(model_dir), precision="float32")
    reference = embedder._encode(CALIBRATION_TEXTS, "float32")
    fast = embedder._encode(CALIBRATION_TEXTS, "bfloat16")
    ok, why = compare_fast_path(reference, fast)
    assert ok, why
    assert float((reference * fast).sum(axis=1).min()) >= 0.995


def test_fast_path_that_drifts_is_refused(model_dir: Path) -> None:
    from pipelines.embedder import CALIBRATION_TEXTS, compare_fast_path

    embedder = Embedder(str(model_dir), precision="float32")
    reference = embedder._encode(CALIBRATION_TEXTS, "float32")
    noise = np.random.default_rng(0).normal(scale=0.05, size=reference.shape).astype(np.float32)
    drifted = reference + noise
    drifted /= np.linalg.norm(drifted, axis=1, keepdims=True)
    ok, why = compare_fast_path(reference, drifted)
    assert not ok
    assert "0.995" in why
    swapped = reference[[1, 0, *range(2, len(reference))]]  # two texts trade places: same vectors, wrong order
    assert compare_fast_path(reference, swapped)[0] is False


def test_precision_is_chosen_and_explained(model_dir: Path) -> None:
    forced = Embedder(str(model_dir), precision="float32")
    forced.load()
    assert (forced.precision, forced.precision_reason) == ("float32", "RAG_PRECISION=float32")
    auto = Embedder(str(model_dir))
    auto.load()
    assert auto.precision in ("float32", "bfloat16")
    assert auto.precision_reason
    text = "有給休暇は入社後六か月から取得できます。"
    cosine = float(auto.embed_documents([text])[0] @ forced.embed_documents([text])[0])
    assert cosine >= 0.995  # whichever path auto chose, it stays within the guard of float32
    with pytest.raises(ValueError, match="precision"):
        Embedder(str(model_dir), precision="int4")
