"""How a model reads a text: its tokenizer, or a LUKE model's sentencepiece ids, checked against the ids it was trained on."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import TokenizerMismatchError
from pipelines.model import hub, int8
from pipelines.model.precision import TOKENIZER_CHECK_TEXTS

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# A LUKE model's tokenizer arguments for every call: with them, "<s>" in a document is three
# characters, not a control token, as the sentencepiece model reads it.
LUKE_TEXT_KWARGS = {"split_special_tokens": True}


class Tokens:
    """Counts a model's tokens and feeds the int8 path its ids: a LUKE model's sentencepiece model, else its tokenizer.

    A fast (Rust) tokenizer rewrites its truncation settings on each call and fails with "Already
    borrowed" when another thread is tokenizing meanwhile; the ingest counts tokens in a background
    thread while the model encodes, so counting and feeding each get a copy of their own.
    """

    def __init__(self, tokenizer: Any = None, pieces: Any = None) -> None:
        self.tokenizer = tokenizer  # counts tokens (and feeds the int8 path) when there are no pieces
        self.pieces = pieces  # a LUKE model's sentencepiece model: its ids are derived from the pieces
        self._feeder: Any = None  # the tokenizer that feeds the int8 path: not the counting one

    @property
    def text_kwargs(self) -> dict[str, Any]:
        """The tokenizer's arguments for every call (a LUKE model's ``LUKE_TEXT_KWARGS``)."""
        return dict(LUKE_TEXT_KWARGS) if self.pieces is not None else {}

    @classmethod
    def of_model(cls, model: SentenceTransformer, model_name: str) -> Tokens:
        """The tokens of a loaded model; a LUKE model's tokenizer is checked to give its trained ids."""
        backbone = getattr(model[0], "auto_model", None)
        pieces = None
        if getattr(getattr(backbone, "config", None), "model_type", None) == "luke":
            pieces = check_luke_tokenizer(model, model_name)
        tokenizer = model.tokenizer
        return cls(copy.deepcopy(tokenizer) if tokenizer.is_fast else tokenizer, pieces)

    @classmethod
    def in_directory(cls, directory: Path) -> Tokens:
        """The tokens of a model from its files, without the model: a LUKE model's sentencepiece file, else its tokenizer."""
        pieces = luke_pieces(directory)
        if pieces is not None:
            return cls(pieces=pieces)
        from transformers import AutoTokenizer

        with hub.quiet():
            return cls(AutoTokenizer.from_pretrained(str(directory), local_files_only=True))

    def count(self, text: str) -> int:
        """Tokens the model reads for ``text``, its special tokens included, uncut."""
        if self.pieces is not None:
            # the ids a LUKE model is fed are <s>, one per sentencepiece piece, </s> (checked at load)
            return len(self.pieces.encode(text)) + 2
        return len(self.tokenizer(text, truncation=False, verbose=False, **self.text_kwargs)["input_ids"])

    def offsets(self, text: str, limit: int) -> list[tuple[int, int]] | None:
        """Where in ``text`` each id that ``feed`` gives it comes from: (start, end) in characters, (-1, -1)
        for a special token; None when the tokenizer cannot tell (a slow one)."""
        if self.pieces is not None:
            proto = self.pieces.encode(text, return_type="proto")
            chars = _byte_to_char(text)
            inner = [(chars[p.begin], chars[p.end]) for p in proto.pieces[: limit - 2]]
            return [(-1, -1), *inner, (-1, -1)]
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        features = self._fast_feeder()(
            text,
            truncation=True,
            max_length=limit,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            **self.text_kwargs,
        )
        pairs = zip(features["offset_mapping"], features["special_tokens_mask"], strict=True)
        return [(-1, -1) if special else (int(a), int(b)) for (a, b), special in pairs]

    def _fast_feeder(self) -> Any:
        if self._feeder is None:  # counting runs in another thread: a fast tokenizer of its own
            fast = getattr(self.tokenizer, "is_fast", False)
            self._feeder = copy.deepcopy(self.tokenizer) if fast else self.tokenizer
        return self._feeder

    def feed(self, texts: Sequence[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``texts``, each cut at ``limit``, as one padded batch and its attention mask."""
        if self.pieces is not None:
            return int8.pad([luke_ids(self.pieces, t, limit) for t in texts], pad_id=1)
        features = self._fast_feeder()(
            list(texts), padding=True, truncation=True, max_length=limit, return_tensors="np", **self.text_kwargs
        )
        return features["input_ids"], features["attention_mask"]


def _byte_to_char(text: str) -> list[int]:
    """For each byte offset of ``text`` in UTF-8 (and its end), the offset of the character it falls in."""
    chars: list[int] = []
    for index, char in enumerate(text):
        chars.extend([index] * len(char.encode("utf-8")))
    chars.append(len(text))
    return chars


def luke_ids(pieces: Any, text: str, limit: int | None = None) -> list[int]:
    """The ids a LUKE model (fairseq vocabulary) is fed for ``text``: <s>, each piece shifted by one, </s>.

    Cut, as the tokenizer cuts, to ``limit`` ids with both special ones.
    """
    ids = [i + 1 if i else 3 for i in pieces.encode(text)]
    if limit is not None:
        ids = ids[: limit - 2]
    return [0, *ids, 2]


def luke_pieces(directory: Path) -> Any:
    """A LUKE model's sentencepiece model from its directory, or None for another model."""
    import sentencepiece as spm

    vocab = directory / "sentencepiece.bpe.model"
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if config.get("model_type") != "luke" or not vocab.is_file():
        return None
    return spm.SentencePieceProcessor(model_file=str(vocab))


def check_luke_tokenizer(model: SentenceTransformer, model_name: str) -> Any:
    """Compare the ids the model will be fed with the fairseq ids it was trained on; its sentencepiece model.

    For a text ``t`` and its sentencepiece model ``sp``: ``[0] + [i + 1 if i else 3 for i in
    sp.encode(t)] + [2]``. transformers 5 silently shifts every id by one; this refuses to run then.
    """
    import sentencepiece as spm

    vocab_file = Path(getattr(model.tokenizer, "vocab_file", "") or "")
    if vocab_file.name != "sentencepiece.bpe.model" or not vocab_file.is_file():
        raise TokenizerMismatchError(
            f"「{model_name}」のトークナイザ（{type(model.tokenizer).__name__}）から sentencepiece のモデルが"
            "見つからず、学習時と同じトークン ID になるか確かめられません。requirements.txt の版"
            "（transformers==4.57.6）を入れてください。"
        )
    sp = spm.SentencePieceProcessor(model_file=str(vocab_file))
    for text in TOKENIZER_CHECK_TEXTS:
        expected = luke_ids(sp, text)
        features = model.preprocess([text], processing_kwargs={"text": dict(LUKE_TEXT_KWARGS)})
        fed = features["input_ids"][0].tolist()
        if fed != expected:
            import transformers

            raise TokenizerMismatchError(
                f"「{model_name}」のトークナイザが学習時と違うトークン ID を出します"
                f"（{text!r}: 期待 {expected[:8]}…, 実際 {fed[:8]}…）。transformers {transformers.__version__} では"
                "検索結果が黙って悪くなるため、requirements.txt の版（transformers==4.57.6）を入れてください。"
            )
    return sp
