"""The HTTP API against a real uvicorn on 127.0.0.1, with an httpx client: every route, keys, refusals, collections."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.faces.api import create_app
from pipelines.faces.cli import main
from pipelines.model.embedder import Embedder
from pipelines.model.warmup import ModelWarmup
from pipelines.service.keys import Keys
from pipelines.service.library import Library
from pipelines.service.oidc import TokenVerifier
from pipelines.service.results import Caller
from pipelines.service.service import Service
from pipelines.service.signin import WRONG
from pipelines.settings import Settings
from testkit.ldap import GROUP_BASE, PEOPLE, USER_DN, Slapd
from testkit.oidc import CLIENT_ID, Provider
from testkit.servers import ChatServer, Reply, UvicornThread, free_port, wait_for

ADMIN = "admin-key-0123456789"
READER = "reader-key-0123456789"
HR = "hr-writer-key-0123456"
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Api:
    url: str
    library: Library
    data_dir: Path

    def client(self, key: str | None = ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def upload(self, collection: str, *files: tuple[str, str], key: str | None = ADMIN) -> httpx.Response:
        parts = [("files", (name, text.encode("utf-8"), "text/plain")) for name, text in files]
        with self.client(key) as client:
            return client.post(f"/v1/collections/{collection}/documents", files=parts)


@pytest.fixture
def environment(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The settings the server and the CLI share: the offline model in float32, small chunks, a keys file."""
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_PRECISION", "float32")  # as the shared embedder fixture computes
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "1")
    keys = tmp_path / "keys"
    keys.write_text(f"{READER} * read\n{HR} 人事* write\n", encoding="utf-8")
    monkeypatch.setenv("RAG_API_KEY", ADMIN)
    monkeypatch.setenv("RAG_API_KEYS_FILE", str(keys))
    return tmp_path / "data"


@pytest.fixture
def start_api(environment: Path, embedder: Embedder) -> Iterator[Callable[..., Api]]:
    servers: list[UvicornThread] = []

    def start(tokens: TokenVerifier | None = None, **overrides: Any) -> Api:
        settings = Settings.from_env(**overrides)
        library = Library(settings, embedder=embedder)
        keys = Keys.from_settings(settings.api_key, settings.api_keys_file)
        app = create_app(Service(library), keys, ModelWarmup(embedder).start(), tokens)
        server = UvicornThread(app).start()
        servers.append(server)
        return Api(server.url, library, environment)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api(start_api: Callable[..., Api]) -> Api:
    return start_api()


