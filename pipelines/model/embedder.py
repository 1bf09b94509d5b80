"""The embedder: a sentence-transformers model (GLuCoSE by default), loaded once, tokenized as it was trained.

Its parts, each a module of ``pipelines/model``: ``files`` (where the model's files are),
``hardware`` (the device and CPUs), ``torch_path`` (the model in torch), ``int8_session`` (the int8
path through ONNX Runtime), ``tokens`` (counting and feeding tokens, LUKE's trained ids), ``batching``
(texts cut into batches), ``precision`` (the choice of precisions) and ``text_embedder`` (what the
pipelines need from any embedder, this one or a server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.choices import Precision, QueryPrecision
from pipelines.model import batching, first_check, hardware, int8, onnx_graph, torch_path
from pipelines.model.files import ModelFiles
from pipelines.model.hardware import usable_cpus
from pipelines.model.int8_session import Int8Session
from pipelines.model.pooling import Span, pool_spans
from pipelines.model.precision import RANKING_PASSAGES, PrecisionChoice, PrecisionPolicy, VerdictCache, cpu_has_bf16
from pipelines.model.preparation import SERVING, Kept, Preparation
from pipelines.model.text_embedder import FINGERPRINT_TEXT, EmbeddingStats, Progress, Stage, TextEmbedder
from pipelines.model.tokens import LUKE_TEXT_KWARGS, Tokens, luke_ids, luke_pieces

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Importable from here, where callers have always found them.
__all__ = [
    "FINGERPRINT_TEXT",
    "LUKE_TEXT_KWARGS",
    "Embedder",
    "EmbeddingStats",
    "Progress",
    "Stage",
    "TextEmbedder",
    "cpu_has_bf16",
    "luke_ids",
    "usable_cpus",
]

logger = logging.getLogger(__name__)


class Embedder:
    """Turns texts into normalised embeddings with a sentence-transformers model.

    The model is loaded on first use (or by ``load()``), from a hub name or a local directory, through
    the same code path either way. A LUKE model (GLuCoSE) is checked at load time to be fed exactly the
    token ids it was trained on. Counting tokens needs only the tokenizer, not the model.

    ``cache_dir`` keeps the precision verdict and the int8 export between processes (``VerdictCache``):
    a start that finds both embeds through ONNX Runtime without loading torch's copy of the model at
    all. Without it, they are kept for this process only. A start with ``precision="auto"`` and no kept
    verdict checks int8 on graphs written from the weights, without torch, in seconds, where the model
    is a LUKE model on disk and the device a CPU (``first_check``), and leaves bfloat16 for later, in the
    background where ``background_checks``; any other serves float32 at once and prepares the faster
    paths in the background (``pipelines/model/preparation.py``); ``wait_prepared`` waits for either.
    ``threads``: the CPU threads of torch and ONNX Runtime (0: the CPUs this process may use).
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
        background_checks: bool = True,
    ) -> None:
        self.policy = PrecisionPolicy(precision, query_precision)
        self._precision = PrecisionChoice.undecided()
        self._loading = threading.RLock()  # reentrant: loading itself reads ``model``
        # timing a precision (the policy's choice, kept for the machine) waits for the batches in flight and
        # holds new ones back, so a first start's ingest running meanwhile does not decide the verdict
        self._quiet = threading.Condition()
        self._timing = False
        self._batches = 0
        self.model_name = model_name
        self.device = device or None
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.threads = threads or usable_cpus()
        self.cache = VerdictCache(cache_dir) if cache_dir is not None else None
        self.background_checks = background_checks
        self.stats = EmbeddingStats()
        self.files = ModelFiles(model_name, self.cache)
        self._model: SentenceTransformer | None = None
        self._ready = False
        self._tokens: Tokens | None = None  # counts tokens (and feeds the int8 path); see _counter()
        self._weights = "float32"  # bfloat16 once the linear layers' weights are stored so
        self._int8 = Int8Session(self.files, self.threads)
        self._shape: tuple[int, int] | None = None  # (dimension, max tokens) when no torch model is loaded
        self.preparation: Preparation | None = None  # a first start's, in the background

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
                model = torch_path.open_model(self.files.source(), self.model_name, self._device(), self.threads)
                self._tokens = Tokens.of_model(model, self.model_name)
                self._model = model
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
            return not hardware.maybe_gpu()
        return self.device == "cpu"

    def _device(self) -> str:
        """``RAG_DEVICE``, else a GPU where torch finds one, else ``cpu``: decided once, before loading."""
        if self.device is None:
            self.device = hardware.choose_device()
        return self.device

    def _load(self, stage: Stage) -> None:
        started = time.perf_counter()
        stage("モデルのファイルを開いています（初回はダウンロードします）")
        folder = self.files.cache_folder()
        requested = (self.policy.requested, self.policy.requested_questions)
        device = self._device()
        kept = self.cache.read(folder, device, requested, self.threads) if self.cache and folder else None
        pending = self.cache.pending(folder, device, requested, self.threads) if kept and self.cache and folder else ()
        here = self.files.directory() is not None  # a hub model's files are fetched by torch's load below
        checks = kept is None and self.policy.requested == "auto" and device == "cpu"
        if checks:
            checked = self._check_without_torch(folder, device, requested, stage)
            if checked is not None:
                kept, pending = checked
        if self._serve_int8_alone(kept, pending, folder, device, requested, started):
            return
        _ = self.model  # loads it (downloading a hub model the first time)
        folder = folder or self.files.cache_folder()  # a hub model is in the local cache now
        if checks and not here:  # a hub model fetched by this load: checked as one on disk is
            checked = self._check_without_torch(folder, device, requested, stage)
            if checked is not None:
                kept, pending = checked
                if not pending and self._serve_int8_alone(kept, pending, folder, device, requested, started):
                    with self._loading:
                        self._model = None  # torch's copy only fetched the files: int8 alone serves
                    return
        if kept is None and self.policy.requested == "auto":
            self._precision = SERVING  # needs no check: the faster paths are prepared behind it
            where = Kept(self.cache, folder, device, requested, self.threads) if self.cache and folder else None
            self.preparation = Preparation(self.policy, device, self, where, self._switch, self._usable).start()
            self._ready = True
            logger.info("loaded %s in %.1f s, float32 while preparing", self.model_name, time.perf_counter() - started)
            return
        if kept is None:  # decided neither by an earlier start nor by the check without torch
            stage("計算精度を選んでいます（初回のみ）" if self.cache else "計算精度を選んでいます")
            kept = self.policy.choose(device, self)
            if self.cache and folder:
                self.cache.write(folder, device, requested, self.threads, kept)
        self._precision = kept
        if "int8" in (kept.passages, kept.questions) and self.unavailable("int8") is not None:
            self._precision = self.policy.choose(device, self)  # the export went missing: decide again
        logger.info("%s: %s", self.model_name, self._precision)
        if self._precision.passages == "bfloat16" and self._precision.questions != "float32":
            torch_path.store_weights_in_bfloat16(self.model)
            self._weights = "bfloat16"
        self._prepare_later(self._precision, pending, folder, device, requested)
        self._ready = True
        logger.info("loaded %s in %.1f s", self.model_name, time.perf_counter() - started)

    def _serve_int8_alone(
        self,
        kept: PrecisionChoice | None,
        pending: tuple[str, ...],
        folder: Path | None,
        device: str,
        requested: tuple[str, str],
        started: float,
    ) -> bool:
        """Serve ``kept`` through ONNX Runtime alone where it is int8 for both and the int8 graph opens."""
        if kept is None or not kept.passages == kept.questions == "int8" or not self._open_int8_alone(folder):
            return False
        self._precision = kept  # checked (and timed) on this CPU without torch: none is needed
        logger.info("%s: %s, int8 only, %.1f s", self.model_name, kept, time.perf_counter() - started)
        self._prepare_later(kept, pending, folder, device, requested)
        self._ready = True
        return True

    def _check_without_torch(
        self, folder: Path | None, device: str, requested: tuple[str, str], stage: Stage
    ) -> tuple[PrecisionChoice, tuple[str, ...]] | None:
        """A first start's check on graphs written from the weights (``first_check``): the verdict and what it
        left for later, kept; None where it cannot be made so (not a LUKE model on disk, another shape of
        model, a failure), and torch then loads as before.

        Under the cache's lock: a process that finds it held (another process checking, or checking
        bfloat16 after its own first start) takes the verdict that one keeps as soon as it is there.
        """
        directory = self.files.directory()
        pieces = luke_pieces(directory) if directory else None
        if directory is None or pieces is None:
            return None
        reason = onnx_graph.unsupported(directory)
        if reason is not None:
            logger.info("%s: checked with torch (%s)", self.model_name, reason)
            return None
        while True:
            if self.cache and folder and (found := self.cache.read(folder, device, requested, self.threads)):
                return found, self.cache.pending(folder, device, requested, self.threads)
            lock = self.cache.preparing(folder, block=False) if self.cache and folder else contextlib.nullcontext(False)
            with lock as held:
                if held is not None:
                    return self._check_here(directory, pieces, folder, device, requested, stage)
            time.sleep(0.1)

    def _check_here(
        self,
        directory: Path,
        pieces: Any,
        folder: Path | None,
        device: str,
        requested: tuple[str, str],
        stage: Stage,
    ) -> tuple[PrecisionChoice, tuple[str, ...]] | None:
        """``_check_without_torch`` under the lock (or where there is none to take)."""
        if self.cache and folder and (found := self.cache.read(folder, device, requested, self.threads)):
            return found, self.cache.pending(folder, device, requested, self.threads)
        stage("計算精度を選んでいます（この PC で初回のみ、数秒）")
        tokens = Tokens(pieces=pieces)
        try:
            choice = first_check.check(directory, self.policy, self._int8, tokens, self.threads)
        except Exception:  # whatever it was, torch's path is still there: float32 at once, checks behind it
            logger.exception("%s: the check without torch failed; torch loads", self.model_name)
            self._int8 = Int8Session(self.files, self.threads)
            return None
        pending = first_check.LATER if cpu_has_bf16() else ()
        if pending:
            later = f"。{first_check.CHECKED_LATER}"
            choice = dataclasses.replace(choice, passages_reason=choice.passages_reason + later)
        if self.cache and folder:
            self.cache.write(folder, device, requested, self.threads, choice, pending)
        return choice, pending

    def _prepare_later(
        self,
        served: PrecisionChoice,
        pending: tuple[str, ...],
        folder: Path | None,
        device: str,
        requested: tuple[str, str],
    ) -> None:
        """Where the verdict served left precisions for later (bfloat16), check them in the background
        (``background_checks``: a serving process; a one-shot command leaves them to the next one)."""
        if not pending or not self.background_checks or self.preparation is not None:
            return
        where = Kept(self.cache, folder, device, requested, self.threads) if self.cache and folder else None
        self.preparation = Preparation(
            self.policy, device, self, where, self._switch_after_check, self._usable, after=served
        ).start()

    def _usable(self, choice: PrecisionChoice) -> bool:
        """Whether ``choice`` (kept by another process meanwhile) can be computed here: its int8 export opens."""
        return "int8" not in (choice.passages, choice.questions) or self.unavailable("int8") is None

    def _switch(self, choice: PrecisionChoice) -> None:
        """Serve ``choice`` from the next embedding call on (the preparation's thread calls this).

        The int8 session the preparation opened runs its threads at the preparation's low priority:
        it is let go, and the first call that needs int8 opens its own, at the caller's priority.
        """
        if "int8" in (choice.passages, choice.questions):
            self._int8.reopen_in_caller()
        self._precision = choice

    def _switch_after_check(self, choice: PrecisionChoice) -> None:
        """Serve the verdict of a check left for later (``_prepare_later``): the int8 session stays (the
        foreground opened it); where int8 is served for both, torch's copy of the model is let go (0.5 GB
        for GLuCoSE): nothing computes in torch from the next call on."""
        self._precision = choice
        exported = self._int8.exported
        if choice.passages == choice.questions == "int8" and exported:  # a call still in torch keeps its copy
            with self._loading:
                self._shape = (exported.dimension, exported.max_tokens)  # what the model told before
                self._model = None

    @property
    def preparing(self) -> bool:
        """Whether a faster precision is being prepared in the background (float32 is served meanwhile)."""
        return self.preparation is not None and not self.preparation.finished

    def wait_prepared(self, timeout: float | None = None) -> bool:
        """Wait for a first start's background preparation (none: at once); False on timeout."""
        return self.preparation is None or self.preparation.wait(timeout)

    def _open_int8_alone(self, folder: Path | None) -> bool:
        """Open the kept int8 export (or the one the first start's check opened) with a LUKE model's
        sentencepiece ids, without torch; False if not possible."""
        exported = self._int8.exported or (int8.find(folder) if folder else None)
        directory = self.files.directory()
        pieces = luke_pieces(directory) if directory else None
        if exported is None or pieces is None:
            return False
        self._tokens = Tokens(pieces=pieces)
        if not self._int8.opened:
            self._int8.open_kept(exported)
        self._shape = (exported.dimension, exported.max_tokens)
        return True

    def _counter(self) -> Tokens:
        """What counts tokens (and feeds the int8 path): opened without the model where its files are here."""
        if self._tokens is None:
            with self._loading:
                if self._tokens is None:
                    directory = self.files.directory()
                    if directory is None:  # not downloaded yet: the model's own load fetches it (and its tokenizer)
                        _ = self.model
                    else:
                        self._tokens = Tokens.in_directory(directory)
        assert self._tokens is not None
        return self._tokens

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
        return self._counter().count(self.document_prefix + text)

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
        if self._int8.opened:
            return None
        return self._int8.open(self.model, self._weights)

    def encode(self, texts: Sequence[str], precision: str) -> np.ndarray:
        """Unit vectors for ``texts`` as one batch in ``precision`` (also the policy's check)."""
        if precision == "int8":
            vectors = self._int8.encode(texts, self._counter())
        else:
            if precision == "float32" and self._weights == "bfloat16":
                raise RuntimeError("the weights are stored in bfloat16: float32 is no longer computed")
            model = self.model
            vectors = torch_path.encode(model, texts, precision, self._counter().text_kwargs)
        # reduced precision output is normalised in low precision; normalise again in float32
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def tokens_per_second(self, precision: str) -> float:
        """How fast ``precision`` embeds ``RANKING_PASSAGES`` as one batch: the better of two runs.

        The policy has computed the calibration texts in ``precision`` before it times it, so the path
        is open and warm; the better of two runs leaves out a first call's one-off costs at this shape.
        """
        tokens = sum(min(self._counter().count(t), self.max_tokens) for t in RANKING_PASSAGES)
        best = float("inf")
        with self._alone():
            for _ in range(2):
                started = time.perf_counter()
                self.encode(RANKING_PASSAGES, precision)
                best = min(best, time.perf_counter() - started)
        return tokens / best

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        """No batch of this embedder runs meanwhile: those in flight end first, new ones wait."""
        with self._quiet:
            self._quiet.wait_for(lambda: not self._timing)
            self._timing = True
            self._quiet.wait_for(lambda: self._batches == 0)
        try:
            yield
        finally:
            with self._quiet:
                self._timing = False
                self._quiet.notify_all()

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """One batch, held back while a precision is being timed (``_alone``)."""
        with self._quiet:
            self._quiet.wait_for(lambda: not self._timing)
            self._batches += 1
        try:
            yield
        finally:
            with self._quiet:
                self._batches -= 1
                self._quiet.notify_all()

    # Embedding ---------------------------------------------------------------------------------

    @property
    def precision(self) -> PrecisionChoice:
        """What passages and questions are computed in, and why (``undecided`` before loading)."""
        return self._precision

    def _encode(self, texts: Sequence[str], precision: str | None = None) -> np.ndarray:
        """Unit vectors for ``texts`` in ``precision`` (the passages' by default)."""
        self.load()  # loading chooses the precision
        return self.encode(texts, precision or self._precision.passages)

    def embed_documents(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> np.ndarray:
        """Embed passages in batches of similar length; returns unit vectors in the order given.

        ``token_counts`` (each text's ``count_tokens``, when the caller has them) sort the batches
        and feed the statistics without tokenizing twice. ``precision``: the one to compute in
        (``precision.passages`` read by the caller, who records it); None: the passages' precision
        when the call begins. Either way every batch of one call is computed in the same one.
        """
        return self._embed_batches([self.document_prefix + t for t in texts], token_counts, progress, precision)

    def embed_passages(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """``embed_documents``, and for each text a unit vector per span of ``spans`` (its sentences),
        pooled from the same forward pass (``pooling.pool_spans``); None for a text whose spans cannot be
        pooled (the model's tokenizer does not tell where its tokens are, or a span lies past its limit)."""
        prefixed = [self.document_prefix + t for t in texts]
        shift = len(self.document_prefix)
        moved = [[(a + shift, b + shift) for a, b in row] for row in spans]
        return self._run_batches(prefixed, token_counts, progress, precision, moved)

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed questions, batched like passages, with the model's query prefix (GLuCoSE has none)."""
        self.load()  # chooses the precision
        prefixed = [self.query_prefix + t for t in texts]
        counts = [self._counter().count(t) for t in prefixed]
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
        return self._run_batches(texts, token_counts, progress, precision, None)[0]

    def _run_batches(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None,
        progress: Progress | None,
        precision: str | None,
        spans: Sequence[Sequence[Span]] | None,
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        sentences: list[np.ndarray | None] = [None] * len(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), sentences
        self.load()
        precision = precision or self._precision.passages  # read once: a switch meanwhile waits for the next call
        counts = list(token_counts) if token_counts is not None else [self._counter().count(t) for t in texts]
        order = batching.longest_first(counts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        done, size = 0, self.batch_size
        while done < len(order):
            batch = order[done : done + size]
            if self.device == "cpu":  # on a GPU, where small batches waste the card, a batch stays whole
                batch = batching.cut(batch, counts, self.max_tokens)
            started = time.perf_counter()
            try:
                with self._batch():
                    if spans is None:
                        vectors[batch] = self._encode([texts[i] for i in batch], precision)
                    else:
                        vectors[batch], pooled = self._encode_pooled(texts, spans, batch, precision)
                        for i, found in zip(batch, pooled, strict=True):
                            sentences[i] = found
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
        return vectors, sentences

    def _encode_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[Span]], batch: Sequence[int], precision: str
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Unit vectors of a batch of passages and their spans' pooled vectors, from one forward pass."""
        chosen = [texts[i] for i in batch]
        tokens = self._counter()
        if precision == "int8":
            vectors, states = self._int8.encode_with_states(chosen, tokens)
        else:
            vectors, states = torch_path.encode_with_states(self.model, chosen, precision, tokens.text_kwargs)
        limit = self.max_tokens
        pooled = [
            pool_spans(state, offsets, spans[i]) if (offsets := tokens.offsets(texts[i], limit)) is not None else None
            for i, state in zip(batch, states, strict=True)
        ]
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12), pooled
