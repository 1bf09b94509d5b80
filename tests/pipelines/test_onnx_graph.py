"""The encoder's graph written from its weights: the model's own numbers in float32, int8 as the quantizer's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.model import int8, onnx_graph
from pipelines.model.embedder import Embedder
from pipelines.model.tokens import Tokens

TEXTS = ["有給休暇は入社して六か月後に十日付与します。", "富士山", "ＡＢＣの文書は、途中で改行されています。" * 3]


def _session(graph: onnx_graph.Graph, max_tokens: int = 512, dimension: int = 32) -> int8.Int8Runner:
    return int8.Int8Runner(int8.Int8Model(Path("memory"), dimension, max_tokens, "mean"), 1, graph=graph)


def _sentence_transformer_files(directory: Path, pooling: str = "mean", hidden: int = 32) -> None:
    (directory / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 60, "do_lower_case": False}))
    (directory / "1_Pooling").mkdir()
    modes = {"pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_cls_token": pooling == "cls"}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": hidden, **modes}))


def _tiny(kind: str, directory: Path, safetensors: bool = True) -> object:
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    shape = {
        "vocab_size": 120,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 66,
    }
    torch.manual_seed(3)
    model: BertModel | XLMRobertaModel
    if kind == "bert":
        model = BertModel(BertConfig(**shape, type_vocab_size=2, pad_token_id=0), add_pooling_layer=True)
    else:
        model = XLMRobertaModel(XLMRobertaConfig(**shape, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5))
    model.eval()
    model.save_pretrained(directory, safe_serialization=safetensors)
    return model


def _ids(pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Three texts of 9, 4 and 1 ids, padded with ``pad``, and their mask."""
    rng = np.random.default_rng(5)
    ids = np.full((3, 9), pad, dtype=np.int64)
    mask = np.zeros((3, 9), dtype=np.int64)
    for row, length in enumerate((9, 4, 1)):
        ids[row, :length] = rng.integers(3, 120, length)
        mask[row, :length] = 1
    return ids, mask


@pytest.mark.parametrize(
    ("kind", "pooling", "safetensors"),
    [("bert", "mean", True), ("bert", "cls", True), ("xlm-roberta", "mean", False)],
)
def test_the_float32_graph_computes_what_transformers_computes(
    tmp_path: Path, kind: str, pooling: str, safetensors: bool
) -> None:
    import torch

    model = _tiny(kind, tmp_path, safetensors)
    _sentence_transformer_files(tmp_path, pooling)
    assert onnx_graph.unsupported(tmp_path) is None
    graph, shape = onnx_graph.build(tmp_path, "weights.data", quantized=False)
    assert (shape.pooling, shape.max_tokens) == (pooling, 60)
    pad = 0 if kind == "bert" else 1
    ids, mask = _ids(pad)
    with torch.no_grad():
        states = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()  # type: ignore[operator]
    weights = mask[:, :, None].astype(np.float32)
    expected = states[:, 0] if pooling == "cls" else (states * weights).sum(1) / weights.sum(1)
    pooled, tokens = _session(graph).with_states(ids, mask)
    assert np.allclose(pooled, expected, atol=1e-5)
    assert np.allclose(tokens * weights, states * weights, atol=1e-5)  # each token's state, where it is a token


def test_the_luke_graphs_match_the_model_and_the_exported_int8(
    embedder: Embedder, model_dir: Path, tmp_path: Path
) -> None:
    tokens = Tokens.in_directory(model_dir)
    ids, mask = tokens.feed(TEXTS, embedder.max_tokens)
    graph, _ = onnx_graph.build(model_dir, "weights.data", quantized=False)
    float32 = _session(graph, dimension=embedder.dimension)(ids, mask)
    float32 /= np.linalg.norm(float32, axis=1, keepdims=True)
    assert np.allclose(float32, embedder.encode(TEXTS, "float32"), atol=1e-5)  # sentence-transformers in torch
    # int8: the same quantized matrices as the torch export quantized by ONNX Runtime, so nearly the same vectors
    built, _ = onnx_graph.build(model_dir, "weights.data", quantized=True)
    quantized = _session(built, dimension=embedder.dimension)(ids, mask)
    exported = int8.export(embedder.model, tmp_path / "exported")
    traced = int8.Int8Runner(exported, 1)(ids, mask)
    cosines = (quantized * traced).sum(1) / np.linalg.norm(quantized, axis=1) / np.linalg.norm(traced, axis=1)
    assert cosines.min() > 0.999
    against_float32 = (quantized * float32).sum(1) / np.linalg.norm(quantized, axis=1)
    assert against_float32.min() > 0.99


