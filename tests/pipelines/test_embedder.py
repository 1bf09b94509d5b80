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
    other = Embedder(str(copy), precision="float32")
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


def test_precision_is_chosen_and_explained(model_dir: Path) -> None:
    from pipelines.precision import cpu_has_bf16

    forced = Embedder(str(model_dir), device="cpu", precision="float32")
    forced.load()
    assert (forced.precision.passages, forced.precision.passages_reason) == ("float32", "RAG_PRECISION=float32")
    auto = Embedder(str(model_dir), device="cpu")
    auto.load()
    if cpu_has_bf16():  # the tiny model passes the guard (tests/pipelines/test_precision.py)
        assert auto.precision.passages == "bfloat16", auto.precision.passages_reason
        assert "順位も一致" in auto.precision.passages_reason
    else:
        assert auto.precision.passages == "float32"
        assert auto.precision.passages_reason == "この CPU は bfloat16 をそのまま計算できません"
    text = "有給休暇は入社後六か月から取得できます。"
    cosine = float(auto.embed_documents([text])[0] @ forced.embed_documents([text])[0])
    assert cosine >= 0.995  # whichever path auto chose, it stays within the guard of float32
    with pytest.raises(ValueError, match="precision"):
        Embedder(str(model_dir), precision="int4")  # type: ignore[arg-type]


QUESTIONS = ["富士山の高さは？", "有給休暇は何日もらえますか。", "ＧＰＵサーバーはどこにありますか"]


def test_questions_take_the_int8_path_only_when_it_reproduces_float32(model_dir: Path) -> None:
    reference = Embedder(str(model_dir), device="cpu", precision="float32")
    reference.load()
    assert (reference.precision.questions, reference.precision.questions_reason) == (
        "float32",
        "RAG_PRECISION=float32 に合わせます",
    )
    auto = Embedder(str(model_dir), device="cpu")  # int8 is for CPUs: on a GPU questions go as passages
    auto.load()
    assert auto.precision.questions == "int8", auto.precision.questions_reason
    assert "順位も一致" in auto.precision.questions_reason
    cosines = (auto.embed_queries(QUESTIONS) * reference.embed_queries(QUESTIONS)).sum(axis=1)
    assert cosines.min() >= 0.995
    # the passages keep their own path: int8 is for questions only
    assert auto.precision.passages != "int8"
    passage = auto.embed_documents(QUESTIONS[:1])[0]
    assert np.allclose(passage, auto._encode(QUESTIONS[:1], auto.precision.passages)[0])


