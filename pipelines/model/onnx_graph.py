"""The int8 path's graph written straight from the model's weights: no torch, no export, about a second.

``int8.export`` traces the model with torch and quantizes the traced graph (seconds of torch's
import, tracing and ONNX Runtime's quantizer: 14 s on a 2-core CPU, most of a first start). The
encoders this product uses are all the same shape: BERT's post-LayerNorm transformer (BERT, RoBERTa,
XLM-RoBERTa, and LUKE for words without entities: GLuCoSE), then mean or CLS pooling. This module
writes that graph itself from ``config.json`` and the weights, each linear layer's matrix quantized
per output channel as ONNX Runtime's dynamic quantization does (symmetric int8, scale = largest
magnitude × 2 / 254), run as ONNX Runtime's ``DynamicQuantizeMatMul`` (the query, key and value
products share one quantization of their input, as the quantizer's graph does); ``quantized=False`` writes the
same graph in float32, which tests compare with the model as sentence-transformers runs it.

A model of another shape (another activation, relative positions, a layer after pooling other than
normalisation) is not written here: ``unsupported`` says why, and the torch export is used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.model import onnx_proto, torch_file

# model_type → where its token positions start: "padding" counts from the padding id + 1 (fairseq's
# RoBERTa and LUKE), "zero" from 0 (BERT)
POSITIONS = {"luke": "padding", "xlm-roberta": "padding", "roberta": "padding", "bert": "zero"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
OPSET = 17
PRODUCER = "japanese-document-search"


@dataclass(frozen=True)
class Shape:
    """What the graph needs to know of ``config.json`` and the pooling."""

    model_type: str
    hidden: int
    heads: int
    layers: int
    epsilon: float
    pad_id: int
    pooling: str
    max_tokens: int


def shape_of(directory: Path) -> Shape:
    """What the graph of the model in ``directory`` needs to know; ``ValueError`` (Japanese) where it is not written here."""
    return _shape(directory)


def unsupported(directory: Path) -> str | None:
    """Why the model in ``directory`` cannot be written here (Japanese), or None when it can."""
    try:
        _shape(directory)
    except (OSError, ValueError, KeyError) as error:
        return str(error) or type(error).__name__
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        return "重みのファイルがありません"
    return None


def _shape(directory: Path) -> Shape:
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in POSITIONS:
        raise ValueError(f"{model_type} の形のモデルです")
    if config.get("hidden_act") != "gelu":
        raise ValueError(f"活性化関数 {config.get('hidden_act')} のモデルです")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("相対位置のモデルです")
    modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in sorted(modules, key=lambda m: m["idx"])]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ValueError("変換器とプーリング以外の層を持つモデルです")
    if any(m.get("path") for m in modules if m["type"].endswith("Transformer")):
        raise ValueError("変換器が別のフォルダーにあります")
    pooling_folder = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling_config = json.loads((directory / pooling_folder / "config.json").read_text(encoding="utf-8"))
    modes = [k for k, on in pooling_config.items() if k.startswith("pooling_mode") and on]
    pooling = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(modes[0]) if modes else None
    if len(modes) != 1 or pooling is None:
        raise ValueError(f"プーリング（{', '.join(modes)}）に対応していません")
    if pooling_config.get("include_prompt", True) is False:
        raise ValueError("前置きの語をプーリングから除くモデルです")
    st_config = json.loads((directory / "sentence_bert_config.json").read_text(encoding="utf-8"))
    if st_config.get("do_lower_case"):
        raise ValueError("小文字化するモデルです")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if hidden % heads:
        raise ValueError("注意の頭の数が隠れ層の幅を割り切りません")
    return Shape(
        model_type=model_type,
        hidden=hidden,
        heads=heads,
        layers=int(config["num_hidden_layers"]),
        epsilon=float(config.get("layer_norm_eps", 1e-12)),
        pad_id=int(config.get("pad_token_id", 0) or 0),
        pooling=pooling,
        max_tokens=_max_tokens(directory, st_config, config, model_type),
    )


def _max_tokens(directory: Path, st_config: dict, config: dict, model_type: str) -> int:
    """The most tokens the model reads, as sentence-transformers sets it: its own setting, else the tokenizer's."""
    if st_config.get("max_seq_length"):
        return int(st_config["max_seq_length"])
    try:
        tokenizer = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        return int(tokenizer["model_max_length"])
    except (OSError, ValueError, KeyError, TypeError):
        reserved = 2 if POSITIONS[model_type] == "padding" else 0  # positions 0 and 1 are the padding's
        return int(config["max_position_embeddings"]) - reserved


