"""The int8 export's quantizer: each weight's channels at once, the same file as ONNX Runtime's loop writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipelines.model.int8 import export_float32, quantize


def both_ways(float_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    """The file ONNX Runtime's own loop writes, and the one computed at once (which never falls back to the loop)."""
    own = tmp_path / "own.onnx"
    quantize(float_path, own, at_once=False)
    with monkeypatch.context() as patched:

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("a channel was quantized by ONNX Runtime's loop")

        patched.setattr(
            "onnxruntime.quantization.base_quantizer.BaseQuantizer.quantize_weight_per_channel_impl", refuse
        )
        quantize(float_path, tmp_path / "at-once.onnx")
    return own.read_bytes(), (tmp_path / "at-once.onnx").read_bytes()


def test_the_offline_models_int8_file_is_onnx_runtimes_byte_for_byte(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SentenceTransformer

    float_path = tmp_path / "model.onnx"
    export_float32(SentenceTransformer(str(model_dir), device="cpu"), float_path)
    own, at_once = both_ways(float_path, tmp_path, monkeypatch)
    assert at_once == own
    graph = onnx.load_from_string(at_once).graph
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) >= 12  # every linear layer, quantized


def test_edge_channels_quantize_as_onnx_runtime_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All zeros (scale 1), only negatives, only positives, halves that round to even, a huge and a tiny range."""
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(6, 8)).astype(np.float32)
    weights[:, 0] = 0.0
    weights[:, 1] = -np.abs(weights[:, 1])
    weights[:, 2] = np.abs(weights[:, 2])
    weights[:, 3] = np.array([127, 0.5, 1.5, 2.5, -0.5, -126.5], dtype=np.float32)  # scale 1: ties at .5
    weights[:, 4] *= 1e30
    weights[:, 5] *= 1e-40  # subnormal
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "edges", [x], [y], [numpy_helper.from_array(weights, "w")]
    )
    float_path = tmp_path / "edges.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), float_path)
    own, at_once = both_ways(float_path, tmp_path, monkeypatch)
    assert at_once == own
    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load_from_string(at_once).graph.initializer}
    assert stored["w_scale"][0] == 1.0  # the all-zero channel
    assert stored["w_quantized"][:, 3].tolist() == [127, 0, 2, 2, 0, -126]
