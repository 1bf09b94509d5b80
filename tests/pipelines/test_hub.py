"""Where a model loads from, and a fast, single refusal when it can be had from nowhere."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.errors import ModelLoadError
from pipelines.model import hub
from pipelines.search.rerank import CrossEncoderReranker


def test_a_directory_loads_from_disk_only(model_dir: Path) -> None:
    assert hub.locate(str(model_dir), hub.EMBEDDING) == hub.ModelSource(str(model_dir), local_only=True)


@pytest.mark.parametrize("name", ["./models/ない", "/opt/models/ない", "models/sub/ない", "~/ない"])
def test_a_missing_directory_is_named_with_the_recipe(name: str) -> None:
    with pytest.raises(ModelLoadError) as caught:
        hub.locate(name, hub.EMBEDDING)
    message = str(caught.value)
    assert f"埋め込みモデルのディレクトリ「{name}」が見つかりません" in message
    assert "RAG_EMBEDDING_MODEL=models/GLuCoSE-base-ja" in message


def test_the_reranker_is_refused_at_once_without_network_or_copy() -> None:
    """HF_HUB_OFFLINE=1 (conftest) stands for a machine without network: one message, no retries."""
    started = time.monotonic()
    reranker = CrossEncoderReranker("hotchpotch/japanese-reranker-cross-encoder-xsmall-v1")
    with pytest.raises(ModelLoadError) as caught:
        reranker.scores("質問", ["文書"])
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert message.startswith(
        "再ランキングモデル「hotchpotch/japanese-reranker-cross-encoder-xsmall-v1」がこのマシンになく"
    )
    assert "RAG_RERANKER=models/japanese-reranker-cross-encoder-xsmall-v1" in message


def test_the_recipe_names_the_setting_of_the_role() -> None:
    assert hub.how_to_fix("cl-nagoya/ruri-v3-30m", hub.EMBEDDING).endswith(
        "RAG_EMBEDDING_MODEL=models/ruri-v3-30m でそのディレクトリを指定してください。"
    )
    assert "`hf download cl-nagoya/ruri-v3-30m --local-dir models/ruri-v3-30m`" in hub.how_to_fix(
        "cl-nagoya/ruri-v3-30m", hub.RERANKER
    )