def read_weights(directory: Path) -> dict[str, np.ndarray]:
    """The encoder's float32 weights by name, without any model class's prefix (``bert.``, ``roberta.``…)."""
    path = directory / "model.safetensors"
    if path.is_file():
        from safetensors.numpy import load_file

        weights = load_file(str(path))
    else:  # an older hub model (GLuCoSE): torch's file, read without torch where it is in torch's zip form
        try:
            weights = torch_file.read(directory / "pytorch_model.bin")
        except ValueError:
            import torch

            state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
            weights = {name: value.float().numpy() for name, value in state.items()}
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        if not name.startswith(("embeddings.", "encoder.")):
            _, _, rest = name.partition(".")
            if not rest.startswith(("embeddings.", "encoder.")):
                continue  # the pooler, LUKE's entity embeddings, a task head: unused for sentence vectors
            name = rest
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A linear layer's (out × in) float32 matrix as (in × out) int8 and a float32 scale per output channel.

    ONNX Runtime's per-channel symmetric quantization, in its types: the scale is twice the channel's
    largest magnitude over 254 in float64, stored as float32 (1 for an all-zero channel); the weight
    divided by it in float32, rounded half to even, clipped to [-128, 127].
    """
    largest = np.abs(weight).max(axis=1)
    scale = (largest.astype(np.float64) * 2) / 254.0
    stored = np.where(scale < np.finfo(np.float32).tiny, 1.0, scale).astype(np.float32)
    quantized = np.clip(np.round(weight / stored[:, None]), -128, 127).astype(np.int8)
    return np.ascontiguousarray(quantized.T), stored


# A constant this large is kept beside the graph (ONNX's external data), not inside it: the graph is
# then a few kilobytes, and the weights go to ONNX Runtime as they are, never copied into protobuf.
OUTSIDE_BYTES = 1024
ALIGN = 64


@dataclass(frozen=True)
class Graph:
    """A graph (serialised, its large constants outside it) and those constants, by name.

    ``session`` options hand the constants to ONNX Runtime from memory; ``write`` keeps both on
    disk, the constants in one file beside the graph, where a later ``InferenceSession(path)`` finds them.
    """

    model: bytes
    data_file: str
    outside: dict[str, np.ndarray]

    def add_to(self, options: object) -> list[object]:
        """Give ONNX Runtime ``options`` the outside constants from memory; the values must outlive the session."""
        from onnxruntime import OrtValue

        names = list(self.outside)
        values = [OrtValue.ortvalue_from_numpy(self.outside[name]) for name in names]
        options.add_external_initializers(names, values)  # type: ignore[attr-defined]
        return values

    def write(self, path: Path) -> None:
        """The graph at ``path`` and its constants in ``data_file`` beside it, each written beside its name and renamed."""
        data, partial = path.parent / self.data_file, path.parent / f"{self.data_file}.{os.getpid()}.tmp"
        try:
            with open(partial, "wb") as out:
                for value in self.outside.values():
                    out.write(b"\0" * (-out.tell() % ALIGN))
                    out.write(np.ascontiguousarray(value).tobytes())
            os.replace(partial, data)
            partial = path.parent / f"{path.name}.{os.getpid()}.tmp"
            partial.write_bytes(self.model)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)


class _Graph:
    """Nodes and constants of one ONNX graph, named as they are added (``onnx_proto`` encodes them)."""

    def __init__(self, data_file: str) -> None:
        self.data_file = data_file
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self.outside: dict[str, np.ndarray] = {}
        self._offset = 0
        self._count = 0

    def constant(self, name: str, value: np.ndarray) -> str:
        value = np.asarray(value)
        if value.nbytes < OUTSIDE_BYTES:
            self.initializers.append(onnx_proto.tensor(name, value))
            return name
        value = np.ascontiguousarray(value)
        self._offset += -self._offset % ALIGN
        where = (self.data_file, self._offset, value.nbytes)
        self.initializers.append(onnx_proto.tensor(name, dtype=value.dtype, shape=value.shape, outside=where))
        self._offset += value.nbytes
        self.outside[name] = value
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        """One node of one output; returns the output's name."""
        return self.outputs(op, inputs, 1, domain, **attributes)[0]

    def outputs(self, op: str, inputs: list[str], count: int, domain: str = "", **attributes: Any) -> list[str]:
        """One node of ``count`` outputs; returns their names."""
        self._count += 1
        names = [f"{op.lower()}_{self._count}_{i}" for i in range(count)]
        self.nodes.append(onnx_proto.node(op, inputs, names, domain, **attributes))
        return names


