"""The MCP SDK's own client against the real processes: ``python -m pipelines mcp`` over stdio, ``serve``'s /mcp over HTTP."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, Implementation, ReadResourceResult, TextContent, TextResourceContents

from testkit.servers import Server, free_port

REPO = Path(__file__).resolve().parents[1]
CLIENT = Implementation(name="テスト用クライアント", version="1.0")
"""What the clients here say they are (the audit log names it)."""


def stdio(env: Mapping[str, str], *args: str) -> StdioServerParameters:
    """``python -m pipelines mcp ARGS`` in this repository, with ``env`` (``RAG_*``) as its environment."""
    environment = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "pipelines", "mcp", *args], env=environment, cwd=str(REPO)
    )


def serve(env: Mapping[str, str]) -> Server:
    """``python -m pipelines serve`` on a free port of 127.0.0.1 (``start()`` waits for its health check)."""
    port = free_port()
    command = [sys.executable, "-m", "pipelines", "serve", "--port", str(port)]
    environment = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    return Server(command, port, "/v1/health", environment)


@contextlib.asynccontextmanager
async def connect(server: StdioServerParameters | str, key: str | None = None) -> AsyncIterator[Client]:
    """A session of the SDK's client with a stdio server, or with the Streamable HTTP URL ``server`` (with ``key``)."""
    if isinstance(server, StdioServerParameters):
        async with Client(server, client_info=CLIENT, read_timeout_seconds=120) as client:
            yield client
        return
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        Client(
            streamable_http_client(server, http_client=http), client_info=CLIENT, read_timeout_seconds=120
        ) as client,
    ):
        yield client


def text(result: CallToolResult | ReadResourceResult) -> str:
    """The text a tool call or a resource read gave (its first content, which must be text)."""
    first = result.content[0] if isinstance(result, CallToolResult) else result.contents[0]
    assert isinstance(first, TextContent | TextResourceContents), first
    return first.text


def structured(result: CallToolResult) -> dict[str, Any]:
    """A tool's structured result (which a successful call of these tools always has)."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content
