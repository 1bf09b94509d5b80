"""The embedder: a sentence-transformers model (GLuCoSE by default), loaded once, tokenized as it was trained."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pipelines.choices import Precision, QueryPrecision
from pipelines.errors import ModelLoadError, TokenizerMismatchError
from pipelines.model import hub, int8
from pipelines.model.precision import (
    RANKING_PASSAGES,
    TOKENIZER_CHECK_TEXTS,
    PrecisionChoice,
    PrecisionPolicy,
    VerdictCache,
    cpu_has_bf16,
    model_files,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each embedding batch."""
Stage = Callable[[str], None]
"""Called with what loading is doing now, in Japanese, for a face to show while a model loads."""

# The sentence whose embedding identifies a model in the store's metadata.
# A LUKE model's tokenizer arguments for every call: with them, "<s>" in a document is three
# characters, not a control token, as the sentencepiece model reads it.
LUKE_TEXT_KWARGS = {"split_special_tokens": True}
# On a CPU, a batch of passages ends where a text is this much shorter than its first, and before its
# tokens with padding pass BATCH_TOKENS (Embedder._cut). Measured on the JSQuAD articles' chunks with the
# int8 path on an AVX2-only CPU: 0-8 % less embedding time than batches of 16 alone, more where 16-text
# batches leave more padding (bench/cpu_batches.py, docs/speed.md).
SAME_LENGTH = 0.9
BATCH_TOKENS = 1024
FINGERPRINT_TEXT = "この文は、保存されたベクトルがどの埋め込みモデルで作られたかを確かめるためのものです。"


