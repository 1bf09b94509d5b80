"""One service behind every face: the page, the CLI, the API and MCP find the same hits, say the same words, log once each."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import streamlit as st
from mcp_types import CallToolResult
from streamlit.testing.v1 import AppTest

from pipelines.faces.api import create_app
from pipelines.model.warmup import ModelWarmup
from pipelines.service import words
from pipelines.service.keys import Keys
from pipelines.service.library import Library
from pipelines.service.querylog import FILE_NAME, QueryLog
from pipelines.service.service import Service
from pipelines.settings import Settings
from testkit import mcp
from testkit.cli import run
from testkit.documents import make_pdf
from testkit.servers import UvicornThread

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。"
QUESTIONS = ("日本で一番高い山は？", "有給休暇はいつから取れますか")
K = 3


pytestmark = [pytest.mark.slow, pytest.mark.server]  # the page, a uvicorn server and the model, per test


@pytest.fixture
def library(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory with three documents, ingested through the CLI, and the settings every face reads."""
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_PRECISION", "float32")  # as the shared embedder fixture computes
    monkeypatch.setenv("RAG_QUERY_PRECISION", "float32")
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    monkeypatch.setenv("RAG_TOP_K", str(K))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "富士山.pdf").write_bytes(make_pdf([[FUJI], [TOKYO]]))
    (docs / "規程.txt").write_text(LEAVE + "\n" + TOKYO, encoding="utf-8")
    (docs / "東京.md").write_text("# 東京\n\n" + TOKYO, encoding="utf-8")
    status, _, err = run("ingest", str(docs))
    assert status == 0, err
    return tmp_path / "data"


@pytest.fixture
def api_url(library: Path) -> Iterator[str]:
    """The API over the same settings (its own model, loaded as the CLI's and the page's are)."""
    service = Service(Library(Settings.from_env()))
    app = create_app(service, Keys([]), ModelWarmup(service.embedder).start())
    server = UvicornThread(app, lifespan="on").start()  # its /mcp sessions run in its lifespan
    yield server.url
    server.stop()


def through_page(question: str) -> list[tuple[str, int, str]]:
    """(source, chunk, cosine to 3 places) of each card the page shows for ``question``, in order."""
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    deadline = time.monotonic() + 60
    while not any(c.value.startswith("埋め込みモデル: ") for c in at.caption):
        assert not at.exception, at.exception
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.2)
        at.run()
    at.text_input(key="question").input(question).run()
    assert not at.exception, at.exception
    cards = []
    for block in at.markdown:
        found = re.match(r"\*\*(\d+) 位\*\* 類似度 \*\*([0-9.]+)\*\*", block.value)
        if found:
            cards.append(found.group(2))
    places = [c.value for c in at.caption if " ・ チャンク " in c.value]
    st.cache_resource.clear()
    shown = []
    for cosine, caption in zip(cards, places, strict=True):
        source = caption.split(" ・ ")[0].replace("\\", "")
        shown.append((source, int(caption.rsplit("チャンク ", 1)[1]), cosine))
    return shown


def through_mcp(api_url: str, tool: str, arguments: dict[str, object]) -> CallToolResult:
    """One tool call of the SDK's client to the API's /mcp (Streamable HTTP)."""

    async def call() -> CallToolResult:
        async with mcp.connect(f"{api_url}/mcp") as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(call)


def as_shown(hits: list[dict[str, object]]) -> list[tuple[str, int, str]]:
    return [(str(h["source"]), int(h["chunk_index"]), f"{h['cosine']:.3f}") for h in hits]  # type: ignore[call-overload]


def test_the_same_question_finds_the_same_hits_on_every_face_and_is_logged_once_each(
    library: Path, api_url: str
) -> None:
    for question in QUESTIONS:
        status, out, err = run("search", question, "--json")
        assert status == 0, err
        from_cli = json.loads(out)
        with httpx.Client(base_url=api_url, timeout=60) as client:
            response = client.post("/v1/collections/default/search", json={"question": question, "k": K})
        assert response.status_code == 200, response.text
        from_api = response.json()["hits"]
        assert from_api == from_cli  # the same JSON, field for field, best sentences included
        from_mcp = mcp.structured(through_mcp(api_url, "search", {"question": question, "k": K}))["hits"]
        assert [{key: hit[key] for key in cli} for hit, cli in zip(from_mcp, from_cli, strict=True)] == from_cli
        assert len(from_cli) == K
        assert through_page(question) == as_shown(from_cli)

    logged = QueryLog(library / FILE_NAME).export()
    assert [(q["question"], q["face"]) for q in logged] == [
        (q, face) for q in QUESTIONS for face in ("cli", "api", "mcp", "page")
    ]
    assert all(q["collection"] == "default" and q["k"] == K for q in logged)
    assert all(len(q["hits"]) == K for q in logged)


def test_the_same_failure_says_the_same_words_on_every_face(library: Path, api_url: str) -> None:
    # no chat model: the CLI and the API say the catalogue's sentence (the page then offers search only)
    status, out, err = run("ask", FUJI)
    assert (status, out) == (2, "")
    assert err == f"エラー: {words.NO_CHAT_MODEL}\n"
    with httpx.Client(base_url=api_url, timeout=60) as client:
        refused = client.post("/v1/collections/default/ask", json={"question": FUJI})
        assert refused.status_code == 503
        assert refused.json()["message"] == words.NO_CHAT_MODEL
        # a collection that does not exist: the same sentence, whichever face asked
        missing = client.post("/v1/collections/無い/search", json={"question": FUJI})
        assert missing.status_code == 404
        # the API's validation errors are Japanese, the field named as the reader sent it
        invalid = client.post("/v1/collections/default/search", json={"k": 0})
        assert invalid.status_code == 422
        assert invalid.json()["message"] == words.invalid_request(
            [("question", "必須です"), ("k", "1 以上にしてください")]
        )
    status, _, err = run("search", FUJI, "--collection", "無い")
    assert status == 2
    assert err == f"エラー: {missing.json()['message']}\n"
    # and MCP's tool errors
    calls: list[tuple[str, dict[str, object], str]] = [
        ("ask", {"question": FUJI}, words.NO_CHAT_MODEL),
        ("search", {"question": FUJI, "collection": "無い"}, missing.json()["message"]),
        ("search", {"question": FUJI, "k": 0}, words.invalid_arguments("search", [("k", "1 以上にしてください")])),
    ]
    for tool, arguments, message in calls:
        result = through_mcp(api_url, tool, arguments)
        assert (result.is_error, mcp.text(result)) == (True, message)
    # no question was logged for the refusals
    assert QueryLog(library / FILE_NAME).export() == []
