"""The int8 path: the model exported to ONNX with its pooling, its matrix products quantized to int8.

On a CPU without native bfloat16 (AVX2 and FMA only: most AMD and older Intel machines), float32 is
what torch computes, and int8 matrix products are the fast path that is left. ONNX Runtime's dynamic
quantization (weights int8 per output channel, activations quantized per batch) runs them through its
own kernels on AVX2, AVX-512 and VNNI alike, and a short question runs without torch's per-call
overhead. The export takes seconds once per model and library versions, and is kept on disk
(``pipelines/precision_cache.py`` says where); the precision policy decides whether it is used.

Only models that are a transformer and a pooling (mean or CLS), with or without normalisation, as
GLuCoSE is, are exported; for anything else ``exportable`` says why not.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from pipelines.model.onnx_graph import Graph

logger = logging.getLogger(__name__)

MODEL_FILE = "model.int8.onnx"
DATA_FILE = "model.int8.onnx.data"  # a graph written from the weights keeps its constants here
# ONNX Runtime's graph rewrites left out (slower than what they replace on the CPUs measured)
UNFUSED = ["SkipLayerNormFusion"]
META_FILE = "int8.json"
# Raised when the export or the graph changes, so that an old file on disk is not used.
# 2: the graph also gives each token's state (``token_embeddings``), which a passage's sentences are pooled from.
EXPORT_REVISION = 2


@dataclass(frozen=True)
class Int8Model:
    """An exported, quantized model on disk, and what a runner needs to know about it."""

    path: Path
    dimension: int
    max_tokens: int
    pooling: str


def exportable(model: SentenceTransformer) -> str | None:
    """Why ``model`` cannot take the int8 path (in Japanese), or None when it can."""
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    modules = list(model)
    if len(modules) < 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], Pooling):
        return "変換器とプーリング以外の層を持つモデルです"
    if any(not isinstance(m, Normalize) for m in modules[2:]):
        return "プーリングの後に層を持つモデルです"
    if _pooling(modules[1]) is None:
        return f"プーリング（{getattr(modules[1], 'pooling_mode', '?')}）に対応していません"
    if getattr(modules[0], "do_lower_case", False):
        return "小文字化するモデルです"
    return None


def _pooling(pooling: Any) -> str | None:
    mode = getattr(pooling, "pooling_mode", None)
    return mode if mode in ("mean", "cls") else None


def export(model: SentenceTransformer, directory: Path) -> Int8Model:
    """Export ``model`` (float32, on the CPU) with its pooling to ONNX, quantize it to int8 into ``directory``.

    The float32 graph is written to a temporary file and removed; the int8 one is written beside its
    final name and renamed, so that a crash leaves no half file that a later start would load.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        float_path = Path(scratch) / "model.onnx"
        pooling = export_float32(model, float_path)
        partial = Path(scratch) / MODEL_FILE
        quantize(float_path, partial)
        exported = Int8Model(
            directory / MODEL_FILE,
            dimension=int(model.get_embedding_dimension() or 0),
            max_tokens=int(model.max_seq_length or model.tokenizer.model_max_length),
            pooling=pooling,
        )
        os.replace(partial, exported.path)
    (directory / DATA_FILE).unlink(missing_ok=True)  # a graph written from the weights before kept its constants there
    _write_meta(exported, "torch", None)
    return exported


