"""The embedder: GLuCoSE's trained token ids, real loading code on the offline model, clear load errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from pipelines.errors import ModelLoadError, TokenizerMismatchError
from pipelines.model import batching, first_check
from pipelines.model import embedder as embedder_module
from pipelines.model.embedder import Embedder

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
        Embedder(str(model_dir), precision="float32").load()  # torch's path: the tokenizer feeds it
    # a first start checked without torch feeds the int8 graph the sentencepiece model's own ids, which no
    # tokenizer shifts; what it leaves for later, in torch, cannot be checked, and says why
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: True)
    speeds = {"int8": 2_000.0, "float32": 800.0}  # the tiny model's timings aside: int8 is served
    monkeypatch.setattr(first_check.GraphPaths, "tokens_per_second", lambda self, precision: speeds[precision])
    first = Embedder(str(model_dir), device="cpu")
    first.load()
    assert first.wait_prepared(300)
    assert (first.precision.passages, first.precision.questions) == ("int8", "int8")
    assert "bfloat16 を確かめられませんでした（TokenizerMismatchError" in first.precision.passages_reason
    assert first_check.CHECKED_LATER not in first.precision.passages_reason


def test_embeddings_are_unit_vectors_in_input_order(embedder: Embedder) -> None:
    texts = ["短い。", "これはもう少し長い文で、並べ替えの順序を確かめます。", "中くらいの文です。"]
    vectors = embedder.embed_documents(texts)
    assert vectors.shape == (3, embedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, vector in zip(texts, vectors, strict=True):
        assert np.allclose(embedder.embed_query(text), vector, atol=1e-5)


@pytest.mark.slow
def test_batches_report_progress_and_stats(model_dir: Path) -> None:
    fresh = Embedder(str(model_dir), batch_size=2)
    texts = ["一。", "二。", "三。", "四。", "五。"]
    assert len({fresh.count_tokens(t) for t in texts}) == 1  # one length: batches are cut by size alone
    calls: list[tuple[int, int]] = []
    fresh.embed_documents(texts, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert fresh.stats.texts == 5
    assert fresh.stats.tokens == sum(fresh.count_tokens(t) for t in texts)
    assert fresh.stats.seconds > 0


def test_a_batch_on_a_cpu_ends_where_the_texts_get_shorter(model_dir: Path, embedder: Embedder) -> None:
    """Padding costs as much as real tokens: a long text and a short one are not embedded as one batch."""
    fresh = Embedder(str(model_dir), batch_size=4, precision="float32", device="cpu")
    sentence = "東京は日本の首都です。"
    texts = [sentence * 2, sentence, sentence * 4, sentence * 2, sentence * 4]
    counts = [fresh.count_tokens(t) for t in texts]
    assert counts[0] < 0.9 * counts[2]
    assert counts[1] < 0.9 * counts[0]
    calls: list[tuple[int, int]] = []
    vectors = fresh.embed_documents(texts, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]  # the two longest, the two middle ones, the shortest
    for text, vector in zip(texts, vectors, strict=True):  # in the order given, as when embedded alone
        assert np.allclose(embedder.embed_documents([text])[0], vector, atol=1e-5)


def test_a_batch_on_a_cpu_holds_at_most_its_token_budget(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large batches spill the CPU's caches: a batch stops before its tokens, padding included, pass the budget."""
    fresh = Embedder(str(model_dir), batch_size=8, precision="float32", device="cpu")
    texts = ["一つめの文です。", "二つめの文です。", "三つめの文です。", "四つめの文です。", "五つめの文です。"]
    counts = {fresh.count_tokens(t) for t in texts}
    assert len(counts) == 1
    monkeypatch.setattr(batching, "BATCH_TOKENS", 2 * counts.pop() + 1)  # room for two texts, not three
    calls: list[tuple[int, int]] = []
    fresh.embed_documents(texts, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


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


@pytest.mark.slow
def test_precision_is_chosen_and_explained(model_dir: Path) -> None:
    forced = Embedder(str(model_dir), device="cpu", precision="float32")
    forced.load()
    assert (forced.precision.passages, forced.precision.passages_reason) == ("float32", "RAG_PRECISION=float32")
    auto = Embedder(str(model_dir), device="cpu")
    auto.load()
    assert auto.wait_prepared(300)  # a first start serves float32 while it checks the faster paths
    # which path is fastest depends on the CPU; whichever it is, it passed the guard and says its speed
    assert auto.precision.passages in ("int8", "bfloat16", "float32")
    if auto.precision.passages != "float32":
        assert "順位も一致" in auto.precision.passages_reason
    assert "トークン/秒" in auto.precision.passages_reason
    text = "有給休暇は入社後六か月から取得できます。"
    cosine = float(auto.embed_documents([text])[0] @ forced.embed_documents([text])[0])
    assert cosine >= 0.995  # whichever path auto chose, it stays within the guard of float32
    with pytest.raises(ValueError, match="precision"):
        Embedder(str(model_dir), precision="int4")  # type: ignore[arg-type]


QUESTIONS = ["富士山の高さは？", "有給休暇は何日もらえますか。", "ＧＰＵサーバーはどこにありますか"]


def test_the_int8_path_reproduces_float32_through_onnx_runtime(model_dir: Path) -> None:
    reference = Embedder(str(model_dir), device="cpu", precision="float32")
    fast = Embedder(str(model_dir), device="cpu", precision="int8", query_precision="int8")
    fast.load()
    assert (fast.precision.passages, fast.precision.questions) == ("int8", "int8")
    texts = [*TEXTS[:6], *QUESTIONS, "。".join(QUESTIONS) * 100]  # the last is cut at 512 tokens on both paths
    cosines = (fast.embed_documents(texts) * reference.embed_documents(texts)).sum(axis=1)
    assert cosines.min() >= 0.995
    assert (fast.embed_queries(QUESTIONS) * reference.embed_queries(QUESTIONS)).sum(axis=1).min() >= 0.995


def test_luke_ids_are_cut_as_the_tokenizer_cuts_them(embedder: Embedder) -> None:
    from pipelines.model.tokens import luke_ids

    long_text = "東京は日本の首都です。" * 200
    for text in [*TEXTS, long_text]:
        expected = embedder.model.tokenizer(text, truncation=True, max_length=512, split_special_tokens=True)
        assert luke_ids(embedder._counter().pieces, text, 512) == expected["input_ids"], text[:20]


@pytest.mark.slow
@pytest.mark.server
def test_a_kept_int8_verdict_starts_without_torch(model_dir: Path, tmp_path: Path) -> None:
    """The second start finds the verdict and the export on disk and embeds without importing torch."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from pipelines.model.embedder import Embedder\n"
        f"e = Embedder({str(model_dir)!r}, precision='int8', query_precision='int8', cache_dir=Path({str(tmp_path)!r}))\n"
        "e.load()\n"
        "vectors = e.embed_documents(['富士山は日本一高い山です。']).tolist()\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'vectors': vectors, 'reason': e.precision.passages_reason}))\n"
    )
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0]["torch"] is True  # the first start loads the model, exports it, keeps the verdict
    assert runs[1]["torch"] is False
    assert runs[1]["reason"] == "RAG_PRECISION=int8（検査なし）"
    assert np.allclose(runs[0]["vectors"], runs[1]["vectors"], atol=1e-6)
    assert len(list(tmp_path.glob("*/verdict-*.json"))) == 1
    assert len(list(tmp_path.glob("*/model.int8.onnx"))) == 1


@pytest.mark.slow
def test_a_kept_verdict_skips_the_checks(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert first.wait_prepared(300)
    from pipelines.model.precision import PrecisionPolicy

    def no_checks(*args: object, **kwargs: object) -> None:
        raise AssertionError("the verdict was kept: nothing to check again")

    monkeypatch.setattr(PrecisionPolicy, "choose", no_checks)
    second = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    second.load()
    assert second.preparation is None
    assert second.precision == first.precision
    # another request is another verdict: checked again (in the background, where this check fails)
    third = Embedder(str(model_dir), device="cpu", query_precision="float32", cache_dir=tmp_path)
    third.load()
    assert third.wait_prepared(300)
    assert "nothing to check again" in third.precision.passages_reason


def test_a_model_with_layers_after_pooling_is_not_exported(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    from pipelines.model import int8

    assert int8.exportable(embedder.model) is None
    dense = Dense(embedder.dimension, 8)
    extended = SentenceTransformer(modules=[embedder.model[0], embedder.model[1], dense], device="cpu")
    assert int8.exportable(extended) == "プーリングの後に層を持つモデルです"


def test_question_precision_can_be_forced(model_dir: Path) -> None:
    plain = Embedder(str(model_dir), device="cpu", query_precision="float32")
    plain.load()
    assert plain.wait_prepared(300)
    assert (plain.precision.questions, plain.precision.questions_reason) == (
        "float32",
        "RAG_QUERY_PRECISION=float32（検査なし）",
    )
    with pytest.raises(ValueError, match="query_precision"):
        Embedder(str(model_dir), query_precision="int4")  # type: ignore[arg-type]


def test_question_precision_setting_reaches_the_embedder(model_dir: Path) -> None:
    from pipelines.errors import SettingsError
    from pipelines.service.compose import make_embedder
    from pipelines.settings import Settings

    settings = Settings.from_env({"RAG_QUERY_PRECISION": "float32", "RAG_EMBEDDING_MODEL": str(model_dir)})
    embedder = make_embedder(settings)
    assert isinstance(embedder, Embedder)
    assert embedder.policy.requested_questions == "float32"
    with pytest.raises(SettingsError, match="RAG_QUERY_PRECISION は auto、float32、bfloat16、int8、float16"):
        Settings.from_env({"RAG_QUERY_PRECISION": "int4"})


def test_tokens_are_counted_by_sentencepiece_as_the_tokenizer_counts_them(embedder: Embedder) -> None:
    from testkit.documents import SENTENCES

    long_text = "。".join(SENTENCES) * 40  # far over 512 tokens: counting does not truncate
    texts = [*TEXTS, *SENTENCES, long_text, "ｶﾀｶﾅ\u3000全角スペース\tタブ", "<ent><ent2>[MASK]"]
    assert embedder._counter().pieces is not None
    tokenizer = embedder.model.tokenizer
    for text in texts:
        by_tokenizer = len(tokenizer(text, truncation=False, verbose=False, split_special_tokens=True)["input_ids"])
        assert embedder.count_tokens(text) == by_tokenizer, text
    assert embedder.count_tokens(long_text) > 512


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU taken as one that computes bfloat16 natively (torch computes it on any CPU, only slower)."""
    monkeypatch.setattr("pipelines.model.embedder.cpu_has_bf16", lambda: True)


def test_requested_bfloat16_without_native_support_is_float32_with_the_reason(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipelines.model.embedder.cpu_has_bf16", lambda: False)
    asked = Embedder(str(model_dir), device="cpu", precision="bfloat16", query_precision="float32")
    asked.load()
    assert asked.precision.passages == "float32"
    assert asked.precision.passages_reason == (
        "RAG_PRECISION=bfloat16 は使えません（この CPU は bfloat16 をそのまま計算できません）"
    )
    assert asked._weights == "float32"


@pytest.mark.usefixtures("native_bf16")
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


@pytest.mark.usefixtures("native_bf16")
def test_float32_questions_beside_bfloat16_passages(model_dir: Path) -> None:
    mixed = Embedder(str(model_dir), device="cpu", precision="bfloat16", query_precision="float32")
    mixed.load()
    plain = Embedder(str(model_dir), device="cpu", precision="float32")
    plain.load()
    assert (mixed.precision.passages, mixed.precision.questions) == ("bfloat16", "float32")
    assert np.allclose(mixed.embed_queries(QUESTIONS), plain.embed_queries(QUESTIONS), atol=1e-6)


@pytest.mark.server
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
    # the store is opened before the model is needed, and nothing is written to it
    from pipelines.store.chroma import ChromaStore

    if (tmp_path / "data" / "chroma").exists():
        assert ChromaStore.persistent(tmp_path / "data").documents() == []
    assert not any((tmp_path / "data" / "originals").rglob("*.*"))
