"""Where a model's files come from: a local directory, the Hugging Face cache, or the hub, refused fast when none serves.

Without this, a model that is neither here nor reachable costs a minute of download retries and
twenty lines of HTTP warnings before the loading library gives up. Here the hub is asked once, with
a short timeout, and the answer becomes one ``ModelLoadError`` that says what to do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ModelLoadError

HUB_TIMEOUT = 5.0
"""Seconds to wait for the hub to answer whether a model that is not here can be downloaded."""


@dataclass(frozen=True)
class ModelRole:
    """What a model is for, in the words of messages: its name, its setting, and a hub name to show as example."""

    label: str
    setting: str
    example: str


EMBEDDING = ModelRole("埋め込みモデル", "RAG_EMBEDDING_MODEL", "pkshatech/GLuCoSE-base-ja")
RERANKER = ModelRole("再ランキングモデル", "RAG_RERANKER", "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1")


@dataclass(frozen=True)
class ModelSource:
    """What to hand the loading library: a directory or hub name, and whether it may use the network."""

    target: str
    local_only: bool


def how_to_fix(name: str, role: ModelRole) -> str:
    """The recipe for a machine without the network: download elsewhere, bring the folder, point the setting at it."""
    folder = "models/" + name.rstrip("/").rsplit("/", 1)[-1]
    return (
        "ネットワークにつながらない環境では、つながる環境で "
        f"`hf download {name} --local-dir {folder}` のようにモデルを取得して持ち込み、"
        f"{role.setting}={folder} でそのディレクトリを指定してください。"
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def locate(name: str, role: ModelRole) -> ModelSource:
    """Where ``name`` loads from; a ``ModelLoadError`` at once when it is neither here nor downloadable."""
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(str(path), local_only=True)
    if _looks_like_path(name):
        raise ModelLoadError(
            f"{role.label}のディレクトリ「{name}」が見つかりません。パスを確かめてください。"
            + how_to_fix(role.example, role)
        )
    if _in_cache(name):
        return ModelSource(name, local_only=True)
    _reach(name, role)
    return ModelSource(name, local_only=False)


def _in_cache(name: str) -> bool:
    """Whether a hub model is in the local Hugging Face cache (then it loads without the network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(name, file), str) for file in ("modules.json", "config.json"))


def _reach(name: str, role: ModelRole) -> None:
    """Ask the hub once, with a short timeout, whether ``name`` can be downloaded; refuse at once if not."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
    from requests import RequestException

    endpoint = huggingface_hub.constants.ENDPOINT
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"{role.label}「{name}」がこのマシンになく、HF_HUB_OFFLINE が設定されているためダウンロードしません。"
            + how_to_fix(name, role)
        )
    try:
        huggingface_hub.model_info(name, timeout=HUB_TIMEOUT)
    except RepositoryNotFoundError as error:
        raise ModelLoadError(
            f"「{name}」というモデルは Hugging Face Hub（{endpoint}）にありません（非公開か名前の誤り）。"
            f"{role.setting} の名前を確かめてください。"
        ) from error
    except HfHubHTTPError as error:
        raise ModelLoadError(
            f"Hugging Face Hub（{endpoint}）が{role.label}「{name}」の問い合わせを断りました（{error}）。"
            + how_to_fix(name, role)
        ) from error
    except (RequestException, OSError) as error:
        raise ModelLoadError(
            f"{role.label}「{name}」がこのマシンになく、Hugging Face Hub（{endpoint}）に {HUB_TIMEOUT:.0f} 秒以内に"
            f"接続できません（{type(error).__name__}）。" + how_to_fix(name, role)
        ) from error


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Without the hub's per-retry warnings: a failure, if any, is reported once, as a ModelLoadError."""
    hub = logging.getLogger("huggingface_hub")
    level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub.setLevel(level)