@dataclass
class EmbeddingStats:
    """What the embedder has done since it was created: texts, their tokens, and seconds spent.

    Only the texts it was asked to embed (passages and questions) count; what loading embeds to check
    the model (the fingerprint sentence, calibration texts) does not.
    """

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
    def loaded(self) -> bool:
        """Whether the model is loaded (or, for a server, has answered): a command that embeds nothing leaves it False."""
        ...

    @property
    def precision(self) -> PrecisionChoice: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def counting(self) -> str:
        """How ``count_tokens`` counts, in Japanese, for the CLI and the page."""
        ...

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
    token ids it was trained on. Counting tokens needs only the tokenizer, not the model.

    ``cache_dir`` keeps the precision verdict and the int8 export between processes (``VerdictCache``):
    a start that finds both embeds through ONNX Runtime without loading torch's copy of the model at
    all. Without it, they are kept for this process only. ``threads``: the CPU threads of torch and
    ONNX Runtime (0: the CPUs this process may use).
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
        threads: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        self.policy = PrecisionPolicy(precision, query_precision)
        self._precision = PrecisionChoice.undecided()
        self._loading = threading.RLock()  # reentrant: loading itself reads ``model``
        self.model_name = model_name
        self.device = device or None
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.threads = threads or usable_cpus()
        self.cache = VerdictCache(cache_dir) if cache_dir is not None else None
        self.stats = EmbeddingStats()
        self._model: SentenceTransformer | None = None
        self._ready = False
        self._source: hub.ModelSource | None = None
        # Tokenizer arguments for every call: with them, "<s>" in a document is three characters,
        # not a control token, as the sentencepiece model reads it.
        self._text_kwargs: dict[str, Any] = {}
        self._tokenizer: Any = None  # counts tokens (and feeds the int8 path); see _open_tokenizer()
        self._pieces: Any = None  # a LUKE model's sentencepiece model: its ids are derived from the pieces
        self._weights = "float32"  # bfloat16 once the linear layers' weights are stored so
        self._int8: int8.Int8Runner | None = None  # the ONNX Runtime session of the int8 path, once opened
        self._feeder: Any = None  # the tokenizer that feeds the int8 path: not the counting one (see _open_model)
        self._int8_dir: Path | None = None  # where the int8 export is kept
        self._scratch: Path | None = None  # without a cache: this embedder's export, removed with it
        self._shape: tuple[int, int] | None = None  # (dimension, max tokens) when no torch model is loaded

    # Loading ---------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded (through torch, ONNX Runtime or both) and its precision chosen."""
        return self._ready

    @property
    def model(self) -> SentenceTransformer:
        """The torch model; loads it on first access (a start that embeds through int8 alone has none)."""
        with self._loading:
            if self._model is None:
                self._model = self._open_model(self._locate())
        return self._model

    def load(self, stage: Stage | None = None) -> None:
        """Load the model now; a failure raises ``ModelLoadError`` naming the model, the cause and the fix.

        Safe to call from several threads: one loads, the others wait for it. ``stage`` hears each step.
        """
        with self._loading:
            if not self._ready:
                self._load(stage or (lambda _: None))

    def on_cpu(self) -> bool:
        """Whether the model computes on this machine's CPU, told without loading it or importing torch.

        Before the device is decided, a machine with a GPU's device file is taken to compute there.
        """
        if self.device is None:
            return not _maybe_gpu()
        return self.device == "cpu"

    def _device(self) -> str:
        """``RAG_DEVICE``, else a GPU where torch finds one, else ``cpu``: decided once, before loading.

        Without a GPU's device file, torch is not imported to ask (a start with a kept int8 verdict
        never imports it).
        """
        if self.device is None:
            if not _maybe_gpu():
                self.device = "cpu"
            else:
                import torch

                mps = getattr(torch.backends, "mps", None)
                self.device = (
                    "cuda" if torch.cuda.is_available() else "mps" if mps is not None and mps.is_available() else "cpu"
                )
        return self.device

    def _locate(self) -> hub.ModelSource:
        if self._source is None:
            self._source = hub.locate(
                self.model_name, hub.EMBEDDING
            )  # fails in seconds when neither here nor reachable
        return self._source

    def _load(self, stage: Stage) -> None:
        started = time.perf_counter()
        stage("モデルのファイルを開いています（初回はダウンロードします）")
        folder = self._cache_folder()
        requested = (self.policy.requested, self.policy.requested_questions)
        device = self._device()
        kept = self.cache.read(folder, device, requested, self.threads) if self.cache and folder else None
        if kept is not None and kept.passages == kept.questions == "int8" and self._open_int8_alone(folder):
            self._precision = kept  # checked and timed by an earlier start on this CPU: no torch needed
            logger.info("%s: %s (kept), int8 only, %.1f s", self.model_name, kept, time.perf_counter() - started)
            self._ready = True
            return
        _ = self.model  # loads it (downloading a hub model the first time)
        folder = folder or self._cache_folder()  # a hub model is in the local cache now
        if kept is None or folder is None:
            stage("計算精度を選んでいます（初回のみ）" if self.cache else "計算精度を選んでいます")
            kept = self.policy.choose(device, self)
            if self.cache and folder:
                self.cache.write(folder, device, requested, self.threads, kept)
        self._precision = kept
        if "int8" in (kept.passages, kept.questions) and self.unavailable("int8") is not None:
            self._precision = self.policy.choose(device, self)  # the export went missing: decide again
        logger.info("%s: %s", self.model_name, self._precision)
        if self._precision.passages == "bfloat16" and self._precision.questions != "float32":
            self._store_weights_in_bfloat16()
        self._ready = True
        logger.info("loaded %s in %.1f s", self.model_name, time.perf_counter() - started)

    def _cache_folder(self) -> Path | None:
        """This model's folder in the cache, named by its files; None without a cache or files yet."""
        if self.cache is None:
            return None
        directory = self._model_directory()
        if directory is None:
            return None
        return self.cache.model_dir(self.model_name, model_files(directory))

    def _model_directory(self) -> Path | None:
        """The model's files on this machine: its directory, or its snapshot in the Hugging Face cache."""
        source = self._locate()
        path = Path(source.target).expanduser()
        if path.is_dir():
            return path
        from huggingface_hub import snapshot_download

        try:
            with hub.quiet():
                return Path(snapshot_download(self.model_name, local_files_only=True))
        except (OSError, ValueError):  # not downloaded yet
            return None

    def _open_model(self, source: hub.ModelSource) -> SentenceTransformer:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        try:
            with hub.quiet():
                model = SentenceTransformer(source.target, device=self._device(), local_files_only=source.local_only)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(
                f"埋め込みモデル「{self.model_name}」を読み込めません（{cause}）。"
                + hub.how_to_fix(self.model_name, hub.EMBEDDING)
            ) from error
        backbone = getattr(model[0], "auto_model", None)
        if backbone is None or model.tokenizer is None:
            raise ModelLoadError(f"「{self.model_name}」はテキスト用の sentence-transformers モデルではありません。")
        if getattr(backbone.config, "model_type", None) == "luke":
            self._text_kwargs = dict(LUKE_TEXT_KWARGS)
            self._pieces = self._check_luke_tokenizer(model)
        # A fast (Rust) tokenizer rewrites its truncation settings on each call and fails with "Already
        # borrowed" when another thread is tokenizing meanwhile; the ingest counts tokens in a background
        # thread while encode runs, so counting gets its own copy. Slow tokenizers keep no such state.
        self._tokenizer = copy.deepcopy(model.tokenizer) if model.tokenizer.is_fast else model.tokenizer
        return model

    def _open_tokenizer(self) -> None:
        """What counts tokens, without the model: a LUKE model's sentencepiece file, else its tokenizer."""
        with self._loading:
            if self._tokenizer is not None or self._pieces is not None:
                return
            directory = self._model_directory()
            if directory is None:  # not downloaded yet: the model's own load fetches it (and its tokenizer)
                _ = self.model
                return
            pieces = _luke_pieces(directory)
            if pieces is not None:
                self._pieces, self._text_kwargs = pieces, dict(LUKE_TEXT_KWARGS)
                return
            from transformers import AutoTokenizer

            with hub.quiet():
                self._tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)

    def _open_int8_alone(self, folder: Path | None) -> bool:
        """Open the kept int8 export with a LUKE model's sentencepiece ids, without torch; False if not possible."""
        exported = int8.find(folder) if folder else None
        directory = self._model_directory()
        pieces = _luke_pieces(directory) if directory else None
        if exported is None or pieces is None:
            return False
        self._pieces, self._text_kwargs = pieces, dict(LUKE_TEXT_KWARGS)
        self._int8, self._int8_dir = int8.Int8Runner(exported, self.threads), folder
        self._shape = (exported.dimension, exported.max_tokens)
        return True

    def _store_weights_in_bfloat16(self) -> None:
        """Keep the linear layers' weights in bfloat16, as autocast would cast them on every batch.

        The results are the same bits (autocast rounds each weight to bfloat16 the same way); the
        cast is no longer paid per batch (a question's whole embedding, for one short text), and the
        weights take half the memory. float32 can no longer be computed after this.
        """
        import torch

        for module in self.model.modules():
            if isinstance(module, torch.nn.Linear):
                for name, value in list(module.named_parameters(recurse=False)):
                    setattr(module, name, torch.nn.Parameter(value.detach().to(torch.bfloat16), requires_grad=False))
        self._weights = "bfloat16"

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
            expected = luke_ids(sp, text)
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
        if self._model is None and self._shape is None:
            self.load()
        if self._model is None:
            assert self._shape is not None
            return self._shape[0]
        dimension = self._model.get_embedding_dimension()
        assert dimension is not None
        return dimension

    @property
    def counting(self) -> str:
        """Tokens are counted by the model's own tokenizer."""
        return "モデルのトークナイザー"

    @property
    def max_tokens(self) -> int:
        """The most tokens the model reads in one text, special tokens included."""
        if self._model is None and self._shape is None:
            self.load()
        if self._model is None:
            assert self._shape is not None
            return self._shape[1]
        return int(self._model.max_seq_length or self._model.tokenizer.model_max_length)

    def count_tokens(self, text: str) -> int:
        """Tokens the model would read for passage ``text`` (its prefix and special tokens included)."""
        return self._count(self.document_prefix + text)

    def _count(self, text: str) -> int:
        if self._pieces is None and self._tokenizer is None:
            self._open_tokenizer()
        if self._pieces is not None:
            # the ids a LUKE model is fed are <s>, one per sentencepiece piece, </s> (checked at load)
            return len(self._pieces.encode(text)) + 2
        return len(self._tokenizer(text, truncation=False, verbose=False, **self._text_kwargs)["input_ids"])

    def fingerprint(self) -> list[float]:
        """The embedding of a fixed sentence: tells this model's vectors from another model's."""
        return [float(x) for x in self._encode([FINGERPRINT_TEXT])[0]]

    # The paths the precision policy checks and times (pipelines/model/precision.py, ``Paths``) -------

    def unavailable(self, precision: str) -> str | None:
        """Why ``precision`` cannot be computed here, in Japanese; None when it can."""
        device = self._device()
        if precision == "bfloat16" and device == "cpu" and not cpu_has_bf16():
            return "この CPU は bfloat16 をそのまま計算できません"
        if precision == "float16" and device == "cpu":
            return "float16 は GPU だけ"
        if precision != "int8":
            return None
        if device != "cpu":
            return "int8 は CPU だけ"
        if self._int8 is not None:
            return None
        reason = int8.exportable(self.model)
        if reason is not None:
            return reason
        try:
            self._int8 = int8.Int8Runner(self._int8_export(), self.threads)
        except (ImportError, OSError, RuntimeError, ValueError) as error:
            return f"ONNX への書き出しに失敗しました（{type(error).__name__}: {str(error)[:120]}）"
        return None

    def _int8_export(self) -> int8.Int8Model:
        """The int8 export of the model: the one kept in the cache, else written now (seconds, once)."""
        folder = self._cache_folder()
        if folder is None:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="int8-"))
                weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
            folder = self._scratch
        kept = int8.find(folder)
        if kept is not None:
            return kept
        if self._weights != "float32":
            raise RuntimeError("the weights are stored in bfloat16: the float32 model is no longer there to export")
        started = time.perf_counter()
        exported = int8.export(self.model, folder)
        logger.info("%s: int8 export in %.1f s", self.model_name, time.perf_counter() - started)
        return exported

    def encode(self, texts: Sequence[str], precision: str) -> np.ndarray:
        """Unit vectors for ``texts`` in ``precision`` (the policy's check)."""
        return self._encode_in(texts, precision)

    def tokens_per_second(self, precision: str) -> float:
        """How fast ``precision`` embeds ``RANKING_PASSAGES`` as one batch: the better of two runs.

        The policy has computed the calibration texts in ``precision`` before it times it, so the path
        is open and warm; the better of two runs leaves out a first call's one-off costs at this shape.
        """
        tokens = sum(min(self._count(t), self.max_tokens) for t in RANKING_PASSAGES)
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            self._encode_in(RANKING_PASSAGES, precision)
            best = min(best, time.perf_counter() - started)
        return tokens / best

    # Embedding ---------------------------------------------------------------------------------

    @property
    def precision(self) -> PrecisionChoice:
        """What passages and questions are computed in, and why (``undecided`` before loading)."""
        return self._precision

    def _encode(self, texts: Sequence[str], precision: str | None = None) -> np.ndarray:
        """Unit vectors for ``texts`` in ``precision`` (the passages' by default)."""
        self.load()  # loading chooses the precision
        return self._encode_in(texts, precision or self._precision.passages)

    def _encode_in(self, texts: Sequence[str], precision: str) -> np.ndarray:
        vectors = self._encode_int8(texts) if precision == "int8" else self._encode_torch(texts, precision)
        # reduced precision output is normalised in low precision; normalise again in float32
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def _encode_int8(self, texts: Sequence[str]) -> np.ndarray:
        assert self._int8 is not None, "the int8 path is not open"
        limit = self._int8.model.max_tokens
        if self._pieces is not None:
            ids, mask = int8.pad([luke_ids(self._pieces, t, limit) for t in texts], pad_id=1)
        else:
            if self._feeder is None:  # counting runs in another thread: a fast tokenizer of its own
                self._open_tokenizer()
                fast = getattr(self._tokenizer, "is_fast", False)
                self._feeder = copy.deepcopy(self._tokenizer) if fast else self._tokenizer
            features = self._feeder(
                list(texts), padding=True, truncation=True, max_length=limit, return_tensors="np", **self._text_kwargs
            )
            ids, mask = features["input_ids"], features["attention_mask"]
        return self._int8(ids, mask)

    def _encode_torch(self, texts: Sequence[str], precision: str) -> np.ndarray:
        import torch

        if precision == "float32" and self._weights == "bfloat16":
            raise RuntimeError("the weights are stored in bfloat16: float32 is no longer computed")
        model = self.model
        device = model.device.type
        half = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
        with torch.autocast(device, dtype=half or torch.float32, enabled=half is not None):
            vectors = model.encode(
                list(texts),
                batch_size=max(len(texts), 1),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                processing_kwargs={"text": self._text_kwargs},
            )
        return np.asarray(vectors, dtype=np.float32)

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
        self.load()  # chooses the precision
        prefixed = [self.query_prefix + t for t in texts]
        counts = [self._count(t) for t in prefixed]
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
        self.load()
        counts = list(token_counts) if token_counts is not None else [self._count(t) for t in texts]
        # Sorting by length keeps padding, which costs as much as real tokens, near zero.
        order = sorted(range(len(texts)), key=lambda i: counts[i], reverse=True)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        done, size = 0, self.batch_size
        while done < len(order):
            batch = self._cut(order[done : done + size], counts)
            started = time.perf_counter()
            try:
                vectors[batch] = self._encode([texts[i] for i in batch], precision)
            except RuntimeError as error:  # a GPU's memory: halve the batch and go on
                if "out of memory" not in str(error) or size == 1:
                    raise
                size //= 2
                logger.warning("%s: out of memory, batches of %d from now on", self.model_name, size)
                continue
            self.stats.seconds += time.perf_counter() - started
            self.stats.texts += len(batch)
            self.stats.tokens += sum(min(counts[i], self.max_tokens) for i in batch)
            done += len(batch)
            if progress is not None:
                progress(done, len(texts))
        return vectors

    def _cut(self, batch: list[int], counts: Sequence[int]) -> list[int]:
        """The start of ``batch`` (longest first) to embed at once: on a CPU, fewer tokens and less padding.

        Every text of a batch costs as much as its longest, padding included. On a CPU a batch ends
        where the texts become ``SAME_LENGTH`` shorter than its first, and before it holds more than
        ``BATCH_TOKENS`` tokens with its padding: ONNX Runtime's int8 products run faster on such
        batches, whose activations stay in the CPU's caches, and torch's no slower. On a GPU, where
        small batches waste the card, it stays whole.
        """
        if self.device != "cpu":
            return batch
        width = min(counts[batch[0]], self.max_tokens)
        fits = max(1, BATCH_TOKENS // max(width, 1))
        floor = width * SAME_LENGTH
        return [i for i in batch[:fits] if min(counts[i], self.max_tokens) >= floor]  # a prefix: longest first


def _maybe_gpu() -> bool:
    """Whether this machine may have a GPU for torch: a GPU's device file, or a Mac (Metal)."""
    gpu_files = ("/dev/nvidia0", "/dev/kfd", "/dev/dxg")
    return sys.platform == "darwin" or any(Path(f).exists() for f in gpu_files)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it), at least one."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def luke_ids(pieces: Any, text: str, limit: int | None = None) -> list[int]:
    """The ids a LUKE model (fairseq vocabulary) is fed for ``text``: <s>, each piece shifted by one, </s>.

    Cut, as the tokenizer cuts, to ``limit`` ids with both special ones.
    """
    ids = [i + 1 if i else 3 for i in pieces.encode(text)]
    if limit is not None:
        ids = ids[: limit - 2]
    return [0, *ids, 2]


def _luke_pieces(directory: Path) -> Any:
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