def test_an_int8_path_that_drifts_is_refused(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quantised copy that ranks differently is not used: questions go the passages' way, and it says why."""
    import torch

    from pipelines import embedder as module

    real = module.int8_copy

    def drifting(model: object) -> object:
        copied = real(model)  # type: ignore[arg-type]
        torch.manual_seed(0)
        for parent in list(copied.modules()):
            for name, table in list(parent.named_children()):
                if isinstance(table, torch.nn.Embedding):  # shared with the original: give the copy its own
                    noisy = table.weight.detach() + 0.5 * torch.randn_like(table.weight)
                    setattr(parent, name, torch.nn.Embedding.from_pretrained(noisy, padding_idx=table.padding_idx))
        return copied

    monkeypatch.setattr(module, "int8_copy", drifting)
    embedder = Embedder(str(model_dir), device="cpu")
    embedder.load()
    reference = Embedder(str(model_dir), device="cpu", precision="float32")
    # the original model is untouched: passages embed as before, within the guard of float32
    assert (embedder.embed_documents(QUESTIONS) * reference.embed_documents(QUESTIONS)).sum(axis=1).min() >= 0.995
    assert embedder.precision.questions == embedder.precision.passages != "int8"
    assert embedder.precision.questions_reason.startswith("int8 は使いません: ")
    assert embedder._query_model is None


def test_question_precision_can_be_forced(model_dir: Path) -> None:
    forced = Embedder(str(model_dir), device="cpu", query_precision="int8")
    forced.load()
    assert (forced.precision.questions, forced.precision.questions_reason) == (
        "int8",
        "RAG_QUERY_PRECISION=int8（検査なし）",
    )
    plain = Embedder(str(model_dir), device="cpu", query_precision="float32")
    plain.load()
    assert plain.precision.questions == "float32"
    assert plain._query_model is None
    with pytest.raises(ValueError, match="query_precision"):
        Embedder(str(model_dir), query_precision="int4")  # type: ignore[arg-type]


def test_int8_copy_shares_the_embedding_tables_and_leaves_the_model_alone(embedder: Embedder) -> None:
    import torch

    from pipelines.embedder import int8_copy

    before = embedder.embed_documents(QUESTIONS)
    copied = int8_copy(embedder.model)
    tables = [m for m in embedder.model.modules() if isinstance(m, torch.nn.Embedding)]
    copied_tables = [m for m in copied.modules() if isinstance(m, torch.nn.Embedding)]
    assert tables
    assert all(a is b for a, b in zip(tables, copied_tables, strict=True))
    assert not any(isinstance(m, torch.nn.Linear) for m in copied.modules())
    assert any(isinstance(m, torch.nn.Linear) for m in embedder.model.modules())
    assert np.array_equal(embedder.embed_documents(QUESTIONS), before)


def test_question_precision_setting_reaches_the_embedder(model_dir: Path) -> None:
    from pipelines.components import make_embedder
    from pipelines.errors import SettingsError
    from pipelines.settings import Settings

    settings = Settings.from_env({"RAG_QUERY_PRECISION": "float32", "RAG_EMBEDDING_MODEL": str(model_dir)})
    embedder = make_embedder(settings)
    assert isinstance(embedder, Embedder)
    assert embedder.policy.requested_questions == "float32"
    with pytest.raises(SettingsError, match="RAG_QUERY_PRECISION は auto、float32、bfloat16、int8"):
        Settings.from_env({"RAG_QUERY_PRECISION": "int4"})


def test_tokens_are_counted_by_sentencepiece_as_the_tokenizer_counts_them(embedder: Embedder) -> None:
    from testkit.documents import SENTENCES

    long_text = "。".join(SENTENCES) * 40  # far over 512 tokens: counting does not truncate
    texts = [*TEXTS, *SENTENCES, long_text, "ｶﾀｶﾅ\u3000全角スペース\tタブ", "<ent><ent2>[MASK]"]
    assert embedder._pieces is not None
    tokenizer = embedder.model.tokenizer
    for text in texts:
        by_tokenizer = len(tokenizer(text, truncation=False, verbose=False, split_special_tokens=True)["input_ids"])
        assert embedder.count_tokens(text) == by_tokenizer, text
    assert embedder.count_tokens(long_text) > 512


def test_bfloat16_weights_give_the_same_vectors_as_autocast(model_dir: Path) -> None:
    """Storing the linear weights in bfloat16 once is what autocast did on every batch: the same bits."""
    forced = Embedder(str(model_dir), device="cpu", precision="bfloat16", query_precision="bfloat16")
    forced.load()
    assert forced._weights == "bfloat16"
    plain = Embedder(str(model_dir), device="cpu", precision="float32", query_precision="float32")
    plain.load()
    autocast = plain._encode(TEXTS[:5], "bfloat16")  # float32 weights cast by autocast
    assert np.array_equal(forced.embed_documents(TEXTS[:5]), autocast)
    with pytest.raises(RuntimeError, match="bfloat16"):
        forced._encode(TEXTS[:1], "float32")


def test_float32_questions_beside_bfloat16_passages(model_dir: Path) -> None:
    mixed = Embedder(str(model_dir), device="cpu", precision="bfloat16", query_precision="float32")
    mixed.load()
    plain = Embedder(str(model_dir), device="cpu", precision="float32")
    plain.load()
    assert (mixed.precision.passages, mixed.precision.questions) == ("bfloat16", "float32")
    assert np.allclose(mixed.embed_queries(QUESTIONS), plain.embed_queries(QUESTIONS), atol=1e-6)


def test_cli_without_network_or_model_fails_fast_with_one_message(tmp_path: Path) -> None:
    """No network, no local copy: one message within seconds, not a minute of download retries."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:  # a port where nothing listens: the hub is out of reach
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    (tmp_path / "規程.txt").write_text("有給休暇は入社六か月後から取得できます。", encoding="utf-8")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{closed}",
        "HF_HOME": str(tmp_path / "hf-home"),  # an empty cache
        "RAG_DATA_DIR": str(tmp_path / "data"),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "ingest", str(tmp_path / "規程.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2
    assert elapsed < 15, elapsed
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("エラー: 埋め込みモデル「pkshatech/GLuCoSE-base-ja」がこのマシンになく")
    assert "RAG_EMBEDDING_MODEL=models/GLuCoSE-base-ja" in lines[0]
    assert not (tmp_path / "data" / "chroma").exists()  # nothing written