def write_built(directory: Path, graph: Graph, dimension: int, max_tokens: int, pooling: str) -> Int8Model:
    """Keep a graph written from the weights (``onnx_graph.build``) in ``directory``, as ``export`` keeps its own:
    its constants in ``DATA_FILE`` beside it, both renamed into place before the facts that make it found."""
    directory.mkdir(parents=True, exist_ok=True)
    built = Int8Model(directory / MODEL_FILE, dimension=dimension, max_tokens=max_tokens, pooling=pooling)
    (directory / META_FILE).unlink(missing_ok=True)  # an older export's facts must not name the new files meanwhile
    for partial in [*directory.glob(f"{DATA_FILE}.*.tmp"), *directory.glob(f"{MODEL_FILE}.*.tmp")]:
        if not _alive(partial.name.rsplit(".", 2)[-2]):
            partial.unlink(missing_ok=True)  # what a writer killed halfway left (0.2 GB)
    graph.write(built.path)
    _write_meta(built, "weights", graph.data_file)
    return built


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` (a number from a file's name) is running; False for no number."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _write_meta(exported: Int8Model, made_by: str, data_file: str | None) -> None:
    """The export's facts beside it, written last: a graph without them is not used (``find``)."""
    meta = {
        "revision": EXPORT_REVISION,
        "dimension": exported.dimension,
        "max_tokens": exported.max_tokens,
        "pooling": exported.pooling,
        "made_from": made_by,
        "data": data_file,
    }
    partial_meta = exported.path.parent / f"{META_FILE}.{os.getpid()}.tmp"
    partial_meta.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(partial_meta, exported.path.parent / META_FILE)  # renamed too: a reader never sees half of it


def quantize(float_path: Path, path: Path, at_once: bool = True) -> None:
    """ONNX Runtime's dynamic quantization of ``float_path`` into ``path``: int8 weights per output channel.

    ``at_once`` computes each weight's channels in one numpy pass instead of ONNX Runtime's loop over
    them one by one (83,000 channels for GLuCoSE: 6–8 s, about half the quantizer's time); the file
    is the same, byte for byte (a test compares the two).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    module = importlib.import_module("onnxruntime.quantization.quantize")  # the package's name is a function
    own = module.ONNXQuantizer
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing at WARNING
    if at_once:
        setattr(module, "ONNXQuantizer", _channels_at_once(own))  # noqa: B010  # the name quantize_dynamic calls
    try:
        quantize_dynamic(float_path, path, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        setattr(module, "ONNXQuantizer", own)  # noqa: B010
        quiet.setLevel(level)


def _channels_at_once(base: Any) -> Any:
    """ONNX Runtime's quantizer, its per-channel weights computed for all channels of a weight at once.

    Only for the case the export uses (int8 weights, symmetric, full range, no overrides, float32);
    any other goes to ONNX Runtime's own code. The arithmetic is ONNX Runtime's, in the same types:
    the scale is twice the channel's largest magnitude over 254 in float64, stored as float32; the
    weight divided by it in float32, rounded half to even, clipped to [-128, 127]; zero points 0.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX, find_by_name

    class AtOnce(base):
        def quantize_weight_per_channel_impl(
            self: Any,
            weight_name: str,
            weight_qType: int,  # ONNX Runtime's name (it is passed by keyword nowhere)
            channel_axis: int,
            reduce_range: bool = True,
            keep_float_weight: bool = False,
        ) -> tuple[str, str, str]:
            initializer = find_by_name(weight_name, self.model.initializer())
            plain = (
                initializer is not None
                and initializer.data_type == onnx.TensorProto.FLOAT
                and weight_qType == onnx.TensorProto.INT8
                and self.is_weight_symmetric(weight_qType)
                and not (self.reduce_range and reduce_range)
                and self.min_real_range is None
                and weight_name not in self.tensor_quant_overrides.overrides
                and not keep_float_weight
            )
            if not plain:
                return super().quantize_weight_per_channel_impl(
                    weight_name, weight_qType, channel_axis, reduce_range, keep_float_weight
                )
            weights = numpy_helper.to_array(initializer)
            axis = channel_axis % weights.ndim
            channels = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)
            largest = np.maximum(-np.minimum(channels.min(axis=1), 0), np.maximum(channels.max(axis=1), 0))
            scale = (largest.astype(np.float64) * 2) / 254.0
            tiny = scale < np.finfo(np.float32).tiny  # an all-zero channel: scale 1, as ONNX Runtime has it
            stored = np.where(tiny, 1.0, scale).astype(np.float32)
            quantized = np.clip(np.round(channels / stored[:, None]), -128, 127).astype(np.int8)
            shape = [weights.shape[axis], *np.delete(weights.shape, axis)]
            quantized = np.moveaxis(quantized.reshape(shape), 0, axis)
            names = (weight_name + TENSOR_NAME_QUANT_SUFFIX, weight_name + "_zero_point", weight_name + "_scale")
            count = [weights.shape[axis]]
            self.model.initializer_extend(
                [
                    onnx.helper.make_tensor(names[2], initializer.data_type, count, stored.tolist()),
                    onnx.helper.make_tensor(names[1], weight_qType, count, [0] * count[0]),
                ]
            )
            self.model.initializer_extend([numpy_helper.from_array(quantized, names[0])])
            return names

    return AtOnce


def export_float32(model: SentenceTransformer, path: Path) -> str:
    """Write ``model`` with its pooling as one float32 ONNX graph (token ids in, sentence vector out); returns the pooling."""
    import torch

    reason = exportable(model)
    if reason is not None:
        raise ValueError(reason)
    pooling = _pooling(model[1])
    assert pooling is not None
    backbone: Any = model[0].auto_model  # a transformers model (LukeModel for GLuCoSE)

    class Pooled(torch.nn.Module):
        """The backbone and its pooling, as one graph from token ids to a sentence vector."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            tokens = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if pooling == "cls":
                return tokens[:, 0], tokens
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9), tokens

    sample = model.tokenizer(["日本語の文です。", "二つめ"], padding=True, return_tensors="pt")
    inputs = (sample["input_ids"], sample["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    was_training = backbone.training
    backbone.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its successor
            torch.onnx.export(
                Pooled(),
                inputs,
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding", "token_embeddings"],
                dynamic_axes={
                    **axes,
                    "sentence_embedding": {0: "batch"},
                    "token_embeddings": {0: "batch", 1: "tokens"},
                },
                opset_version=17,
                dynamo=False,
            )
    finally:
        backbone.train(was_training)
    return pooling


def find(directory: Path) -> Int8Model | None:
    """The exported model in ``directory``, or None when there is none of this revision."""
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = directory / MODEL_FILE
    if meta.get("revision") != EXPORT_REVISION or not path.is_file():
        return None
    if meta.get("data") and not (directory / str(meta["data"])).is_file():
        return None
    return Int8Model(path, int(meta["dimension"]), int(meta["max_tokens"]), str(meta["pooling"]))


class Int8Runner:
    """One ONNX Runtime session of an exported model: token ids in, sentence vectors (not normalised) out.

    ``graph``: the model in memory, where it is at hand (a graph just written), instead of its file.
    """

    def __init__(self, exported: Int8Model, threads: int = 0, graph: Graph | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's own choice, one thread per physical core
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.model = exported
        self._values = graph.add_to(options) if graph is not None else []  # the session reads them: kept alive
        source = graph.model if graph is not None else str(exported.path)
        # ONNX Runtime's fused residual-and-LayerNorm kernel took 101.7 ms of a 16 × 128-token batch where
        # the Add and LayerNormalization it replaces take 39.7 (2-core AVX512 CPU, its own profiler)
        self._session = ort.InferenceSession(
            source, options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED
        )

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return np.asarray(self._session.run(["sentence_embedding"], feeds)[0], dtype=np.float32)

    def with_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sentence vectors and each token's state (batch × tokens × dimension), from one run."""
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        pooled, states = self._session.run(["sentence_embedding", "token_embeddings"], feeds)
        return np.asarray(pooled, dtype=np.float32), np.asarray(states, dtype=np.float32)


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of several texts as one padded batch and its attention mask."""
    width = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask
