"""A first start: int8 checked without torch in seconds, or float32 served at once while the faster precisions are
prepared in the background; the verdict kept per machine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from pipelines.model import embedder as embedder_module
from pipelines.model import first_check, int8, onnx_graph, preparation, torch_path
from pipelines.model.embedder import Embedder
from pipelines.model.precision import RANKING_PASSAGES, Paths, PrecisionChoice, PrecisionPolicy
from pipelines.service import words
from pipelines.service.compose import make_embedder
from pipelines.settings import Settings, machine_cache_dir
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from testkit.cli import run

FIRST = "有給休暇は入社して六か月後に十日付与します。申請は上長に行ってください。" * 6
SECOND = "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルと日本で最も高い。" * 6


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The preparation waits, before it does anything, until the test sets this event."""
    go = threading.Event()
    lower = preparation._lower_priority

    def waiting() -> None:
        go.wait(120)
        lower()

    monkeypatch.setattr(preparation, "_lower_priority", waiting)
    yield go
    go.set()  # a test that failed early does not leave a thread waiting


@pytest.fixture
def torch_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model the first start cannot check without torch (a shape ``onnx_graph`` does not write): float32
    is served through torch at once and every faster precision is prepared in the background."""
    monkeypatch.setattr(onnx_graph, "unsupported", lambda directory: "テストでは書けない形のモデル")


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each int8 export this process writes, by folder."""
    made: list[Path] = []
    real = int8.export

    def counted(model: object, directory: Path) -> int8.Int8Model:
        made.append(directory)
        return real(model, directory)  # type: ignore[arg-type]

    monkeypatch.setattr(int8, "export", counted)
    return made


def test_a_first_start_answers_in_float32_before_the_preparation_ends_and_switches_after(
    model_dir: Path, embedder: Embedder, tmp_path: Path, held: threading.Event, torch_first: None
) -> None:
    first = Embedder(str(model_dir), device="cpu", batch_size=4, cache_dir=tmp_path)
    first.load()
    assert first.preparing
    assert (first.precision.passages, first.precision.questions) == ("float32", "float32")
    assert first.precision.passages_label == "float32（より速い精度を準備中）"
    assert "バックグラウンド" in first.precision.passages_reason
    # the reference embedder computes float32 exactly: the first start answers in it, now
    question = "有給休暇は何日ですか"
    assert np.allclose(first.embed_query(question), embedder.embed_query(question), atol=1e-6)
    assert not list(tmp_path.glob("*/verdict-*.json"))
    held.set()
    assert first.wait_prepared(300)
    assert not first.preparing
    assert not first.precision.preparing
    assert first.precision.passages in ("int8", "bfloat16", "float32")
    assert "バックグラウンド" not in first.precision.passages_reason
    assert len(list(tmp_path.glob("*/verdict-*.json"))) == 1
    # questions switch too: they are computed in the verdict's precision from now on
    after = first.embed_query(question)
    assert np.allclose(after, first.encode([question], first.precision.questions)[0], atol=1e-5)


def test_a_second_embedder_or_data_dir_on_the_machine_does_not_prepare_again(
    model_dir: Path, tmp_path: Path, exports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = [Settings(embedding_model=str(model_dir), device="cpu", data_dir=tmp_path / name) for name in "ab"]
    first = make_embedder(settings[0])
    assert isinstance(first, Embedder)
    first.load()
    assert first.wait_prepared(300)
    kept = machine_cache_dir()
    assert list(kept.glob("*/verdict-*.json")), "kept in the user's cache directory, not in the data directory"
    assert not (tmp_path / "a" / "cache").exists()
    assert len(exports) <= 1  # none where another test of this run already exported the model here

    def no_checks(*args: object, **kwargs: object) -> None:
        raise AssertionError("the verdict was kept: nothing to check again")

    monkeypatch.setattr(PrecisionPolicy, "choose", no_checks)
    second = make_embedder(settings[1])
    assert isinstance(second, Embedder)
    second.load()
    assert second.preparation is None
    assert second.precision == first.precision
    assert len(exports) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("without_torch", [True, False], ids=["checked-without-torch", "torch-first"])
def test_two_processes_starting_at_once_export_once(model_dir: Path, tmp_path: Path, without_torch: bool) -> None:
    """Two first starts on one machine: one writes the int8 graph and checks; the other waits for it (the check
    without torch takes seconds) or serves float32 meanwhile (torch's path), then takes its verdict."""
    cache, log = tmp_path / "cache", tmp_path / "exports.log"
    script = (
        "import json, os\n"
        "from pathlib import Path\n"
        "from pipelines.model import int8, onnx_graph\n"
        "from pipelines.model.embedder import Embedder\n"
        "def counted(real):\n"
        "    def write(*args):\n"
        f"        with open({str(log)!r}, 'a') as f: f.write(f'{{os.getpid()}}\\n')\n"
        "        return real(*args)\n"
        "    return write\n"
        "int8.export, int8.write_built = counted(int8.export), counted(int8.write_built)\n"
        + ("" if without_torch else "onnx_graph.unsupported = lambda directory: 'torch first'\n")
        + f"e = Embedder({str(model_dir)!r}, device='cpu', cache_dir=Path({str(cache)!r}))\n"
        "e.load()\n"
        "first = e.precision.passages\n"
        "e.embed_documents(['富士山は日本一高い山です。'])\n"
        "e.wait_prepared()\n"
        "print(json.dumps({'first': first, 'then': [e.precision.passages, e.precision.questions]}))\n"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [json.loads(run.communicate(timeout=600)[0].strip().splitlines()[-1]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    if not without_torch:
        assert [out["first"] for out in outs] == ["float32", "float32"]
    # checked without torch, the second serves the first one's verdict: as it was kept before bfloat16 was
    # checked, or after (the first's check of bfloat16 held the lock meanwhile); then both serve the last
    assert outs[0]["then"] == outs[1]["then"]
    exported = log.read_text().split() if log.exists() else []
    assert len(exported) <= 1
    if "int8" in outs[0]["then"]:
        assert len(exported) == 1
    assert len(list(cache.glob("*/model.int8.onnx"))) == (1 if exported else 0)


@pytest.mark.parametrize("store", ["embedded"], indirect=True)
def test_a_document_records_the_precision_each_of_its_passages_was_computed_in(
    model_dir: Path,
    tmp_path: Path,
    store: ChromaStore,
    held: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
    torch_first: None,
) -> None:
    computed: list[str] = []
    encode = Embedder.encode

    def spied(self: Embedder, texts: list[str], precision: str) -> np.ndarray:
        if threading.current_thread() is threading.main_thread():
            computed.append(precision)
        return encode(self, texts, precision)

    monkeypatch.setattr(Embedder, "encode", spied)
    monkeypatch.setattr(Embedder, "_encode_pooled", lambda *a: pytest.fail("no sentences file here"))
    # bfloat16 is checked first where the CPU has it: int8 alone, so that the switch is seen for certain
    monkeypatch.setattr(PrecisionPolicy, "choose", _int8_only(PrecisionPolicy.choose))
    first = Embedder(str(model_dir), device="cpu", batch_size=2, cache_dir=tmp_path / "cache")
    indexer = Indexer(first, store, 32, 0)

    def switch_midway(done: int, total: int) -> None:
        if not held.is_set():  # after the first batch: the preparation ends and switches before the next
            held.set()
            assert first.wait_prepared(300)
            assert first.precision.passages == "int8"

    computed.clear()
    assert indexer.ingest_text("休暇.txt", FIRST, switch_midway).chunks > 2
    assert set(computed[1:]) == {"float32"}  # the fingerprint, then every batch of the document
    assert first.precision.passages == "int8"
    computed.clear()
    indexer.ingest_text("富士山.txt", SECOND)
    assert set(computed) == {"int8"}
    recorded = {d.source: d.precision for d in store.documents()}
    assert recorded == {"休暇.txt": "float32", "富士山.txt": "int8"}


def _int8_only(choose: Callable[..., PrecisionChoice]) -> Callable[..., PrecisionChoice]:
    """The policy, bfloat16 left out and int8 taken once its export opens (the tiny model's rounding aside)."""

    def only(self: PrecisionPolicy, device: str, paths: Paths, exclude: tuple[str, ...] = ()) -> PrecisionChoice:
        if "int8" in exclude:
            return choose(self, device, paths, exclude=("int8", "bfloat16"))
        assert paths.unavailable("int8") is None
        return PrecisionChoice("int8", "テストで int8", "int8", "テストで int8")

    return only


def test_a_failed_preparation_leaves_float32_serving_with_the_reason(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    torch_first: None,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("検査が壊れました")

    monkeypatch.setattr(PrecisionPolicy, "choose", broken)
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert first.wait_prepared(300)
    assert (first.precision.passages, first.precision.questions) == ("float32", "float32")
    assert not first.precision.preparing
    assert "準備できませんでした" in first.precision.passages_reason
    assert "検査が壊れました" in first.precision.passages_reason
    assert first.embed_documents(["それでも埋め込めます。"]).shape == (1, first.dimension)
    assert not list(tmp_path.glob("*/verdict-*.json"))  # nothing kept: the next start tries again
    assert "could not be prepared" in caplog.text


@pytest.mark.slow
def test_an_export_that_fails_is_a_reason_not_an_error(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_first: None
) -> None:
    def broken(model: object, directory: Path) -> None:
        raise RuntimeError("書き出せません")

    monkeypatch.setattr(int8, "export", broken)
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert first.wait_prepared(300)
    assert first.precision.passages != "int8"
    assert "ONNX への書き出しに失敗しました" in first.precision.passages_reason
    assert first.embed_documents(["それでも埋め込めます。"]).shape == (1, first.dimension)


def test_an_unwritable_cache_is_logged_and_the_start_goes_on(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    first = Embedder(str(model_dir), device="cpu", cache_dir=blocked / "cache")
    first.load()
    assert first.wait_prepared(300)
    assert not first.precision.preparing
    assert "準備できませんでした" not in first.precision.passages_reason
    assert first.embed_documents(["書けない場所でも動きます。"]).shape == (1, first.dimension)
    assert "no lock on" in caplog.text or "not kept" in caplog.text


def test_the_machine_cache_is_the_users_cache_directory(tmp_path: Path) -> None:
    home = Path.home()
    assert machine_cache_dir({}) == home / ".cache" / "japanese-document-search"
    assert machine_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "japanese-document-search"
    assert machine_cache_dir({"XDG_CACHE_HOME": "relative"}) == home / ".cache" / "japanese-document-search"


def test_the_preparation_runs_at_low_priority_until_someone_waits(
    model_dir: Path, tmp_path: Path, held: threading.Event, torch_first: None
) -> None:
    import os

    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert first.preparation is not None
    held.set()
    thread = first.preparation._thread
    for _ in range(200):  # the thread lowers itself as it starts
        if thread.native_id and os.getpriority(os.PRIO_PROCESS, thread.native_id) == preparation.NICENESS:
            break
        threading.Event().wait(0.01)
    assert os.getpriority(os.PRIO_PROCESS, thread.native_id or 0) == preparation.NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0  # the caller's own is untouched
    assert first.wait_prepared(300)


@pytest.fixture
def new_machine(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of one document to ingest on a machine whose user cache (``a-new-machine``) is empty."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-new-machine"))
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "休暇.txt").write_text(FIRST, encoding="utf-8")
    return docs


def test_ingest_says_a_faster_precision_is_being_prepared(
    new_machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: threading.Event, torch_first: None
) -> None:
    docs = new_machine
    try:
        status, out, err = run("ingest", str(docs))
        assert status == 0, err
        assert "精度: float32（より速い精度を準備中）（より速い計算精度をバックグラウンドで確かめています。" in out
        assert "質問の精度: float32（より速い精度を準備中）" in out
        assert words.FINISHING_PREPARATION in err
        monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "another-data-dir"))
        status, out, err = run("ingest", str(docs), "--json")
        assert status == 0, err
        precision = json.loads(out)["precision"]
        assert (precision["passages"], precision["preparing"]) == ("float32", True)
        assert json.loads(out)["files"][0]["status"] == "added"
    finally:
        held.set()
        for thread in threading.enumerate():
            if thread.name == preparation.THREAD_NAME:
                thread.join(300)
    assert len(list((tmp_path / "a-new-machine").glob("*/*/verdict-*.json"))) == 1


def test_timing_a_precision_holds_the_embedders_batches_back(model_dir: Path) -> None:
    """The verdict is kept for the machine: a first start's ingest running meanwhile must not decide it."""
    embedder = Embedder(str(model_dir), precision="float32", query_precision="float32", cache_dir=None)
    embedder.load()
    timing = threading.Event()
    original = embedder.encode
    order: list[str] = []

    def encode(texts: Sequence[str], precision: str) -> np.ndarray:
        if texts is RANKING_PASSAGES:
            order.append("timing")
            timing.set()
            time.sleep(0.2)
        else:
            order.append("batch")
        return original(texts, precision)

    embedder.encode = encode  # type: ignore[method-assign]
    timer = threading.Thread(target=embedder.tokens_per_second, args=("float32",))
    timer.start()
    assert timing.wait(30)
    embedder.embed_documents(["吾輩は猫である。"])  # asked while the timing runs: waits for it
    timer.join(30)
    assert order == ["timing", "timing", "batch"]


# A first start of a LUKE model on a CPU: int8 checked on graphs written from the weights, without torch ------


@pytest.fixture
def no_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without native bfloat16, whatever this one has: nothing is left for later."""
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: False)


@pytest.fixture
def int8_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model's timings aside (its matrices are too small for int8 to pay): int8 is the faster path."""
    speeds = {"int8": 2_000.0, "float32": 800.0}
    monkeypatch.setattr(first_check.GraphPaths, "tokens_per_second", lambda self, precision: speeds[precision])


def _no_torch(*args: object, **kwargs: object) -> None:
    raise AssertionError("torch's model is not loaded")


def _verdict(cache: Path) -> dict:
    (path,) = cache.glob("*/verdict-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_first_start_checks_int8_without_torch_and_the_next_opens_it(
    model_dir: Path,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_bfloat16: None,
    int8_faster: None,
) -> None:
    monkeypatch.setattr(torch_path, "open_model", _no_torch)
    first = Embedder(str(model_dir), device="cpu", batch_size=4, cache_dir=tmp_path)
    stages: list[str] = []
    first.load(stages.append)
    assert "計算精度を選んでいます（この PC で初回のみ、数秒）" in stages  # before anything is embedded
    assert (first.precision.passages, first.precision.questions) == ("int8", "int8")
    assert not first.precision.preparing
    assert first.preparation is None  # nothing left for later on this CPU
    assert "float32 とのコサイン最小" in first.precision.passages_reason
    assert "int8 2,000、float32 800" in first.precision.passages_reason.replace("（ONNX Runtime）", "")
    assert _verdict(tmp_path)["pending"] == []
    (folder,) = tmp_path.glob("*/int8.json")
    assert json.loads(folder.read_text())["made_from"] == "weights"
    texts = [FIRST, SECOND]
    vectors = first.embed_documents(texts)
    assert ((vectors * embedder.embed_documents(texts)).sum(axis=1) > 0.99).all()  # float32 in torch

    monkeypatch.setattr(PrecisionPolicy, "choose", _no_checks)
    second = Embedder(str(model_dir), device="cpu", batch_size=4, cache_dir=tmp_path)
    second.load()
    assert second.precision == first.precision
    assert np.array_equal(second.embed_documents(texts), vectors)


def _no_checks(*args: object, **kwargs: object) -> None:
    raise AssertionError("the verdict was kept: nothing to check again")


def test_bfloat16_is_checked_later_behind_int8_and_then_kept(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: threading.Event, int8_faster: None
) -> None:
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: True)
    speeds = {"int8": 3_000.0, "bfloat16": 1_500.0, "float32": 800.0}  # the check with torch, timings aside
    monkeypatch.setattr(Embedder, "tokens_per_second", lambda self, precision: speeds[precision])
    first = Embedder(str(model_dir), device="cpu", batch_size=4, cache_dir=tmp_path)
    first.load()
    assert (first.precision.passages, first.precision.questions) == ("int8", "int8")
    assert not first.precision.preparing  # int8 is checked: served as it is, not as a stand-in
    assert first.precision.passages_reason.endswith(first_check.CHECKED_LATER)
    assert _verdict(tmp_path)["pending"] == ["bfloat16"]  # a start that ends before the check finishes it later
    assert first.preparing
    assert first.embed_documents([FIRST]).shape == (1, first.dimension)  # served meanwhile
    held.set()
    assert first.wait_prepared(300)
    assert first_check.CHECKED_LATER not in first.precision.passages_reason
    assert "bfloat16" in first.precision.passages_reason  # timed or refused, with torch's float32 as the reference
    assert _verdict(tmp_path)["pending"] == []
    assert (first.precision.passages, first.precision.questions) == ("int8", "int8")
    assert first._model is None  # torch's copy served the check only
    assert first.embed_documents([SECOND]).shape == (1, first.dimension)
    monkeypatch.setattr(PrecisionPolicy, "choose", _no_checks)
    second = Embedder(str(model_dir), device="cpu", batch_size=4, cache_dir=tmp_path)
    second.load()
    assert second.preparation is None
    assert second.precision == first.precision


def test_ingest_on_a_new_machine_embeds_in_int8_and_leaves_bfloat16_to_a_serving_process(
    new_machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: threading.Event, int8_faster: None
) -> None:
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: True)
    docs = new_machine
    try:
        status, out, err = run("ingest", str(docs), "--json")
        assert status == 0, err
        report = json.loads(out)
        assert (report["precision"]["passages"], report["precision"]["preparing"]) == ("int8", False)
        assert first_check.CHECKED_LATER in report["precision"]["passages_reason"]
        assert words.FINISHING_PREPARATION not in err
        # a one-shot command does not start the check it would cut short: the next serving process does it
        assert not any(thread.name == preparation.THREAD_NAME for thread in threading.enumerate())
        (verdict,) = (tmp_path / "a-new-machine").glob("*/*/verdict-*.json")
        assert json.loads(verdict.read_text(encoding="utf-8"))["pending"] == ["bfloat16"]
    finally:
        held.set()
        for thread in threading.enumerate():
            if thread.name == preparation.THREAD_NAME:
                thread.join(300)


def test_a_check_without_torch_that_fails_leaves_torchs_path(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreadable(*args: object, **kwargs: object) -> None:
        raise OSError("重みを読めません")

    monkeypatch.setattr(first_check, "check", unreadable)
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert first.precision.passages == "float32"  # torch's, at once; the faster paths prepared behind it
    assert first.precision.preparing
    assert "the check without torch failed" in caplog.text
    assert first.wait_prepared(300)
    assert not first.precision.preparing
    assert first.embed_documents([FIRST]).shape == (1, first.dimension)


def test_a_check_left_for_later_ends_at_its_step_when_its_process_ends(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: threading.Event, int8_faster: None
) -> None:
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: True)
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    served = first.precision
    assert first.preparation is not None
    first.preparation._stop.set()  # as ``stop`` does at the process's end (it would wait here for the step)
    held.set()
    assert first.wait_prepared(300)
    assert first.precision == served  # nothing switched
    assert _verdict(tmp_path)["pending"] == ["bfloat16"]  # nothing kept: the next serving process checks it


KILL_POINTS = {
    # the int8 graph's weights half written (a partial file beside their name)
    "writing": (
        "from pipelines.model import onnx_graph\n"
        "def write(self, path):\n"
        "    (path.parent / f'{self.data_file}.{os.getpid()}.tmp').write_bytes(b'half' * 1000)\n"
        "    stop()\n"
        "onnx_graph.Graph.write = write\n"
    ),
    # the graph on disk, its facts (which make it found) not yet
    "before-its-facts": ("from pipelines.model import int8\nint8._write_meta = lambda *args: stop()\n"),
    # the graph kept, int8 being checked: no verdict yet
    "checking": ("from pipelines.model import first_check\nfirst_check.GraphPaths.encode = lambda *args: stop()\n"),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_first_start_killed_halfway_leaves_nothing_the_next_trips_on(
    model_dir: Path, tmp_path: Path, point: str, int8_faster: None, no_bfloat16: None
) -> None:
    import os
    import signal

    cache, stopped = tmp_path / "cache", tmp_path / "stopped"
    script = (
        "import os, time\n"
        "from pathlib import Path\n"
        f"def stop(*args):\n    Path({str(stopped)!r}).touch()\n    time.sleep(600)\n"
        + KILL_POINTS[point]
        + "from pipelines.model.embedder import Embedder\n"
        f"Embedder({str(model_dir)!r}, device='cpu', cache_dir=Path({str(cache)!r})).load()\n"
    )
    log = tmp_path / "child.log"
    with log.open("wb") as errors:
        child = subprocess.Popen([sys.executable, "-c", script], stderr=errors)
        for _ in range(1200):
            if stopped.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert stopped.exists(), log.read_text(errors="replace")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert not list(cache.glob("*/verdict-*.json"))  # nothing was decided
    left = {path.name for path in cache.glob("*/*") if path.name != "prepare.lock"}
    assert (
        left
        == {
            "writing": {f"{int8.DATA_FILE}.{child.pid}.tmp"},
            "before-its-facts": {int8.MODEL_FILE, int8.DATA_FILE},
            "checking": {int8.MODEL_FILE, int8.DATA_FILE, int8.META_FILE},
        }[point]
    )

    again = Embedder(str(model_dir), device="cpu", cache_dir=cache)
    again.load()  # the dead process's lock is gone with it
    assert (again.precision.passages, again.precision.questions) == ("int8", "int8")
    assert not list(cache.glob("*/*.tmp"))  # what it left half written is gone
    fresh = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path / "another-machine")
    fresh.load()
    assert np.array_equal(again.embed_documents([FIRST, SECOND]), fresh.embed_documents([FIRST, SECOND]))


def test_a_check_left_for_later_waiting_for_the_lock_stops_at_once(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: threading.Event, int8_faster: None
) -> None:
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: True)
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert first.preparation is not None
    assert first.cache is not None
    (folder,) = {path.parent for path in tmp_path.glob("*/verdict-*.json")}
    with first.cache.preparing(folder) as locked:  # another process's check holds it
        assert locked
        held.set()
        time.sleep(0.5)  # the check asks for the lock meanwhile
        started = time.perf_counter()
        first.preparation.stop(timeout=30)  # as the process's end does
        assert first.preparation.finished
        assert time.perf_counter() - started < 5
    assert _verdict(tmp_path)["pending"] == ["bfloat16"]


def test_a_hub_model_fetched_by_the_first_start_is_checked_without_torch_once_it_is_here(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_bfloat16: None, int8_faster: None
) -> None:
    from pipelines.model.files import ModelFiles

    fetched: list[bool] = []
    on_disk, load = ModelFiles.directory, torch_path.open_model

    def fetching(*args: object, **kwargs: object) -> object:
        fetched.append(True)  # sentence-transformers downloads a hub model's files as it loads it
        return load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ModelFiles, "directory", lambda self: on_disk(self) if fetched else None)
    monkeypatch.setattr(torch_path, "open_model", fetching)
    first = Embedder(str(model_dir), device="cpu", cache_dir=tmp_path)
    first.load()
    assert fetched
    assert (first.precision.passages, first.precision.questions) == ("int8", "int8")
    assert "float32 とのコサイン最小" in first.precision.passages_reason  # checked, not served unchecked
    assert not first.precision.preparing
    assert first.preparation is None
    assert first._model is None  # torch's copy fetched the files only
    assert _verdict(tmp_path)["pending"] == []
    assert first.embed_documents([FIRST]).shape == (1, first.dimension)


def test_without_a_cache_the_checks_verdict_is_served_and_a_later_int8_lets_torch_go(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: threading.Event
) -> None:
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: True)
    slower = {"int8": 500.0, "float32": 800.0}  # the check without torch finds int8 no faster for passages
    monkeypatch.setattr(first_check.GraphPaths, "tokens_per_second", lambda self, precision: slower[precision])
    faster = {"int8": 3_000.0, "bfloat16": 1_500.0, "float32": 800.0}  # the check with torch, later
    monkeypatch.setattr(Embedder, "tokens_per_second", lambda self, precision: faster[precision])
    first = Embedder(str(model_dir), device="cpu", cache_dir=None)
    first.load()
    assert (first.precision.passages, first.precision.questions) == ("float32", "int8")  # not decided twice
    assert first.precision.passages_reason.endswith(first_check.CHECKED_LATER)
    held.set()
    assert first.wait_prepared(300)
    assert (first.precision.passages, first.precision.questions) == ("int8", "int8")
    assert first._model is None  # int8 alone from now on
    assert first.embed_documents([FIRST, SECOND]).shape == (2, first.dimension)
