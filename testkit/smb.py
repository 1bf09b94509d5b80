"""A real Samba file server for the sync tests: Debian's smbd on 127.0.0.1, one share, one user.

Made in a temporary folder: an ``smb.conf`` whose every directory (private, lock, state, cache, pid,
ncalrpc, the log) lies inside it, a tdbsam password database with one user (this machine's current
user, as smbd maps an SMB user to a Unix one), and a share ``bunsho`` whose folder the tests fill
and change directly on disk. smbd runs in the foreground (``-F``) on a free port in its own process
group, so ``stop()`` ends it with the children that serve each connection: the server that goes down
for the night; ``start()`` again brings it back on the same port with the same files.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from testkit.servers import free_port, listening, wait_listening

SHARE = "bunsho"
PASSWORD = "共有のパスワード-7"


def available() -> bool:
    """Whether smbd and smbpasswd are installed (Debian's ``samba``)."""
    return all(shutil.which(tool) or Path("/usr/sbin", tool).exists() for tool in ("smbd", "smbpasswd"))


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def smb_conf(folder: Path, port: int, share: Path) -> str:
    """A standalone server on 127.0.0.1:``port`` keeping all its state in ``folder``, serving ``share``."""
    return f"""[global]
    server role = standalone server
    smb ports = {port}
    interfaces = 127.0.0.1
    bind interfaces only = yes
    private dir = {folder / "private"}
    lock directory = {folder / "lock"}
    state directory = {folder / "state"}
    cache directory = {folder / "cache"}
    pid directory = {folder / "pid"}
    ncalrpc dir = {folder / "ncalrpc"}
    log file = {folder / "log" / "smbd.log"}
    passdb backend = tdbsam:{folder / "private" / "passdb.tdb"}
    map to guest = never
    load printers = no
    disable spoolss = yes
    server min protocol = SMB2_02
    unix charset = UTF-8

[{SHARE}]
    path = {share}
    read only = yes
"""


class Smbd:
    """smbd serving ``share`` (a folder the tests write) as ``\\\\127.0.0.1\\bunsho`` on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="smbd-"))
        self.share = self.folder / "share"
        self.share.mkdir()
        self.user = getpass.getuser()
        self.conf = self.folder / "smb.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Any = None
        for name in ("private", "lock", "state", "cache", "pid", "ncalrpc", "log"):
            (self.folder / name).mkdir()
        self.conf.write_text(smb_conf(self.folder, self.port, self.share), encoding="utf-8")
        secret = f"{PASSWORD}\n{PASSWORD}\n".encode()
        subprocess.run(
            [_tool("smbpasswd"), "-c", str(self.conf), "-a", "-s", self.user],
            input=secret,
            capture_output=True,
            check=True,
        )

    def url(self, path: str = "") -> str:
        """``smb://USER@127.0.0.1:PORT/bunsho[/path]``."""
        return f"smb://{self.user}@127.0.0.1:{self.port}/{SHARE}" + (f"/{path}" if path else "")

    def start(self, seconds: float = 20) -> Smbd:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        command = [_tool("smbd"), "-F", "--no-process-group", "--debug-stdout", "-d", "1", "-s", str(self.conf)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_listening(self.process, self.port, self.log, "smbd", seconds)
        except RuntimeError:
            self.stop()
            raise
        return self

    def listening(self) -> bool:
        return listening(self.port)

    def stop(self) -> None:
        """End smbd and the children serving its connections (its process group): the server is down."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
            deadline = time.monotonic() + 10
            while self.listening() and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.log is not None:
            self.log.close()
            self.log = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
