"""The torch path: a sentence-transformers model opened on a device, encoding under autocast, its weights kept in bfloat16."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import ModelLoadError
from pipelines.model import hub

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def open_model(source: hub.ModelSource, model_name: str, device: str, threads: int) -> SentenceTransformer:
    """The model from ``source`` on ``device``; ``ModelLoadError`` names the model, the cause and the fix."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    try:
        with hub.quiet():
            model = SentenceTransformer(source.target, device=device, local_files_only=source.local_only)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"埋め込みモデル「{model_name}」を読み込めません（{cause}）。" + hub.how_to_fix(model_name, hub.EMBEDDING)
        ) from error
    backbone = getattr(model[0], "auto_model", None)
    if backbone is None or model.tokenizer is None:
        raise ModelLoadError(f"「{model_name}」はテキスト用の sentence-transformers モデルではありません。")
    return model


def store_weights_in_bfloat16(model: SentenceTransformer) -> None:
    """Keep the linear layers' weights in bfloat16, as autocast would cast them on every batch.

    The results are the same bits (autocast rounds each weight to bfloat16 the same way); the
    cast is no longer paid per batch (a question's whole embedding, for one short text), and the
    weights take half the memory. float32 can no longer be computed after this.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            for name, value in list(module.named_parameters(recurse=False)):
                setattr(module, name, torch.nn.Parameter(value.detach().to(torch.bfloat16), requires_grad=False))


def encode(model: SentenceTransformer, texts: Sequence[str], precision: str, text_kwargs: dict[str, Any]) -> np.ndarray:
    """Vectors for ``texts`` as one batch, computed under autocast in ``precision`` (float32: none)."""
    import torch

    half = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
    with torch.autocast(model.device.type, dtype=half or torch.float32, enabled=half is not None):
        vectors = model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
            processing_kwargs={"text": text_kwargs},
        )
    return np.asarray(vectors, dtype=np.float32)


def encode_with_states(
    model: SentenceTransformer, texts: Sequence[str], precision: str, text_kwargs: dict[str, Any]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``encode``'s vectors (not normalised) and, for each text, its tokens' states (its own length,
    special tokens included), from the same forward pass: the model's own preprocessing and modules, as
    ``encode`` runs them, without ``encode``'s packing of the outputs."""
    import torch
    from sentence_transformers.util import batch_to_device

    half = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
    model.eval()
    features = batch_to_device(model.preprocess(list(texts), processing_kwargs={"text": text_kwargs}), model.device)
    with (
        torch.inference_mode(),
        torch.autocast(model.device.type, dtype=half or torch.float32, enabled=half is not None),
    ):
        out = model(features)
    vectors = out["sentence_embedding"].float().cpu().numpy()
    lengths = out["attention_mask"].sum(dim=1).tolist()
    tokens = out["token_embeddings"].float().cpu().numpy()
    return vectors.astype(np.float32), [row[: int(n)] for row, n in zip(tokens, lengths, strict=True)]