def test_per_channel_quantization_is_onnx_runtimes() -> None:
    weight = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.5, -0.01]], dtype=np.float32)
    matrix, scale = onnx_graph.quantize_rows(weight)
    assert matrix.shape == (3, 3)  # (in × out): the product's right-hand side
    assert matrix.dtype == np.int8
    assert np.allclose(scale, [2 * 1.0 / 254, 1.0, 2 * 3.0 / 254])  # an all-zero channel keeps scale 1
    assert matrix[:, 0].tolist() == [64, -127, 32]  # 0.5 / (2/254) = 63.5 → 64, half to even
    assert matrix[:, 1].tolist() == [0, 0, 0]
    assert matrix[:, 2].tolist() == [127, 64, 0]


def test_a_kept_graph_opens_from_its_files_and_half_files_are_never_found(model_dir: Path, tmp_path: Path) -> None:
    graph, shape = onnx_graph.build(model_dir, int8.DATA_FILE)
    import os
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f"{int8.DATA_FILE}.{gone.stdout.strip()}.tmp"  # what a writer killed halfway left
    killed.write_bytes(b"\0" * 1024)
    writing = tmp_path / f"{int8.DATA_FILE}.{os.getppid()}.tmp"  # a live process's, being written
    writing.write_bytes(b"\0" * 1024)
    kept = int8.write_built(tmp_path, graph, shape.hidden, shape.max_tokens, shape.pooling)
    assert not killed.exists()
    assert writing.exists()
    writing.unlink()
    found = int8.find(tmp_path)
    assert found == kept
    assert (tmp_path / int8.DATA_FILE).stat().st_size > 0
    assert (tmp_path / int8.MODEL_FILE).stat().st_size < 200_000  # the weights are beside it, not inside
    ids, mask = Tokens.in_directory(model_dir).feed(TEXTS, shape.max_tokens)
    from_memory = int8.Int8Runner(kept, 1, graph=graph)(ids, mask)
    assert np.array_equal(int8.Int8Runner(found, 1)(ids, mask), from_memory)
    (tmp_path / int8.DATA_FILE).unlink()  # a graph without its weights is not an export
    assert int8.find(tmp_path) is None
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"hidden_act": "gelu_new"}, "活性化関数 gelu_new"),
        ({"model_type": "deberta-v2"}, "deberta-v2 の形"),
        ({"position_embedding_type": "relative_key"}, "相対位置"),
    ],
)
def test_a_model_of_another_shape_is_left_to_torch(model_dir: Path, tmp_path: Path, change: dict, reason: str) -> None:
    import shutil

    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **change}))
    assert reason in (onnx_graph.unsupported(copy) or "")
    assert onnx_graph.unsupported(model_dir) is None


def test_a_pooling_that_leaves_out_the_prompt_is_left_to_torch(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    pooling = json.loads((copy / "1_Pooling" / "config.json").read_text())
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "include_prompt": False}))
    assert "前置き" in (onnx_graph.unsupported(copy) or "")
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode_max_tokens": True}))
    assert "プーリング" in (onnx_graph.unsupported(copy) or "")


def test_the_graph_is_written_without_the_onnx_package_and_onnx_reads_it(model_dir: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pipelines.model import onnx_graph\n"
        f"onnx_graph.build(Path({str(model_dir)!r}), 'weights.data')\n"
        "assert 'onnx' not in sys.modules, 'onnx was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import onnx

    graph, shape = onnx_graph.build(model_dir, "weights.data")
    model = onnx.load_from_string(graph.model)
    assert model.ir_version == 8
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17), ("com.microsoft", 1)}
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["sentence_embedding", "token_embeddings"]
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 3 * shape.layers  # query, key, value: one quantization of x
    assert ops.count("DynamicQuantizeMatMul") == 3 * shape.layers  # the attention's output and the two of the MLP
    norm = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in norm.attribute} == pytest.approx(
        {"axis": -1, "epsilon": 1e-12}
    )
    outside = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert {t.name for t in outside} == set(graph.outside)
    for entry in outside:
        where = {e.key: e.value for e in entry.external_data}
        assert where["location"] == "weights.data"
        assert int(where["offset"]) % onnx_graph.ALIGN == 0
        assert int(where["length"]) == graph.outside[entry.name].nbytes
        assert list(entry.dims) == list(graph.outside[entry.name].shape)
