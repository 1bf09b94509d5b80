"""The MCP face through the SDK's own client, against the real ``python -m pipelines mcp`` (stdio) and ``serve`` (/mcp).

The tools and their schemas, the passages of ``search --json`` for the same question, a passage read
back by its id and as a resource (a Japanese file name with a space, ``#`` and ``%``), the rights of
a key limited to one collection, bad arguments as Japanese tool errors, and the audit rows that name
the client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from pipelines.faces.api import create_app
from pipelines.faces.mcp_face import parse_passage_uri, passage_uri
from pipelines.model.embedder import Embedder
from pipelines.model.warmup import ModelWarmup
from pipelines.service import words
from pipelines.service.audit import AuditEntry
from pipelines.service.keys import Keys
from pipelines.service.library import Library
from pipelines.service.links import viewer_link
from pipelines.service.oidc import TokenVerifier
from pipelines.service.results import machine_caller
from pipelines.service.service import Service
from pipelines.settings import Settings
from testkit import mcp
from testkit.cli import run
from testkit.oidc import CLIENT_ID, Provider
from testkit.servers import ChatServer, Reply, UvicornThread

ADMIN = "admin-key-0123456789"
HR = "hr-reader-key-0123456"
LEAVE_NAME = "有給休暇 規程#2（100%）.txt"
LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。申請は上長に出します。"
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
DESIGN = "設計書によると、検索サーバーは八〇〇〇番ポートで待ち受けます。"
QUESTION = "有給休暇はいつから取れますか"
PAGE = "https://docs.example.jp/"
TOOLS = {"search", "ask", "list_collections", "list_documents", "read_passage"}


@dataclass
class World:
    """A data directory with two collections, and the settings every process here is given."""

    env: dict[str, str]
    cli_hits: list[dict[str, Any]]

    def audit(self, embedder: Embedder) -> list[AuditEntry]:
        return Service(Library(Settings.from_env(self.env), embedder=embedder)).audit(machine_caller("cli"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> World:
    root = tmp_path_factory.mktemp("mcp")
    keys = root / "keys"
    keys.write_text(f"{HR} 人事* read\n", encoding="utf-8")
    env = {
        "RAG_EMBEDDING_MODEL": str(model_dir),
        "RAG_DATA_DIR": str(root / "data"),
        "RAG_DEVICE": "cpu",
        "RAG_PRECISION": "float32",  # as the shared embedder fixture computes
        "RAG_CHUNK_TOKENS": "48",
        "RAG_CHUNK_OVERLAP": "8",
        "RAG_API_KEY": ADMIN,
        "RAG_API_KEYS_FILE": str(keys),
        "RAG_PAGE_URL": PAGE,
    }
    service = Service(Library(Settings.from_env(env), embedder=embedder))
    admin = machine_caller("cli")
    service.create_collection(admin, "人事規程")
    service.create_collection(admin, "技術文書")
    assert not service.upload(admin, "人事規程", [(LEAVE_NAME, LEAVE.encode()), ("東京.txt", TOKYO.encode())]).error
    assert not service.upload(admin, "技術文書", [("設計.txt", DESIGN.encode())]).error
    service.close()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        status, out, err = run("search", QUESTION, "--collection", "人事規程", "-k", "2", "--json")
    assert status == 0, err
    return World(env, json.loads(out))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    """The real ``serve`` on this data; yields its /mcp URL."""
    server = mcp.serve(world.env).start()
    try:
        yield f"http://127.0.0.1:{server.port}/mcp"
    finally:
        server.stop()


def same_as_cli(found: dict[str, Any], cli_hits: list[dict[str, Any]]) -> None:
    """The search tool's passages are ``search --json``'s, field for field, each with its id and link."""
    hits = found["hits"]
    assert [{key: hit[key] for key in cli} for hit, cli in zip(hits, cli_hits, strict=True)] == cli_hits
    assert hits[0]["source"] == LEAVE_NAME
    assert hits[0]["uri"] == passage_uri("人事規程", LEAVE_NAME, 0)
    assert hits[0]["link"] == viewer_link(PAGE, "人事規程", LEAVE_NAME, 0, None)


# -- ids and links, without a process -------------------------------------------------------------


@pytest.mark.parametrize(
    ("collection", "source", "chunk"),
    [
        ("default", "就業規則.pdf", 0),
        ("人事規程", LEAVE_NAME, 12),
        ("技術 文書", "規程/第1章?.docx", 3),
        ("ｶﾀｶﾅ", "a%2Fb#c.txt", 7),
    ],
)
def test_a_passage_id_round_trips_every_name(collection: str, source: str, chunk: int) -> None:
    uri = passage_uri(collection, source, chunk)
    assert uri.isascii()
    assert uri.startswith("rag://passage/")
    assert parse_passage_uri(uri) == (collection, source, chunk)


def test_an_id_a_client_decoded_still_reads_and_anything_else_is_refused() -> None:
    assert parse_passage_uri("rag://passage/人事規程/規程/第1章.txt/2") == ("人事規程", "規程/第1章.txt", 2)
    for wrong in ("", "rag://passage/人事規程/0", "http://passage/a/b/0", "rag://doc/a/b/0", "rag://passage/a/b/x"):
        with pytest.raises(Exception, match="は箇所の ID ではありません"):
            parse_passage_uri(wrong)


def test_the_link_opens_the_page_viewer_of_the_passage() -> None:
    assert viewer_link("", "人事規程", "a.pdf", 1, 2) is None
    link = viewer_link("https://docs.example.jp/rag/?x=1", "人事規程", "就業 規則.pdf", 4, 3)
    assert link == (
        "https://docs.example.jp/rag/?doc=%E5%B0%B1%E6%A5%AD+%E8%A6%8F%E5%89%87.pdf&chunk=4&page=3"
        "&collection=%E4%BA%BA%E4%BA%8B%E8%A6%8F%E7%A8%8B"
    )
    assert viewer_link(PAGE, "default", "a.txt", 0, None) == "https://docs.example.jp/?doc=a.txt&chunk=0"


# -- stdio -----------------------------------------------------------------------------------------


@pytest.mark.server
def test_stdio_lists_the_tools_and_gives_the_cli_passages(world: World, embedder: Embedder) -> None:
    async def session() -> None:
        async with mcp.connect(mcp.stdio(world.env)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert tool.description
                assert "/" in (tool.title or "")  # Japanese / English
                assert tool.input_schema["type"] == "object"
                assert tool.output_schema is not None
            search = tools["search"].input_schema
            assert search["required"] == ["question"]
            assert {"collection", "k", "mode", "documents"} <= set(search["properties"])
            k = search["properties"]["k"]["anyOf"][0]
            assert (k["minimum"], k["maximum"]) == (1, 100)
            assert "hits" in (tools["search"].output_schema or {})["properties"]

            called = await client.call_tool("search", {"question": QUESTION, "collection": "人事規程", "k": 2})
            found = mcp.structured(called)
            same_as_cli(found, world.cli_hits)
            assert json.loads(mcp.text(called))["hits"][0]["text"] == LEAVE  # the same, as text

            uri = found["hits"][0]["uri"]
            read = mcp.structured(await client.call_tool("read_passage", {"uri": uri}))
            assert (read["source"], read["text"]) == (LEAVE_NAME, LEAVE)
            assert read["link"] == found["hits"][0]["link"]
            assert mcp.text(await client.read_resource(uri)) == LEAVE

            listed = mcp.structured(await client.call_tool("list_collections", {}))
            assert [c["name"] for c in listed["collections"]] == ["default", "人事規程", "技術文書"]
            documents = mcp.structured(await client.call_tool("list_documents", {"collection": "人事規程"}))
            assert [d["source"] for d in documents["documents"]] == sorted([LEAVE_NAME, "東京.txt"])

    anyio.run(session)
    rows = [
        (e.face, e.who, e.client, e.action, e.collection, e.document) for e in world.audit(embedder) if e.face == "mcp"
    ]
    user = machine_caller("mcp").name
    client = f"{mcp.CLIENT.name} {mcp.CLIENT.version}"
    assert rows[-5:] == [
        ("mcp", user, client, "search", "人事規程", ""),
        ("mcp", user, client, "view", "人事規程", LEAVE_NAME),  # read_passage
        ("mcp", user, client, "view", "人事規程", LEAVE_NAME),  # the resource
        ("mcp", user, client, "list", "", ""),
        ("mcp", user, client, "list", "人事規程", ""),
    ]


@pytest.mark.server
def test_stdio_refuses_bad_arguments_with_japanese_tool_errors(world: World) -> None:
    async def session() -> list[tuple[bool, str]]:
        async with mcp.connect(mcp.stdio(world.env)) as client:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("search", {"question": QUESTION, "k": 0}),
                ("search", {"question": QUESTION, "mode": "fuzzy"}),
                ("search", {"k": 3}),
                ("search", {"question": QUESTION, "collection": "ない"}),
                ("ask", {"question": QUESTION, "collection": "人事規程"}),
                ("read_passage", {"uri": "rag://passage/人事規程/ない.txt/0"}),
                ("read_passage", {"uri": "file:///etc/passwd"}),
                ("delete_everything", {}),
            ]
            results = [await client.call_tool(name, arguments) for name, arguments in calls]
            with pytest.raises(MCPError, match="は箇所の ID ではありません"):
                await client.read_resource("rag://passage/人事規程/ない.txt/x")
            return [(r.is_error, mcp.text(r)) for r in results]

    results = anyio.run(session)
    assert all(error for error, _ in results)
    messages = [text for _, text in results]
    assert messages[0] == "ツール「search」の引数が正しくありません: k（1 以上にしてください）。"
    assert (
        messages[1]
        == "ツール「search」の引数が正しくありません: mode（hybrid・dense・keyword のどれかにしてください）。"
    )
    assert messages[2] == "ツール「search」の引数が正しくありません: question（必須です）。"
    assert messages[3].startswith("コレクション「ない」はありません。")
    assert messages[4] == words.NO_CHAT_MODEL
    assert messages[5] == words.DOCUMENT_MISSING.format(source="ない.txt")
    assert messages[6] == words.PASSAGE_ID_INVALID.format(uri="file:///etc/passwd")
    assert messages[7] == words.MCP_NO_TOOL.format(name="delete_everything")
    assert not any("Traceback" in text or "Error executing" in text for text in messages)


@pytest.mark.server
def test_stdio_with_a_key_has_only_the_keys_rights(world: World) -> None:
    async def session() -> tuple[Any, ...]:
        async with mcp.connect(mcp.stdio(world.env, "--key", HR)) as client:
            listed = await client.call_tool("list_collections", {})
            mine = await client.call_tool("search", {"question": QUESTION, "collection": "人事規程", "k": 2})
            other = await client.call_tool("search", {"question": "ポート", "collection": "技術文書"})
            return mcp.structured(listed), mcp.structured(mine), other

    listed, mine, other = anyio.run(session)
    assert [c["name"] for c in listed["collections"]] == ["人事規程"]
    same_as_cli(mine, world.cli_hits)
    assert other.is_error
    assert mcp.text(other) == "コレクション「技術文書」の読み取りの権限がありません。管理者に確かめてください。"


@pytest.mark.server
def test_stdio_refuses_to_start_with_an_unknown_key(world: World) -> None:
    async def session() -> None:
        async with mcp.connect(mcp.stdio(world.env, "--key", "no-such-key-0123456789")):
            pass

    with pytest.raises(Exception):  # noqa: B017, PT011 - the server exits before it answers: the client fails to connect
        anyio.run(session)


# -- Streamable HTTP on the API server -------------------------------------------------------------


@pytest.mark.server
def test_http_mcp_wants_a_key_like_the_api(api: str) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}):
        refused = httpx.post(api, json=initialize, headers=headers, timeout=30)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["code"] == "unauthenticated"
    assert httpx.post(api, json=initialize, timeout=30).json()["message"].startswith("API キーがありません")


@pytest.mark.server
def test_http_mcp_gives_the_cli_passages(world: World, api: str, embedder: Embedder) -> None:
    async def session() -> tuple[Any, ...]:
        async with mcp.connect(api, ADMIN) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            found = mcp.structured(
                await client.call_tool("search", {"question": QUESTION, "collection": "人事規程", "k": 2})
            )
            uri = found["hits"][0]["uri"]
            read = mcp.structured(await client.call_tool("read_passage", {"uri": uri}))
            return tools, found, read, mcp.text(await client.read_resource(uri))

    tools, found, read, text = anyio.run(session)
    assert tools == TOOLS
    same_as_cli(found, world.cli_hits)
    assert read["text"] == text == LEAVE
    rows = [(e.who, e.address, e.client, e.action) for e in world.audit(embedder) if e.face == "mcp" and e.address]
    assert rows[-3:] == [
        (f"key:{_digest(ADMIN)}", "127.0.0.1", f"{mcp.CLIENT.name} {mcp.CLIENT.version}", action)
        for action in ("search", "view", "view")
    ]


@pytest.mark.server
def test_http_mcp_key_for_one_collection_reaches_nothing_else(world: World, api: str, embedder: Embedder) -> None:
    other = passage_uri("技術文書", "設計.txt", 0)

    async def session() -> tuple[Any, ...]:
        async with mcp.connect(api, HR) as client:
            listed = await client.call_tool("list_collections", {})
            calls = [
                await client.call_tool("search", {"question": "ポート", "collection": "技術文書"}),
                await client.call_tool("list_documents", {"collection": "技術文書"}),
                await client.call_tool("read_passage", {"uri": other}),
                await client.call_tool("ask", {"question": "ポート", "collection": "技術文書"}),
            ]
            with pytest.raises(MCPError, match="読み取りの権限がありません"):
                await client.read_resource(other)
            mine = await client.call_tool("search", {"question": QUESTION, "collection": "人事規程", "k": 2})
            return mcp.structured(listed), calls, mcp.structured(mine)

    listed, calls, mine = anyio.run(session)
    assert [c["name"] for c in listed["collections"]] == ["人事規程"]
    refusal = "コレクション「技術文書」の読み取りの権限がありません。管理者に確かめてください。"
    assert [(c.is_error, mcp.text(c)) for c in calls] == [(True, refusal)] * 4
    same_as_cli(mine, world.cli_hits)
    refused = [e for e in world.audit(embedder) if e.face == "mcp" and e.action == "refused"]
    assert {(e.who, e.collection, e.client) for e in refused[-5:]} == {
        (f"key:{_digest(HR)}", "技術文書", f"{mcp.CLIENT.name} {mcp.CLIENT.version}")
    }


def _digest(key: str) -> str:
    return Keys.label(f"Bearer {key}").removeprefix("key:")


@pytest.mark.server
def test_ask_answers_with_citations_where_a_chat_model_is_set(
    world: World, embedder: Embedder, chat_server: ChatServer
) -> None:
    settings = Settings.from_env(world.env, llm_url=chat_server.url, llm_model="テスト用モデル")
    service = Service(Library(settings, embedder=embedder))
    app = create_app(service, Keys.from_settings(ADMIN, None), ModelWarmup(embedder).start())
    server = UvicornThread(app, lifespan="on").start()  # its /mcp sessions run in its lifespan

    async def session() -> tuple[Any, Any]:
        async with mcp.connect(f"{server.url}/mcp", ADMIN) as client:
            arguments = {"question": QUESTION, "collection": "人事規程", "k": 2}
            chat_server.replies = [Reply("有給休暇は入社六か月後から取得できます[1]。")]
            answered = await client.call_tool("ask", arguments)
            chat_server.replies = [Reply(status=500)]
            return answered, await client.call_tool("ask", arguments)

    try:
        answered, failed = anyio.run(session)
    finally:
        server.stop()
    result = mcp.structured(answered)
    assert (result["answer"], result["answered"]) == ("有給休暇は入社六か月後から取得できます[1]。", True)
    assert [(c["n"], c["source"]) for c in result["citations"]] == [(1, LEAVE_NAME)]
    same_as_cli(result, world.cli_hits)
    assert failed.is_error
    assert mcp.text(failed).startswith(words.ANSWER_FAILED)


@pytest.mark.server
def test_http_mcp_without_keys_answers_only_this_machines_pages(world: World, embedder: Embedder) -> None:
    """A server without keys listens on loopback only; /mcp also refuses another host or a web page's origin."""
    env = {name: value for name, value in world.env.items() if name not in ("RAG_API_KEY", "RAG_API_KEYS_FILE")}
    service = Service(Library(Settings.from_env(env), embedder=embedder))
    server = UvicornThread(create_app(service, Keys([]), ModelWarmup(embedder).start()), lifespan="on").start()
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            rebound = client.post("/mcp", json=initialize, headers={"Host": "attacker.example"})
            foreign = client.post("/mcp", json=initialize, headers={"Origin": "https://attacker.example"})

        async def session() -> set[str]:
            async with mcp.connect(f"{server.url}/mcp") as client:
                return {tool.name for tool in (await client.list_tools()).tools}

        tools = anyio.run(session)
    finally:
        server.stop()
    assert (rebound.status_code, foreign.status_code) == (421, 403)
    assert tools == TOOLS