def cli(*argv: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    assert main([*argv, "--json"], out=out, err=err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_health_and_docs_need_no_key(api: Api) -> None:
    """Without a valid key the health check says only whether the service is up; with any key, all of it."""
    for key in (None, "wrong-key-0123456789"):
        with api.client(key=key) as client:
            health = client.get("/v1/health")
            assert health.status_code == 200
            assert health.json() == {"status": "ready"}
    for key in (ADMIN, READER, HR):
        with api.client(key=key) as client:
            health = client.get("/v1/health")
            assert health.status_code == 200
            assert health.json()["status"] == "ready"
            assert health.json()["precision"]["passages"] == "float32"
            assert health.json()["store"] == str(api.data_dir)
            assert health.json()["model"]
    with api.client(key=None) as client:
        assert client.get("/docs").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert "/v1/collections/{name}/search" in paths
        assert "multipart/form-data" in paths["/v1/collections/{name}/documents"]["post"]["requestBody"]["content"]
        missing = client.get("/v1/nowhere")
        assert missing.status_code == 404
        assert missing.json()["message"].startswith("そのパスはありません")


def test_two_collections_over_http_are_isolated_and_match_the_cli(api: Api) -> None:
    with api.client() as client:
        assert client.post("/v1/collections/人事規程").status_code == 201
        assert client.post("/v1/collections/技術文書").status_code == 201
        listed = client.get("/v1/collections").json()
        assert [c["name"] for c in listed] == ["default", "人事規程", "技術文書"]
    report = api.upload("人事規程", ("休暇.txt", LEAVE), ("東京.txt", TOKYO))
    assert report.status_code == 200, report.text
    assert [(f["source"], f["status"], f["chunks"]) for f in report.json()["files"]] == [
        ("休暇.txt", "added", 1),
        ("東京.txt", "added", 1),
    ]
    assert api.upload("技術文書", ("富士山.txt", FUJI)).json()["files"][0]["status"] == "added"
    with api.client() as client:
        counts = {c["name"]: (c["documents"], c["chunks"]) for c in client.get("/v1/collections").json()}
        assert counts == {"default": (0, 0), "人事規程": (2, 2), "技術文書": (1, 1)}
        for collection, sources in (("人事規程", {"休暇.txt", "東京.txt"}), ("技術文書", {"富士山.txt"})):
            for question in (FUJI, LEAVE, TOKYO):
                body = {"question": question, "k": 5, "mode": "hybrid"}
                found = client.post(f"/v1/collections/{collection}/search", json=body)
                assert found.status_code == 200, found.text
                assert {h["source"] for h in found.json()["hits"]} == sources  # never one of the other collection
                expected = cli("search", question, "-k", "5", "--collection", collection)
                got = found.json()["hits"]
                assert [(h["source"], h["chunk_index"], h["rank"]) for h in got] == [
                    (h["source"], h["chunk_index"], h["rank"]) for h in expected
                ]
                assert [h["cosine"] for h in got] == pytest.approx([h["cosine"] for h in expected], abs=1e-4)
                assert found.json()["rule"]
        bare = client.post("/v1/collections/人事規程/search", json={"question": LEAVE, "best_sentences": False}).json()
        full = client.post("/v1/collections/人事規程/search", json={"question": LEAVE}).json()
        best = ("best_sentence", "best_location", "best_page", "best_slide", "best_row")
        assert [[h[f] for f in best] for h in bare["hits"]] == [[None] * 5] * 2
        assert all(h["best_sentence"] is not None for h in full["hits"])
        assert [h["chunk_id"] for h in full["hits"]] == [h["chunk_id"] for h in bare["hits"]]
        only = client.post("/v1/collections/人事規程/search", json={"question": FUJI, "documents": ["休暇.txt"]})
        assert [h["source"] for h in only.json()["hits"]] == ["休暇.txt"]
        keyword = client.post("/v1/collections/人事規程/search", json={"question": "有給休暇", "mode": "keyword"})
        assert [h["source"] for h in keyword.json()["hits"]] == ["休暇.txt"]
        documents = client.get("/v1/collections/人事規程/documents").json()
        assert documents == cli("documents", "--collection", "人事規程")
        gone = client.delete("/v1/collections/人事規程/documents/東京.txt")
        assert (gone.status_code, gone.json()["source"]) == (200, "東京.txt")
        again = client.delete("/v1/collections/人事規程/documents/東京.txt")
        assert again.status_code == 404
        assert "東京.txt" in again.json()["message"]
        assert [d["source"] for d in client.get("/v1/collections/人事規程/documents").json()] == ["休暇.txt"]


def test_documents_in_folders_are_deleted_by_their_path(api: Api) -> None:
    assert api.upload("default", ("規程.txt", LEAVE)).status_code == 200
    with api.client() as client:
        # an upload keeps only the file's name; a folder's path (from the CLI) is one name with a slash
        assert client.delete("/v1/collections/default/documents/sub/none.txt").status_code == 404
        assert client.delete("/v1/collections/default/documents/規程.txt").status_code == 200


def test_the_key_matrix(api: Api) -> None:
    with api.client() as admin:
        admin.post("/v1/collections/人事規程")
        admin.post("/v1/collections/技術文書")
    search = {"question": TOKYO}
    cases = [
        # key, method, path, status
        (None, "GET", "/v1/collections", 401),
        ("wrong-key-0123456789", "GET", "/v1/collections", 401),
        (None, "POST", "/v1/collections/人事規程/search", 401),
        ("wrong-key-0123456789", "POST", "/v1/collections/人事規程/search", 401),
        (READER, "POST", "/v1/collections/人事規程/search", 200),
        (READER, "GET", "/v1/collections/技術文書/documents", 200),
        (READER, "POST", "/v1/collections/新規", 403),  # read-only key writing
        (READER, "DELETE", "/v1/collections/技術文書", 403),
        (READER, "DELETE", "/v1/collections/技術文書/documents/x.txt", 403),
        (HR, "POST", "/v1/collections/技術文書/search", 403),  # a key for another collection
        (HR, "GET", "/v1/collections/default/documents", 403),
        (HR, "POST", "/v1/collections/人事規程/search", 200),
        (HR, "POST", "/v1/collections/人事部", 201),
        (HR, "DELETE", "/v1/collections/人事部", 200),
        (ADMIN, "POST", "/v1/collections/技術文書/search", 200),
    ]
    for key, method, path, status in cases:
        with api.client(key) as client:
            response = client.request(method, path, json=search if path.endswith("/search") else None)
        assert response.status_code == status, (key, method, path, response.text)
        if status in (401, 403):
            assert response.json()["status"] == status
            assert ("キー" if status == 401 else "権限がありません") in response.json()["message"]
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    refused = api.upload("技術文書", ("x.txt", TOKYO), key=READER)
    assert refused.status_code == 403
    assert "書き込み" in refused.json()["message"]
    assert api.upload("人事規程", ("x.txt", TOKYO), key=HR).status_code == 200
    with api.client(HR) as client:
        assert [c["name"] for c in client.get("/v1/collections").json()] == ["人事規程"]  # only what it may read


def test_the_providers_tokens_carry_the_policys_rights(
    start_api: Callable[..., Api], provider: Provider, tmp_path: Path
) -> None:
    """RAG_AUTH=oidc: a bearer that is no key is the provider's signed token; the person it names has the policy's rights."""
    policy = tmp_path / "policy.txt"
    policy.write_text("group:jinji 人事* read\n", encoding="utf-8")
    api = start_api(TokenVerifier(provider.metadata_url, CLIENT_ID), policy_file=policy)
    with api.client() as admin:  # the keys work as before
        assert admin.post("/v1/collections/人事規程").status_code == 201
        assert admin.post("/v1/collections/技術文書").status_code == 201
    assert api.upload("人事規程", ("規程.txt", LEAVE)).status_code == 200
    suzuki = provider.sign_in("suzuki")["id_token"]  # in group jinji
    yamada = provider.sign_in("yamada")["id_token"]  # the role gijutsu: nothing granted
    search = {"question": "有給休暇はいつから", "best_sentences": False}
    with api.client(suzuki) as client:
        found = client.post("/v1/collections/人事規程/search", json=search)
        assert found.status_code == 200, found.text
        assert found.json()["hits"][0]["source"] == "規程.txt"
        refused = client.post("/v1/collections/技術文書/search", json=search)
        assert refused.status_code == 403
        assert "権限がありません" in refused.json()["message"]
        assert [c["name"] for c in client.get("/v1/collections").json()] == ["人事規程"]
        assert client.post("/v1/collections/人事部").status_code == 403  # read only
    with api.client(yamada) as client:
        assert client.post("/v1/collections/人事規程/search", json=search).status_code == 403
    head, payload, signature = suzuki.split(".")
    tampered = ".".join((head, payload, signature[:-6] + ("AAAAAA" if signature[-6:] != "AAAAAA" else "BBBBBB")))
    for token in (tampered, "not-a-token-0123456789", provider.sign_in("suzuki")["access_token"]):
        with api.client(token) as client:
            response = client.post("/v1/collections/人事規程/search", json=search)
        assert response.status_code == 401, response.text
        assert "トークンを確かめられません" in response.json()["message"]
        assert response.headers["www-authenticate"] == "Bearer"
    with api.client(None) as client:
        assert client.get("/v1/collections").status_code == 401
    # the same token, two hours on: expired
    later = start_api(
        TokenVerifier(provider.metadata_url, CLIENT_ID, clock=lambda: time.time() + 7200), policy_file=policy
    )
    with later.client(suzuki) as client:
        expired = client.post("/v1/collections/人事規程/search", json=search)
    assert expired.status_code == 401
    assert "有効期限が切れています" in expired.json()["message"]
    # a token for another client (audience) is not for this API
    other = start_api(TokenVerifier(provider.metadata_url, "another-client"), policy_file=policy)
    with other.client(suzuki) as client:
        assert client.post("/v1/collections/人事規程/search", json=search).status_code == 401


def test_bad_bodies_and_names_get_japanese_messages(api: Api) -> None:
    with api.client() as client:
        client.post("/v1/collections/人事規程")
        path = "/v1/collections/人事規程/search"
        for body in (
            {},
            {"question": ""},
            {"question": "   "},
            {"question": TOKYO, "k": 0},
            {"question": TOKYO, "k": "many"},
            {"question": TOKYO, "mode": "fuzzy"},
            {"question": TOKYO, "documents": "休暇.txt"},
            {"question": TOKYO, "unknown": 1},
            [TOKYO],
        ):
            response = client.post(path, json=body)
            assert response.status_code == 422, body
            assert response.json()["message"].startswith("リクエストの内容が正しくありません"), response.text
        broken = client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 422
        expected = {
            ("POST", "/v1/collections/存在しない/search"): 404,
            ("GET", "/v1/collections/存在しない/documents"): 404,
            ("DELETE", "/v1/collections/存在しない"): 404,
            ("POST", "/v1/collections/人事規程"): 409,
            ("DELETE", "/v1/collections/default"): 409,
            ("POST", "/v1/collections/a%3Fb"): 400,
            ("POST", "/v1/collections/" + "長" * 65): 400,
            ("PUT", "/v1/collections/人事規程"): 405,
        }
        for (method, url), status in expected.items():
            response = client.request(method, url, json={"question": TOKYO} if url.endswith("search") else None)
            assert response.status_code == status, (method, url, response.text)
            assert response.json()["status"] == status
            assert any("\u3040" <= c <= "\u30ff" for c in response.json()["message"])  # written in Japanese
        empty = client.post("/v1/collections/人事規程/documents", files=[("other", ("a.txt", b"x", "text/plain"))])
        assert empty.status_code == 400
        assert "files" in empty.json()["message"]
    unreadable = api.upload("人事規程", ("壊れた.pdf", "%PDF-1.4 broken"))
    assert unreadable.status_code == 200
    assert unreadable.json()["files"][0]["status"] == "failed"
    assert unreadable.json()["files"][0]["message"]


def test_an_upload_over_the_limit_is_refused_before_its_body_is_read(api: Api) -> None:
    big = b"a" * (2 * 1024 * 1024)  # RAG_MAX_UPLOAD_MB=1
    with api.client() as client:
        sized = client.post("/v1/collections/default/documents", files=[("files", ("big.txt", big, "text/plain"))])
        assert sized.status_code == 413
        assert "大きすぎます" in sized.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b"--x\r\nContent-Disposition: form-data; name=files; filename=big.txt\r\n\r\n"
            for _ in range(40):
                yield b"a" * 65536
            yield b"\r\n--x--\r\n"

        streamed = client.post(
            "/v1/collections/default/documents",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert streamed.status_code == 413
        assert streamed.json()["code"] == "too_large"
        search = client.post(
            "/v1/collections/default/search", json={"question": "a" * 1000, "k": 1, "pad": "b" * 2**21}
        )
        assert search.status_code == 413
        padded = b'{"question": "a", "pad": "' + b"b" * 65536 * 20 + b'"}'
        streamed_search = client.post(  # no Content-Length: FastAPI's own refusal (400) becomes a 413
            "/v1/collections/default/search",
            content=iter([padded[i : i + 65536] for i in range(0, len(padded), 65536)]),
            headers={"Content-Type": "application/json"},
        )
        assert streamed_search.status_code == 413
        assert streamed_search.json()["code"] == "too_large"
        assert client.get("/v1/collections/default/documents").json() == []


def test_a_deleted_collection_leaves_nothing(api: Api) -> None:
    with api.client() as client:
        created = client.post("/v1/collections/技術文書").json()
    chroma = created["chroma_name"]
    api.upload("技術文書", ("富士山.txt", FUJI), ("東京.txt", TOKYO))
    api.upload("default", ("休暇.txt", LEAVE))
    keyword = api.data_dir / "keyword" / f"{chroma}.npz"
    originals = api.data_dir / "originals" / chroma
    with api.client() as client:
        client.post("/v1/collections/技術文書/search", json={"question": FUJI})  # the keyword index is saved
        assert keyword.is_file()
        assert len([p for p in originals.rglob("*") if p.is_file()]) == 2
        deleted = client.delete("/v1/collections/技術文書")
        assert deleted.status_code == 200
        assert (deleted.json()["documents"], deleted.json()["chunks"]) == (2, 2)
        names = [c.name for c in api.library.collections.root.client.list_collections()]
        assert not [n for n in names if n.startswith(chroma)]
        assert not keyword.exists()
        assert not originals.exists()
        assert client.post("/v1/collections/技術文書/search", json={"question": FUJI}).status_code == 404
        # the default collection's document and original are untouched
        assert [d["source"] for d in client.get("/v1/collections/default/documents").json()] == ["休暇.txt"]
        assert len([p for p in (api.data_dir / "originals").glob("??/*") if p.is_file()]) == 1
        assert client.post("/v1/collections/技術文書").status_code == 201  # the name can be used again, empty
        again = client.post("/v1/collections/技術文書/search", json={"question": FUJI})
        assert again.json()["hits"] == []


def test_ask_json_and_streamed(start_api: Callable[..., Api], chat_server: ChatServer) -> None:
    api = start_api(llm_url=chat_server.url, llm_model="テスト用モデル")
    api.upload("default", ("富士山.txt", FUJI), ("東京.txt", TOKYO))
    chat_server.replies = [Reply("富士山の標高は三七七六メートルです[1]。")]
    with api.client() as client:
        answered = client.post("/v1/collections/default/ask", json={"question": FUJI, "k": 2})
        assert answered.status_code == 200, answered.text
        result = answered.json()
        assert result["answer"] == "富士山の標高は三七七六メートルです[1]。"
        assert result["citations"][0]["source"] == "富士山.txt"
        assert result["error"] is None
        assert (
            result["hits"]
            == client.post("/v1/collections/default/search", json={"question": FUJI, "k": 2}).json()["hits"]
        )
        events = []
        with client.stream("POST", "/v1/collections/default/ask", json={"question": FUJI, "k": 2, "stream": True}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for block in r.read().decode().split("\n\n"):
                if block.strip():
                    event, data = block.split("\n", 1)
                    events.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "hits"
        assert kinds[-1] == "answer"
        assert "delta" in kinds
        assert "".join(d["text"] for kind, d in events if kind == "delta") == result["answer"]
        assert events[-1][1]["citations"] == result["citations"]
        chat_server.replies = [Reply(status=500)]
        failed = client.post("/v1/collections/default/ask", json={"question": FUJI})
        assert failed.status_code == 503
        assert "HTTP 500" in failed.json()["message"]
        assert failed.json()["hits"]  # the passages found are still given
        with client.stream("POST", "/v1/collections/default/ask", json={"question": FUJI, "stream": True}) as r:
            body = r.read().decode()
        assert "event: error" in body
        assert "HTTP 500" in body


def test_ask_without_a_chat_model_says_how_to_set_one(api: Api) -> None:
    with api.client() as client:
        response = client.post("/v1/collections/default/ask", json={"question": FUJI})
    assert response.status_code == 503
    assert "RAG_LLM_URL" in response.json()["message"]


def test_writes_wait_for_each_other_and_searches_go_on(api: Api) -> None:
    """Uploads to one collection from several clients at once all land; searches meanwhile all answer."""
    with api.client() as client:
        client.post("/v1/collections/人事規程")
    results: list[int] = []

    def upload(number: int) -> None:
        results.append(api.upload("人事規程", (f"規程{number}.txt", f"第{number}条。{LEAVE}")).status_code)

    def search() -> None:
        with api.client() as client:
            for _ in range(5):
                results.append(client.post("/v1/collections/人事規程/search", json={"question": LEAVE}).status_code)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(4)] + [
        threading.Thread(target=search) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [200] * 19
    with api.client() as client:
        assert len(client.get("/v1/collections/人事規程/documents").json()) == 4


def test_without_keys_the_server_is_open_on_loopback_only(
    start_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAG_API_KEY")
    monkeypatch.delenv("RAG_API_KEYS_FILE")
    api = start_api()
    with api.client(key=None) as client:
        assert client.post("/v1/collections/人事規程").status_code == 201
    out, err = io.StringIO(), io.StringIO()
    assert main(["serve", "--host", "0.0.0.0", "--port", str(free_port())], out=out, err=err) == 2
    assert "API キーがないまま 0.0.0.0 で待ち受けることはしません" in err.getvalue()


@pytest.mark.server
def test_python_dash_m_pipelines_serve(environment: Path) -> None:
    """The real command: starts, answers the health check once the model is loaded, and serves a route."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/health", process, seconds=120)
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/collections", headers={"Authorization": f"Bearer {ADMIN}"})
        assert listed.json()[0]["name"] == "default"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode in (0, -15), err.decode()


def test_the_audit_log_names_each_key_and_address_and_every_refusal(api: Api) -> None:
    """An unknown key is a refused sign-in, a key without the right a refusal, each under the key's digest."""
    with api.client("wrong-key-0123456789") as client:
        assert client.get("/v1/collections").status_code == 401
    with api.client(READER) as client:
        assert client.post("/v1/collections/新規").status_code == 403
    entries = api.library.audit.entries()
    assert [(e.action, e.who, e.address, e.outcome) for e in entries[:2]] == [
        ("sign_in_failed", Keys.label("Bearer wrong-key-0123456789"), "127.0.0.1", "refused"),
        ("refused", Keys.label(f"Bearer {READER}"), "127.0.0.1", "refused"),
    ]
    assert entries[1].collection == "新規"
    assert "API キーが違います" in entries[0].detail


def test_a_directory_person_signs_in_to_the_api_with_their_password(
    start_api: Callable[..., Api], slapd: Slapd, tmp_path: Path
) -> None:
    """RAG_AUTH=ldap: HTTP Basic with the directory's password; the person has the policy's rights, and the audit shows it."""
    policy = tmp_path / "policy.txt"
    policy.write_text("group:jinji 人事* read\n", encoding="utf-8")
    api = start_api(
        auth="ldap", ldap_url=slapd.url, ldap_user_dn=USER_DN, ldap_group_base=GROUP_BASE, policy_file=policy
    )
    with api.client() as admin:  # the keys work as before
        assert admin.post("/v1/collections/人事規程").status_code == 201
        assert admin.post("/v1/collections/技術文書").status_code == 201
    assert api.upload("人事規程", ("規程.txt", LEAVE)).status_code == 200
    tanaka = PEOPLE[0]
    search = {"question": "有給休暇", "k": 1}
    with httpx.Client(base_url=api.url, auth=(tanaka.uid, tanaka.password), timeout=60) as person:
        assert person.post("/v1/collections/人事規程/search", json=search).status_code == 200
        refused = person.post("/v1/collections/技術文書/search", json=search)
        assert refused.status_code == 403
        assert [c["name"] for c in person.get("/v1/collections").json()] == ["人事規程"]
        assert person.post("/v1/collections/人事規程/documents", files=[("files", ("x.txt", b"x"))]).status_code == 403
    with httpx.Client(base_url=api.url, auth=(tanaka.uid, "違うパスワード"), timeout=60) as wrong:
        denied = wrong.post("/v1/collections/人事規程/search", json=search)
    assert denied.status_code == 401
    assert denied.json()["message"] == WRONG
    with httpx.Client(base_url=api.url, auth=("nobody", "違うパスワード"), timeout=60) as unknown:
        assert unknown.post("/v1/collections/人事規程/search", json=search).json()["message"] == WRONG
    audit = Service(Library(Settings.from_env(policy_file=policy))).audit(Caller("cli"))
    rows = [(e.action, e.who, e.collection, e.outcome) for e in audit if e.face == "api"]
    assert ("sign_in", "tanaka", "", "ok") in rows
    assert ("search", "tanaka", "人事規程", "ok") in rows
    assert ("refused", "tanaka", "技術文書", "refused") in rows
    assert ("sign_in_failed", "tanaka", "", "refused") in rows
    assert ("sign_in_failed", "nobody", "", "refused") in rows


def test_sources_over_http_as_the_cli_gives_them(api: Api, tmp_path: Path) -> None:
    """The machine's user adds a folder (never a key: it would read the server's files); the admin key syncs,
    lists and removes it; a key without ``admin`` is refused."""
    share = tmp_path / "共有" / "規程"
    share.mkdir(parents=True)
    (share / "就業規則.txt").write_text(LEAVE, encoding="utf-8")
    (share / "~$就業規則.docx").write_text("lock", encoding="utf-8")
    with api.client() as client:
        refused = client.post("/v1/collections/default/sources", json={"location": "/etc"})
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        assert "同期元を加えられるのは" in refused.json()["message"]
        added = cli("sources", "add", str(share.parent))
        number = added["id"]
        assert added["location"] == str(share.parent)
        synced = client.post("/v1/collections/default/sync", json={})
        assert synced.status_code == 200, synced.text
        [report] = synced.json()
        assert (report["outcome"], report["added"]) == ("ok", ["規程/就業規則.txt"])
        [listed] = client.get("/v1/collections/default/sources").json()
        assert listed == cli("sources", "list")[0]
        assert listed["counts"]["added"] == 1
        missing = client.delete("/v1/collections/default/sources/99")
        assert (missing.status_code, missing.json()["code"]) == (404, "source_not_found")
    for key in (READER, HR):
        with api.client(key) as client:
            assert client.get("/v1/collections/default/sources").status_code == 403
            assert client.post("/v1/collections/default/sync", json={}).status_code == 403
    with api.client() as client:
        removed = client.delete(f"/v1/collections/default/sources/{number}")
        assert removed.status_code == 200
        assert client.get("/v1/collections/default/sources").json() == []
        assert [d["source"] for d in client.get("/v1/collections/default/documents").json()] == ["規程/就業規則.txt"]
