"""Loading the model in the background: its stages, its outcome, and one load however many ask."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipelines.errors import ModelLoadError
from pipelines.model.embedder import Embedder
from pipelines.model.warmup import ModelWarmup


def test_the_model_loads_once_in_the_background_and_tells_its_stages(model_dir: Path) -> None:
    embedder = Embedder(str(model_dir), device="cpu")
    warmup = ModelWarmup(embedder)
    stages: list[str] = []
    real = warmup._set_stage

    def heard(stage: str) -> None:
        stages.append(stage)
        real(stage)

    warmup._set_stage = heard  # type: ignore[method-assign]
    starters = [threading.Thread(target=warmup.start) for _ in range(8)]  # sessions opening the page at once
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    assert warmup.wait(60) is True
    assert warmup.ready
    assert warmup.error is None
    assert warmup.stage == "読み込みました"
    assert stages[0] == "モデルのファイルを開いています（初回はダウンロードします）"
    # a first start of a LUKE model on a CPU checks int8 without torch, in seconds (pipelines/model/first_check.py);
    # what that leaves for later (bfloat16, where the CPU has it) is checked behind what it serves
    assert "計算精度を選んでいます（この PC で初回のみ、数秒）" in stages
    assert not embedder.precision.preparing
    assert len(stages) == len(set(stages))  # one load, not eight
    assert warmup.seconds > 0
    assert embedder.embed_query("富士山の高さは？").shape == (embedder.dimension,)
    assert embedder.wait_prepared(300)


def test_a_model_that_cannot_load_is_explained_where_it_is_waited_for(tmp_path: Path) -> None:
    warmup = ModelWarmup(Embedder(str(tmp_path / "ないモデル"))).start()
    with pytest.raises(ModelLoadError, match="ないモデル"):
        warmup.wait(60)
    assert warmup.finished
    assert not warmup.ready
    assert isinstance(warmup.error, ModelLoadError)


def test_a_bug_while_loading_is_raised_not_swallowed(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = Embedder(str(model_dir))

    def broken(stage: object = None) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(embedder, "load", broken)
    warmup = ModelWarmup(embedder).start()
    with pytest.raises(KeyError, match="a bug"):
        warmup.wait(60)
    assert warmup.error is None  # not a message for the person: a bug
    assert not warmup.ready


def test_waiting_can_time_out_while_loading_goes_on(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = Embedder(str(model_dir))
    release = threading.Event()
    monkeypatch.setattr(embedder, "load", lambda stage=None: release.wait(60))
    warmup = ModelWarmup(embedder).start()
    assert warmup.wait(0.05) is False
    assert not warmup.finished
    release.set()
    assert warmup.wait(60) is True


def test_a_delayed_start_waits_unless_someone_needs_the_model(model_dir: Path) -> None:
    embedder = Embedder(str(model_dir), device="cpu")
    warmup = ModelWarmup(embedder).start(after=600)  # the page gives the browser time to draw itself
    assert warmup.wait(60) is True  # waiting hurries the load instead of sitting out the 600 s


def test_a_delayed_start_begins_by_itself(model_dir: Path) -> None:
    warmup = ModelWarmup(Embedder(str(model_dir), device="cpu")).start(after=0.2)
    deadline = time.monotonic() + 60
    while not warmup.finished and time.monotonic() < deadline:
        time.sleep(0.05)  # nobody waits: the load starts once the delay has passed
    assert warmup.ready
