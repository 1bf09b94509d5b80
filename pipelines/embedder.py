"""The embedder: a sentence-transformers model (GLuCoSE by default), loaded once, tokenized as it was trained."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from pipelines.errors import ModelLoadError, TokenizerMismatchError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each embedding batch."""

# Texts whose token ids are checked against sentencepiece when a LUKE model loads: full-width and
# half-width forms, a character outside the vocabulary, and strings that look like special tokens.
TOKENIZER_CHECK_TEXTS = (
    "東京は日本の首都です。",
    "ＡＢＣ全角とｶﾀｶﾅ半角、１２３と123。",
    "𠮷野家の牛丼を食べた！本当に？",
    "文中の[MASK]や<s>や</s>や<mask>や<ent>はただの文字です。",
    "改行\nと\tタブ",
)
# Texts on which a faster precision must reproduce float32 before it is used: varied lengths and forms.
CALIBRATION_TEXTS = (
    *TOKENIZER_CHECK_TEXTS,
    "有給休暇は、入社して六か月が経過した社員に十日付与します。申請は上長に行ってください。",
    "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルと日本で最も高い。",
    "本規程は2024年4月1日から施行する。",
    "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。",
    "梅雨は、北海道と小笠原諸島を除く日本、朝鮮半島南部、中国の南部から長江流域にかけての沿海部、"
    "および台湾など、東アジアの広範囲においてみられる特有の気象現象で、5月から7月にかけて来る"
    "曇りや雨の多い期間のこと。雨季の一種である。",
    "GPUサーバーはA棟3階のサーバー室にあります。",
)
FAST_PATH_COSINE = 0.995
PRECISIONS = ("auto", "float32", "bfloat16")
QUERY_PRECISIONS = ("auto", "float32", "bfloat16", "int8")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where it pays off."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def compare_fast_path(reference: np.ndarray, fast: np.ndarray, documents: np.ndarray | None = None) -> tuple[bool, str]:
    """Whether unit vectors from a fast path match float32's: every cosine ≥ 0.995 and the same neighbours.

    ``reference`` and ``fast`` embed the same texts, row by row. The neighbours of each text (the
    other texts ordered by similarity) must come in the same order: a faster model that ranks
    differently is a bug. For a path that embeds questions only, ``documents`` are the same texts
    as the passages are embedded: each fast question must rank them as the float32 question does.
    """
    cosines = (reference * fast).sum(axis=1)
    worst = float(cosines.min())
    if worst < FAST_PATH_COSINE:
        return False, f"float32 とのコサインが最小 {worst:.4f}（基準 {FAST_PATH_COSINE}）"
    against, fast_against = (reference, fast) if documents is None else (documents, documents)
    order = np.argsort(-(reference @ against.T), axis=1, kind="stable")
    fast_order = np.argsort(-(fast @ fast_against.T), axis=1, kind="stable")
    if not np.array_equal(order[:, :3], fast_order[:, :3]):
        return False, "類似度の順位が float32 と変わる"
    return True, f"float32 とのコサイン最小 {worst:.4f}、順位も一致"


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

    def load(self) -> None: ...

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


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _how_to_fix(name: str) -> str:
    folder = "models/" + name.rstrip("/").rsplit("/", 1)[-1]
    return (
        "ネットワークにつながらない環境では、つながる環境で "
        f"`hf download {name} --local-dir {folder}` のようにモデルを取得して持ち込み、"
        f"RAG_EMBEDDING_MODEL={folder}（または --model {folder}）でそのディレクトリを指定してください。"
    )


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
        precision: str = "auto",
        query_precision: str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if query_precision not in QUERY_PRECISIONS:
            raise ValueError(f"query_precision must be one of {QUERY_PRECISIONS}, got {query_precision!r}")
        self.requested_precision = precision
        self.requested_query_precision = query_precision
        self.precision = "float32"
        self.precision_reason = "まだ読み込んでいません"
        # questions: one short text at a time, where reading the weights, not computing, is the cost
        self.query_precision = "float32"
        self.query_precision_reason = "まだ読み込んでいません"
        self._query_model: Any = None  # the int8 copy of the model that embeds questions, when chosen
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

    def load(self) -> None:
        """Load the model now; a failure raises ``ModelLoadError`` naming the model, the cause and the fix."""
        if self._model is not None:
            return
        started = time.perf_counter()
        model = self._open(self.model_name)
        backbone = getattr(model[0], "auto_model", None)
        if backbone is None or model.tokenizer is None:
            raise ModelLoadError(f"「{self.model_name}」はテキスト用の sentence-transformers モデルではありません。")
        if getattr(backbone.config, "model_type", None) == "luke":
            self._text_kwargs = {"split_special_tokens": True}
            self._pieces = self._check_luke_tokenizer(model)
        # A fast (Rust) tokenizer rewrites its truncation settings on each call and fails with "Already
        # borrowed" when another thread is tokenizing meanwhile; the ingest counts tokens in a background
        # thread while encode runs, so counting gets its own copy. Slow tokenizers keep no such state.
        self._counter = copy.deepcopy(model.tokenizer) if model.tokenizer.is_fast else model.tokenizer
        self._model = model
        calibrated = self._choose_precision()
        self._choose_query_precision(calibrated)
        if self.precision == "bfloat16" and self.query_precision != "float32":
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

        path = Path(name).expanduser()
        if path.is_dir():
            target, local_only = str(path), True
        elif _looks_like_path(name):
            raise ModelLoadError(
                f"埋め込みモデルのディレクトリ「{name}」が見つかりません。パスを確かめてください。"
                + _how_to_fix("pkshatech/GLuCoSE-base-ja")
            )
        else:
            target, local_only = name, False
        try:
            if not local_only:
                try:  # a copy in the Hugging Face cache loads without asking the network
                    return SentenceTransformer(target, device=self.device, local_files_only=True)
                except OSError:
                    logger.info("%s is not in the local cache; downloading it", name)
            return SentenceTransformer(target, device=self.device, local_files_only=local_only)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(
                f"埋め込みモデル「{name}」を読み込めません（{cause}）。" + _how_to_fix(name)
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

    def _choose_precision(self) -> dict[str, np.ndarray]:
        """float32, or bfloat16 where the CPU runs it natively and it reproduces float32 on calibration
        texts. Returns the calibration vectors it computed, by precision."""
        on_cpu = self.model.device.type == "cpu"
        calibrated: dict[str, np.ndarray] = {}
        if self.requested_precision == "float32":
            self.precision, self.precision_reason = "float32", "RAG_PRECISION=float32"
        elif not on_cpu:
            self.precision, self.precision_reason = "float32", f"{self.model.device.type} では float32 を使います"
        elif self.requested_precision == "bfloat16":
            self.precision, self.precision_reason = "bfloat16", "RAG_PRECISION=bfloat16（検査なし）"
        elif not cpu_has_bf16():
            self.precision, self.precision_reason = "float32", "この CPU は bfloat16 をそのまま計算できません"
        else:
            for precision in ("float32", "bfloat16"):
                calibrated[precision] = self._encode(CALIBRATION_TEXTS, precision)
            ok, why = compare_fast_path(calibrated["float32"], calibrated["bfloat16"])
            self.precision = "bfloat16" if ok else "float32"
            self.precision_reason = why if ok else f"bfloat16 は使いません: {why}"
        logger.info("%s: %s (%s)", self.model_name, self.precision, self.precision_reason)
        return calibrated

    def _choose_query_precision(self, calibrated: dict[str, np.ndarray]) -> None:
        """How questions are embedded: int8 where it reproduces float32, else as passages are.

        A question is one short text: the model's weights are read from memory once for a dozen
        tokens, so a copy of the model with int8 weights (a quarter of float32's bytes) embeds it
        about three times faster. It is used only when, on the calibration texts, its vectors stay
        within cosine 0.995 of float32's and rank the passages' vectors as float32 questions do.
        """
        requested = self.requested_query_precision
        same = self.precision
        if requested == "auto" and self.requested_precision == "float32":
            self.query_precision, self.query_precision_reason = same, "RAG_PRECISION=float32 に合わせます"
        elif requested in ("auto", "int8") and self.model.device.type != "cpu":
            self.query_precision, self.query_precision_reason = same, "文書と同じ精度（int8 は CPU だけ）"
        elif requested in ("float32", "bfloat16"):
            self.query_precision, self.query_precision_reason = requested, f"RAG_QUERY_PRECISION={requested}"
        else:
            try:
                self._query_model = int8_copy(self.model)
            except (ImportError, AttributeError, RuntimeError) as error:
                self.query_precision = same
                self.query_precision_reason = f"int8 は使えません（{type(error).__name__}: {error}）。文書と同じ精度"
                return
            if requested == "int8":
                self.query_precision, self.query_precision_reason = "int8", "RAG_QUERY_PRECISION=int8（検査なし）"
            else:
                for precision in ("float32", self.precision):  # what the passages' check did not compute
                    if precision not in calibrated:
                        calibrated[precision] = self._encode(CALIBRATION_TEXTS, precision)
                fast = self._encode(CALIBRATION_TEXTS, "int8")
                ok, why = compare_fast_path(calibrated["float32"], fast, calibrated[self.precision])
                if ok:
                    self.query_precision, self.query_precision_reason = "int8", why
                else:
                    self._query_model = None
                    self.query_precision = same
                    self.query_precision_reason = f"int8 は使いません: {why}。文書と同じ精度"
        logger.info("%s questions: %s (%s)", self.model_name, self.query_precision, self.query_precision_reason)

    def _encode(self, texts: Sequence[str], precision: str | None = None) -> np.ndarray:
        import torch

        loaded = self.model  # loading chooses the precision
        precision = precision or self.precision
        if precision == "float32" and self._weights == "bfloat16":
            raise RuntimeError("the weights are stored in bfloat16: float32 is no longer computed")
        model = self._query_model if precision == "int8" else loaded
        assert model is not None, "no int8 copy of the model"
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
        return self._embed_batches(prefixed, counts, progress, self.query_precision)

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
