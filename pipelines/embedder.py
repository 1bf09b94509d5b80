"""The embedder: a sentence-transformers model (GLuCoSE by default), loaded once, tokenized as it was trained."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from pipelines import hub
from pipelines.choices import Precision, QueryPrecision
from pipelines.errors import ModelLoadError, TokenizerMismatchError
from pipelines.precision import TOKENIZER_CHECK_TEXTS, PrecisionChoice, PrecisionPolicy

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each embedding batch."""
Stage = Callable[[str], None]
"""Called with what loading is doing now, in Japanese, for a face to show while a model loads."""

# The sentence whose embedding identifies a model in the store's metadata.
FINGERPRINT_TEXT = "この文は、保存されたベクトルがどの埋め込みモデルで作られたかを確かめるためのものです。"


@dataclass
class EmbeddingStats:
    """What the embedder has done since it was created: texts, their tokens, and seconds spent."""

    texts: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class TextEmbedder(Protocol):
    """What the pipelines need from an embedding model; ``Embedder`` is the in-process one."""

    model_name: str
    stats: EmbeddingStats

    def load(self, stage: Stage | None = None) -> None: ...

    @property
    def precision(self) -> PrecisionChoice: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def fingerprint(self) -> list[float]: ...

    def embed_documents(
        self, texts: Sequence[str], token_counts: Sequence[int] | None = None, progress: Progress | None = None
    ) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class Embedder:
    """Turns texts into normalised embeddings with a sentence-transformers model.

    The model is loaded on first use (or by ``load()``), from a hub name or a local directory, through
    the same code path either way. A LUKE model (GLuCoSE) is checked at load time to be fed exactly the
    token ids it was trained on.
    """

    def __init__(
        self,
        model_name: str,
        *,
        device: str = "",
        batch_size: int = 16,
        query_prefix: str = "",
        document_prefix: str = "",
        precision: Precision = "auto",
        query_precision: QueryPrecision = "auto",
    ) -> None:
        self.policy = PrecisionPolicy(precision, query_precision)
        self._precision = PrecisionChoice.undecided()
        self._query_model: Any = None  # the int8 copy of the model that embeds questions, when chosen
        self._loading = threading.RLock()  # reentrant: loading itself reads ``model``
        self.model_name = model_name
        self.device = device or None
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.stats = EmbeddingStats()
        self._model: SentenceTransformer | None = None
        # Tokenizer arguments for every call: with them, "<s>" in a document is three characters,
        # not a control token, as the sentencepiece model reads it.
        self._text_kwargs: dict[str, Any] = {}
        self._counter: Any = None  # the tokenizer that counts tokens; see load()
        self._pieces: Any = None  # a LUKE model's sentencepiece model, which counts its tokens faster
        self._weights = "float32"  # bfloat16 once the linear layers' weights are stored so

    # Loading ---------------------------------------------------------------------------------

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model; loads it on first access."""
        if self._model is None:
            self.load()
        assert self._model is not None
        return self._model

    def load(self, stage: Stage | None = None) -> None:
        """Load the model now; a failure raises ``ModelLoadError`` naming the model, the cause and the fix.

        Safe to call from several threads: one loads, the others wait for it. ``stage`` hears each step.
        """
        with self._loading:
            if self._model is None:
                self._load(stage or (lambda _: None))

    def _load(self, stage: Stage) -> None:
        started = time.perf_counter()
        stage("モデルのファイルを開いています（初回はダウンロードします）")
        model = self._open(self.model_name)
        backbone = getattr(model[0], "auto_model", None)
        if backbone is None or model.tokenizer is None:
            raise ModelLoadError(f"「{self.model_name}」はテキスト用の sentence-transformers モデルではありません。")
        if getattr(backbone.config, "model_type", None) == "luke":
            self._text_kwargs = {"split_special_tokens": True}
            stage("トークナイザが学習時と同じ ID を出すか確かめています")
            self._pieces = self._check_luke_tokenizer(model)
        # A fast (Rust) tokenizer rewrites its truncation settings on each call and fails with "Already
        # borrowed" when another thread is tokenizing meanwhile; the ingest counts tokens in a background
        # thread while encode runs, so counting gets its own copy. Slow tokenizers keep no such state.
        self._counter = copy.deepcopy(model.tokenizer) if model.tokenizer.is_fast else model.tokenizer
        self._model = model
        stage("計算精度を選んでいます")
        verdict = self.policy.choose(model.device.type, self._encode_in, lambda: int8_copy(model))
        self._precision, self._query_model = verdict.choice, verdict.question_model
        logger.info("%s: %s", self.model_name, self._precision)
        if self._precision.passages == "bfloat16" and self._precision.questions != "float32":
            self._store_weights_in_bfloat16()
        logger.info("loaded %s in %.1f s", self.model_name, time.perf_counter() - started)

    def _store_weights_in_bfloat16(self) -> None:
        """Keep the linear layers' weights in bfloat16, as autocast would cast them on every batch.

        The results are the same bits (autocast rounds each weight to bfloat16 the same way); the
        cast is no longer paid per batch (a question's whole embedding, for one short text), and the
        weights take half the memory. float32 can no longer be computed after this.
        """
        import torch

        for module in self.model.modules():
            if isinstance(module, torch.nn.Linear):
                # new tensors, not the old ones changed in place: the int8 copy keeps the float biases
                for name, value in list(module.named_parameters(recurse=False)):
                    setattr(module, name, torch.nn.Parameter(value.detach().to(torch.bfloat16), requires_grad=False))
        self._weights = "bfloat16"

    def _open(self, name: str) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        source = hub.locate(name, hub.EMBEDDING)  # fails in seconds when the model is neither here nor reachable
        try:
            with hub.quiet():
                return SentenceTransformer(source.target, device=self.device, local_files_only=source.local_only)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(
                f"埋め込みモデル「{name}」を読み込めません（{cause}）。" + hub.how_to_fix(name, hub.EMBEDDING)
            ) from error

    def _check_luke_tokenizer(self, model: SentenceTransformer) -> Any:
        """Compare the ids the model will be fed with the fairseq ids it was trained on.

        For a text ``t`` and its sentencepiece model ``sp``: ``[0] + [i + 1 if i else 3 for i in
        sp.encode(t)] + [2]``. transformers 5 silently shifts every id by one; this refuses to run then.
        """
        import sentencepiece as spm

        vocab_file = Path(getattr(model.tokenizer, "vocab_file", "") or "")
        if vocab_file.name != "sentencepiece.bpe.model" or not vocab_file.is_file():
            raise TokenizerMismatchError(
                f"「{self.model_name}」のトークナイザ（{type(model.tokenizer).__name__}）から sentencepiece のモデルが"
                "見つからず、学習時と同じトークン ID になるか確かめられません。requirements.txt の版"
                "（transformers==4.57.6）を入れてください。"
            )
        sp = spm.SentencePieceProcessor(model_file=str(vocab_file))
        for text in TOKENIZER_CHECK_TEXTS:
            expected = [0] + [i + 1 if i else 3 for i in sp.encode(text)] + [2]
            features = model.preprocess([text], processing_kwargs={"text": self._text_kwargs})
            fed = features["input_ids"][0].tolist()
            if fed != expected:
                import transformers

                raise TokenizerMismatchError(
                    f"「{self.model_name}」のトークナイザが学習時と違うトークン ID を出します"
                    f"（{text!r}: 期待 {expected[:8]}…, 実際 {fed[:8]}…）。transformers {transformers.__version__} では"
                    "検索結果が黙って悪くなるため、requirements.txt の版（transformers==4.57.6）を入れてください。"
                )
        return sp

    # Facts about the model ---------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        """Length of the embedding vectors."""
        dimension = self.model.get_embedding_dimension()
        assert dimension is not None
        return dimension

    @property
    def max_tokens(self) -> int:
        """The most tokens the model reads in one text, special tokens included."""
        return int(self.model.max_seq_length or self.model.tokenizer.model_max_length)

    def count_tokens(self, text: str) -> int:
        """Tokens the model would read for passage ``text`` (its prefix and special tokens included)."""
        return self._count(self.document_prefix + text)

    def _count(self, text: str) -> int:
        if self._counter is None:
            self.load()
        if self._pieces is not None:
            # the ids a LUKE model is fed are <s>, one per sentencepiece piece, </s> (checked at load)
            return len(self._pieces.encode(text)) + 2
        return len(self._counter(text, truncation=False, verbose=False, **self._text_kwargs)["input_ids"])

    def fingerprint(self) -> list[float]:
        """The embedding of a fixed sentence: tells this model's vectors from another model's."""
        return [float(x) for x in self._encode([FINGERPRINT_TEXT])[0]]

    # Embedding ---------------------------------------------------------------------------------

    @property
    def precision(self) -> PrecisionChoice:
        """What passages and questions are computed in, and why (``undecided`` before loading)."""
        return self._precision

    def _encode(self, texts: Sequence[str], precision: str | None = None) -> np.ndarray:
        """Unit vectors for ``texts`` in ``precision`` (the passages' by default)."""
        self.load()  # loading chooses the precision
        return self._encode_in(texts, precision or self._precision.passages)

    def _encode_in(self, texts: Sequence[str], precision: str, model: Any = None) -> np.ndarray:
        import torch

        if precision == "float32" and self._weights == "bfloat16":
            raise RuntimeError("the weights are stored in bfloat16: float32 is no longer computed")
        if model is None:
            model = self._query_model if precision == "int8" else self._model
        assert model is not None, "no int8 copy of the model" if precision == "int8" else "model not loaded"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            vectors = model.encode(
                list(texts),
                batch_size=max(len(texts), 1),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                processing_kwargs={"text": self._text_kwargs},
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        # bfloat16 output is normalised in low precision; normalise again in float32
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def embed_documents(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Embed passages in batches of similar length; returns unit vectors in the order given.

        ``token_counts`` (each text's ``count_tokens``, when the caller has them) sort the batches
        and feed the statistics without tokenizing twice.
        """
        return self._embed_batches([self.document_prefix + t for t in texts], token_counts, progress)

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed questions, batched like passages, with the model's query prefix (GLuCoSE has none)."""
        prefixed = [self.query_prefix + t for t in texts]
        counts = [self._count(t) for t in prefixed]  # loads the model, and so chooses the precision
        return self._embed_batches(prefixed, counts, progress, self._precision.questions)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question; a question longer than the model reads is cut at its limit."""
        return self.embed_queries([text])[0]

    def _embed_batches(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None,
        progress: Progress | None,
        precision: str | None = None,
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        counts = list(token_counts) if token_counts is not None else [self._count(t) for t in texts]
        # Sorting by length keeps padding, which costs as much as real tokens, near zero.
        order = sorted(range(len(texts)), key=lambda i: counts[i], reverse=True)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        done = 0
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin : begin + self.batch_size]
            started = time.perf_counter()
            vectors[batch] = self._encode([texts[i] for i in batch], precision)
            self.stats.seconds += time.perf_counter() - started
            self.stats.texts += len(batch)
            self.stats.tokens += sum(min(counts[i], self.max_tokens) for i in batch)
            done += len(batch)
            if progress is not None:
                progress(done, len(texts))
        return vectors


def int8_copy(model: SentenceTransformer) -> SentenceTransformer:
    """A copy of ``model`` whose linear layers hold int8 weights (PyTorch dynamic quantization).

    The embedding tables are shared with the original, not copied; the copy is for inference only.
    """
    import warnings

    import torch

    # Modules the copy shares instead of copying: the embedding tables, and the float linear layers,
    # which the quantization reads and replaces in the copy (copying their weights first would
    # cost their size in memory for nothing).
    kinds = (torch.nn.Embedding, torch.nn.Linear)
    shared: dict[int, Any] = {id(m): m for m in model.modules() if isinstance(m, kinds)}
    clone = copy.deepcopy(model, memo=shared)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(clone, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    for module in model.modules():  # the marks the quantization left on the shared float layers
        if hasattr(module, "qconfig"):
            del module.qconfig
    return cast("SentenceTransformer", quantized)
