"""Driving the Streamlit page in-process with AppTest: where the page is, waiting for its model, what it shows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from streamlit.testing.v1 import AppTest

    from testkit.servers import ChatServer

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def wait_for_model(at: AppTest, seconds: float = 60) -> None:
    """Rerun the page until the model, loading in the background, is ready (its caption shows)."""
    deadline = time.monotonic() + seconds
    while not any(c.value.startswith("埋め込みモデル: ") for c in at.caption):
        assert not at.exception, at.exception
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.2)
        at.run()


def texts(at: AppTest) -> str:
    """Every markdown, caption and message (info, success, error, warning) the page shows, one per line."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for kind in (at.info, at.success, at.error, at.warning) for e in kind]
    return "\n".join(str(p) for p in parts)


def use_model(monkeypatch: pytest.MonkeyPatch, server: ChatServer) -> None:
    """Configure the page's chat model as the scripted chat server."""
    monkeypatch.setenv("RAG_LLM_URL", server.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "テスト用モデル")
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "5")
