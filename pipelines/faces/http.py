"""The HTTP API's plumbing: the JSON of a refusal, server-sent events, and the body limit (ASGI middleware)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ingest.errors import FileTooLargeError

# multipart framing around the files of an upload (boundaries, part headers)
MULTIPART_SLACK = 64 * 1024


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON of every refusal: the status, a stable code for programs, and a Japanese message for people."""
    return {"status": status, "code": code, "message": message, **extra}


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event (its data one line of JSON)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a body over its limit is refused with 413 from its Content-Length, before it is read,
    or, sent without one, as soon as the bytes read pass the limit."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], upload: int, other: int) -> None:
        self.app = app
        self.upload = upload
        self.other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        uploading = scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/documents")
        limit = self.upload if uploading else self.other
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _send_json(send, 413, error_body(413, "too_large", _too_large(limit, uploading)))
            return
        received = 0
        over = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise FileTooLargeError(_too_large(limit, uploading))
            return message

        async def answered(message: Message) -> None:
            # FastAPI answers a body it could not read with 400, whatever stopped it: this one is a 413
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await _send_json(send, 413, error_body(413, "too_large", _too_large(limit, uploading)))

        await self.app(scope, counted, answered)


def _too_large(limit: int, uploading: bool) -> str:
    if uploading:
        return (
            f"アップロードが大きすぎます（上限 {(limit - MULTIPART_SLACK) // (1024 * 1024)} MB、一度に送る全ファイルの合計）。"
            "分けて送るか、サーバーの RAG_MAX_UPLOAD_MB を変えてください。"
        )
    return f"リクエストの本文が大きすぎます（上限 {limit // 1024} KB）。"


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
