"""A deleted collection stays deleted: an upload in flight and searches racing the delete leave nothing and
raise nothing but ``CollectionNotFoundError``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.errors import CollectionNotFoundError
from pipelines.model.embedder import Embedder
from pipelines.service.library import Library
from pipelines.service.results import Caller, Found, Ingested, Question
from pipelines.service.service import Service
from pipelines.settings import Settings
from pipelines.store.collections import chroma_name
from testkit.servers import free_port, wait_for

ADMIN = Caller("cli")
LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。"
NAME = "技術文書"


@pytest.fixture
def service(tmp_path: Path, model_dir: Path, embedder: Embedder) -> Iterator[Service]:
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", embedding_model=str(model_dir), chunk_tokens=48, chunk_overlap=8
    )
    made = Service(Library(settings, embedder=embedder))
    made.create_collection(ADMIN, NAME)
    made.upload(ADMIN, NAME, [("規程.txt", LEAVE.encode("utf-8"))])
    yield made
    made.close()


def keyword_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "keyword" / f"{chroma_name(NAME)}.npz"


def test_an_upload_in_flight_is_refused_and_leaves_no_keyword_index(service: Service, tmp_path: Path) -> None:
    """The upload holds the collection's writer while the delete waits for it: the upload is refused, the
    delete returns, and no keyword index file of the collection comes back."""
    assert keyword_file(tmp_path).is_file()
    inside, go = threading.Event(), threading.Event()
    outcomes: dict[str, Ingested | object] = {}

    def hold(name: str) -> None:  # called with the writer held, as the file starts
        inside.set()
        go.wait(30)

    def upload() -> None:
        outcomes["upload"] = service.upload(ADMIN, NAME, [("追加.txt", ("追加の文書です。" + LEAVE).encode())], hold)

    def delete() -> None:
        outcomes["delete"] = service.delete_collection(ADMIN, NAME)

    uploading = threading.Thread(target=upload)
    uploading.start()
    assert inside.wait(30)
    deleting = threading.Thread(target=delete)
    deleting.start()
    time.sleep(0.3)
    assert deleting.is_alive()  # it waits for the writer
    go.set()
    uploading.join(60)
    deleting.join(60)
    ingested = outcomes["upload"]
    assert isinstance(ingested, Ingested)
    assert ingested.error == f"コレクション「{NAME}」は削除されました。"
    assert outcomes["delete"] is not None
    time.sleep(0.5)  # whatever was still running had its moment to write
    assert not keyword_file(tmp_path).exists()
    assert not list(keyword_file(tmp_path).parent.glob(f"{chroma_name(NAME)}*"))
    with pytest.raises(CollectionNotFoundError):
        service.search(ADMIN, NAME, Question("有給休暇"))


def test_searches_racing_a_delete_get_hits_or_collection_not_found(service: Service, tmp_path: Path) -> None:
    stop = threading.Event()
    outcomes: list[str] = []
    unexpected: list[BaseException] = []
    refusals: list[str] = []

    def search() -> None:
        while not stop.is_set():
            try:
                found = service.search(ADMIN, NAME, Question("有給休暇", best_sentences=False))
            except CollectionNotFoundError as error:
                outcomes.append("gone")
                refusals.append(str(error))
            except BaseException as error:  # noqa: BLE001 - the test is that there is none
                unexpected.append(error)
                return
            else:
                assert isinstance(found, Found)
                outcomes.append("hits")

    searching = [threading.Thread(target=search) for _ in range(3)]
    for thread in searching:
        thread.start()
    time.sleep(0.3)
    service.delete_collection(ADMIN, NAME)
    time.sleep(0.5)
    stop.set()
    for thread in searching:
        thread.join(60)
    assert not unexpected, unexpected
    assert "hits" in outcomes
    assert outcomes[-1] == "gone"
    assert all("ありません" in said or "削除されました" in said for said in refusals), set(refusals)
    time.sleep(0.3)
    assert not keyword_file(tmp_path).exists()


# -- the server's child processes end with it ----------------------------------------------------------

KEY = "admin-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc (no psutil here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended while listed
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def serve_with_readers(model_dir: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """``python -m pipelines serve`` with a file uploaded to two collections; the server and its children."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAG_EMBEDDING_MODEL": str(model_dir),
        "RAG_DEVICE": "cpu",
        "RAG_PRECISION": "float32",
        "RAG_CHUNK_TOKENS": "48",
        "RAG_CHUNK_OVERLAP": "8",
        "RAG_API_KEY": KEY,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/v1/health", server, seconds=120)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            for name in ("技術文書", "人事規程"):
                assert client.post(f"/v1/collections/{name}").status_code == 201
                files = [("files", ("規程.txt", LEAVE.encode("utf-8"), "text/plain"))]
                answer = client.post(f"/v1/collections/{name}/documents", files=files)
                assert answer.status_code == 200, answer.text
    except BaseException:
        server.kill()
        server.wait()
        raise
    return server, children(server.pid)


def ended(pids: list[int], seconds: float) -> list[int]:
    """Those of ``pids`` still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def stop(server: subprocess.Popen[bytes], started: list[int]) -> None:
    """Whatever a failed test left running: the server, then its children."""
    if server.poll() is None:
        server.kill()
        server.wait()
    for pid in started:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.server
@pytest.mark.slow
def test_the_servers_children_end_with_it_on_sigterm(model_dir: Path) -> None:
    server, started = serve_with_readers(model_dir)
    try:
        # one file reader for both collections, and multiprocessing's resource tracker
        assert len(started) == 2, started
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        assert ended(started, 5) == []
    finally:
        stop(server, started)


@pytest.mark.server
@pytest.mark.slow
def test_the_servers_children_end_with_it_on_sigkill(model_dir: Path) -> None:
    server, started = serve_with_readers(model_dir)
    try:
        assert len(started) == 2, started
        server.kill()
        server.wait(30)
        assert ended(started, 5) == []
    finally:
        stop(server, started)