@pytest.mark.server
def test_http_mcp_takes_the_providers_tokens_with_the_policys_rights(
    world: World, embedder: Embedder, provider: Provider, tmp_path: Path
) -> None:
    """RAG_AUTH=oidc as on the API: the person a token names has the policy's rights, over MCP too."""
    policy = tmp_path / "policy.txt"
    policy.write_text("group:jinji 人事* read\n", encoding="utf-8")
    service = Service(Library(Settings.from_env(world.env, policy_file=policy), embedder=embedder))
    keys = Keys.from_settings(ADMIN, None)
    app = create_app(service, keys, ModelWarmup(embedder).start(), TokenVerifier(provider.metadata_url, CLIENT_ID))
    server = UvicornThread(app, lifespan="on").start()

    async def session(token: str) -> tuple[Any, Any]:
        async with mcp.connect(f"{server.url}/mcp", token) as client:
            listed = await client.call_tool("list_collections", {})
            other = await client.call_tool("search", {"question": "ポート", "collection": "技術文書"})
            return mcp.structured(listed), other

    try:
        listed, other = anyio.run(session, provider.sign_in("suzuki")["id_token"])  # in group jinji
        refused = httpx.post(f"{server.url}/mcp", json={}, headers={"Authorization": "Bearer not-a-token-0123456789"})
    finally:
        server.stop()
    assert [c["name"] for c in listed["collections"]] == ["人事規程"]
    assert mcp.text(other) == "コレクション「技術文書」の読み取りの権限がありません。管理者に確かめてください。"
    assert refused.status_code == 401
    assert "トークンを確かめられません" in refused.json()["message"]
    rows = [(e.who, e.client, e.action) for e in world.audit(embedder) if e.face == "mcp" and e.who == "suzuki"]
    assert rows[-2:] == [("suzuki", f"{mcp.CLIENT.name} {mcp.CLIENT.version}", a) for a in ("list", "refused")]