def build(directory: Path, data_file: str, quantized: bool = True) -> tuple[Graph, Shape]:
    """The model in ``directory`` as one ONNX graph (token ids and mask in; sentence vector and token states
    out, as ``int8.export_float32`` writes it); its linear layers in int8 unless ``quantized`` is False.
    ``data_file``: the name of the file its constants are kept in, beside the graph's."""
    shape = _shape(directory)
    return build_from(read_weights(directory), shape, data_file, quantized), shape


def build_from(weights: dict[str, np.ndarray], shape: Shape, data_file: str, quantized: bool) -> Graph:
    """``build``'s graph from weights already read (``read_weights``)."""
    graph = _Graph(data_file)
    g = graph.node
    d, heads = shape.hidden, shape.heads
    size = d // heads

    def quantized_matrix(name: str) -> tuple[str, str, str, str]:
        """A linear layer's int8 matrix, its scale and zero point per output channel, and its bias."""
        matrix, scale = quantize_rows(weights[f"{name}.weight"])
        return (
            graph.constant(f"{name}.q", matrix),
            graph.constant(f"{name}.scale", scale),
            graph.constant(f"{name}.zero", np.zeros(len(scale), dtype=np.int8)),
            graph.constant(f"{name}.bias", weights[f"{name}.bias"]),
        )

    def linear(x: str, name: str) -> str:
        if not quantized:  # the (out × in) matrix as it is, read transposed: no copy of 340 MB to make
            weight = graph.constant(f"{name}.weight", weights[f"{name}.weight"])
            product = g("FusedMatMul", [x, weight], domain="com.microsoft", transB=1, alpha=1.0)
            return g("Add", [product, graph.constant(f"{name}.bias", weights[f"{name}.bias"])])
        return g("DynamicQuantizeMatMul", [x, *quantized_matrix(name)], domain="com.microsoft")

    def shared(x: str, names: list[str]) -> list[str]:
        """Several linear layers of one input: ``x`` quantized once (as ONNX Runtime's quantizer does)."""
        if not quantized:
            return [linear(x, name) for name in names]
        xq, x_scale, x_zero = graph.outputs("DynamicQuantizeLinear", [x], 3)
        out = []
        for name in names:
            matrix, scale, zero, bias = quantized_matrix(name)
            inputs = [xq, matrix, x_scale, scale, x_zero, zero, bias]
            out.append(g("MatMulIntegerToFloat", inputs, domain="com.microsoft"))
        return out

    def layer_norm(x: str, name: str) -> str:
        scale = graph.constant(f"{name}.weight", weights[f"{name}.weight"])
        bias = graph.constant(f"{name}.bias", weights[f"{name}.bias"])
        return g("LayerNormalization", [x, scale, bias], axis=-1, epsilon=shape.epsilon)

    # token positions, as the model's embeddings compute them
    if POSITIONS[shape.model_type] == "padding":
        padding = g("Equal", ["input_ids", graph.constant("pad_id", np.array(shape.pad_id))])
        real = g("Cast", [g("Not", [padding])], to=onnx_proto.INT64)
        counted = g("Mul", [g("CumSum", [real, graph.constant("axis1", np.array(1))]), real])
        positions = g("Add", [counted, graph.constant("pad_offset", np.array(shape.pad_id))])
    else:
        width = g("Gather", [g("Shape", ["input_ids"]), graph.constant("one", np.array(1))])
        positions = g("Range", [graph.constant("zero", np.array(0)), width, graph.constant("step", np.array(1))])
    words = g("Gather", [graph.constant("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"])
    places = g(
        "Gather", [graph.constant("position_embeddings", weights["embeddings.position_embeddings.weight"]), positions]
    )
    types = weights.get("embeddings.token_type_embeddings.weight")
    summed = g("Add", [words, places])
    if types is not None:
        summed = g("Add", [summed, graph.constant("token_type", types[0])])
    x = layer_norm(summed, "embeddings.LayerNorm")

    # the additive mask over keys: 0 for a token, float32's lowest for padding (as transformers adds it)
    mask_float = g("Cast", ["attention_mask"], to=onnx_proto.FLOAT)
    lowest = graph.constant("lowest", np.array(np.finfo(np.float32).min, dtype=np.float32))
    one = graph.constant("one_float", np.array(1.0, dtype=np.float32))
    blocked = g("Mul", [g("Sub", [one, mask_float]), lowest])
    key_mask = g("Unsqueeze", [blocked, graph.constant("axes12", np.array([1, 2]))])
    split_heads = graph.constant("split_heads", np.array([0, 0, heads, size]))
    merge_heads = graph.constant("merge_heads", np.array([0, 0, d]))
    root = graph.constant("root", np.array(np.sqrt(size), dtype=np.float32))
    half = graph.constant("half", np.array(0.5, dtype=np.float32))
    sqrt2 = graph.constant("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))

    for i in range(shape.layers):
        prefix = f"encoder.layer.{i}"

        # the query, key and value projections share one quantization of ``x``
        own = f"{prefix}.attention.self"
        parts = shared(x, [f"{own}.{n}" for n in ("query", "key", "value")])
        query, key, value = (g("Transpose", [g("Reshape", [p, split_heads])], perm=[0, 2, 1, 3]) for p in parts)
        scores = g("Div", [g("MatMul", [query, g("Transpose", [key], perm=[0, 1, 3, 2])]), root])
        attention = g("Softmax", [g("Add", [scores, key_mask])], axis=-1)
        context = g("Reshape", [g("Transpose", [g("MatMul", [attention, value])], perm=[0, 2, 1, 3]), merge_heads])
        attended = g("Add", [linear(context, f"{prefix}.attention.output.dense"), x])
        attended = layer_norm(attended, f"{prefix}.attention.output.LayerNorm")
        inner = linear(attended, f"{prefix}.intermediate.dense")
        # gelu, exact (erf), as ``hidden_act: gelu`` is: x · (1 + erf(x / √2)) / 2
        activated = g("Mul", [g("Mul", [inner, half]), g("Add", [one, g("Erf", [g("Div", [inner, sqrt2])])])])
        x = g("Add", [linear(activated, f"{prefix}.output.dense"), attended])
        x = layer_norm(x, f"{prefix}.output.LayerNorm")

    tokens = g("Identity", [x])
    if shape.pooling == "cls":
        pooled = g("Gather", [tokens, graph.constant("first", np.array(0))], axis=1)
    else:
        weights_of = g("Unsqueeze", [mask_float, graph.constant("axis_last", np.array([-1]))])
        total = g(
            "ReduceSum", [g("Mul", [tokens, weights_of]), graph.constant("axis_tokens", np.array([1]))], keepdims=0
        )
        count = g("ReduceSum", [weights_of, graph.constant("axis_tokens2", np.array([1]))], keepdims=0)
        floor = graph.constant("floor", np.array(1e-9, dtype=np.float32))
        pooled = g("Div", [total, g("Max", [count, floor])])
    graph.nodes.append(onnx_proto.node("Identity", [pooled], ["sentence_embedding"]))
    graph.nodes.append(onnx_proto.node("Identity", [tokens], ["token_embeddings"]))
    inputs = [
        onnx_proto.value_info(name, onnx_proto.INT64, ["batch", "tokens"]) for name in ("input_ids", "attention_mask")
    ]
    outputs = [
        onnx_proto.value_info("sentence_embedding", onnx_proto.FLOAT, ["batch", d]),
        onnx_proto.value_info("token_embeddings", onnx_proto.FLOAT, ["batch", "tokens", d]),
    ]
    opsets = {"": OPSET, "com.microsoft": 1}
    model = onnx_proto.model(graph.nodes, graph.initializers, inputs, outputs, opsets, "encoder", PRODUCER)
    return Graph(model, data_file, graph.outside)
