"""No work without need: a run with nothing to embed loads no model; a run that writes binds it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import ModelLoadError, ModelMismatchError, SettingsError
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Searcher
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.originals import Originals
from testkit.offline_model import build_offline_model

TOKYO = "東京は日本の首都であり、政治と経済の中心地です。人口はおよそ千四百万人です。"
KYOTO = "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。"
FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
CAT = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three texts, a copy of one of them under another name, and a file no loader reads."""
    folder = tmp_path / "文書"
    (folder / "sub").mkdir(parents=True)
    (folder / "東京.txt").write_text(TOKYO + "\n\n" + FUJI, encoding="utf-8")
    (folder / "京都.md").write_text("# 京都\n" + KYOTO, encoding="utf-8")
    (folder / "sub" / "猫.txt").write_text(CAT, encoding="utf-8")
    (folder / "猫の写し.txt").write_text(CAT, encoding="utf-8")
    (folder / "無視される.exe").write_bytes(b"MZ")
    return folder


def fresh(model_dir: Path | str) -> Embedder:
    """An embedder that has loaded nothing yet (the shared ``embedder`` fixture is loaded)."""
    return Embedder(str(model_dir), batch_size=4, precision="float32")


def ingested(embedder: Embedder, store: ChromaStore, folder: Path) -> None:
    Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8).ingest_paths([folder])
    assert len(store.documents()) == 3  # the copy is a duplicate


@pytest.mark.parametrize("prefetch", [0, 2])
def test_unchanged_folder_loads_no_model(
    embedder: Embedder, model_dir: Path, store: ChromaStore, folder: Path, prefetch: int
) -> None:
    ingested(embedder, store, folder)
    again = fresh(model_dir)
    reports = Indexer(again, store, chunk_tokens=48, chunk_overlap=8, prefetch=prefetch).ingest_paths([folder])
    assert {r.source: r.status for r in reports} == {
        "sub/猫.txt": "unchanged",
        "京都.md": "unchanged",
        "東京.txt": "unchanged",
        "猫の写し.txt": "duplicate",
        "無視される.exe": "skipped",
    }
    assert again.loaded is False
    assert again.stats.texts == 0


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_changed_file_loads_the_model_and_replaces_the_file(
    embedder: Embedder, model_dir: Path, tmp_path: Path, folder: Path, prefetch: int
) -> None:
    store = ChromaStore.persistent(tmp_path / "data")
    ingested(embedder, store, folder)
    old = store.document("京都.md")
    (folder / "京都.md").write_text("# 京都\n" + KYOTO + "\n\n" + FUJI, encoding="utf-8")
    again = fresh(model_dir)
    reports = Indexer(again, store, chunk_tokens=48, chunk_overlap=8, prefetch=prefetch).ingest_paths([folder])
    assert [r.source for r in reports if r.status == "replaced"] == ["京都.md"]
    assert {r.status for r in reports} == {"unchanged", "replaced", "duplicate", "skipped"}
    assert again.loaded is True
    new = store.document("京都.md")
    assert old is not None
    assert new is not None
    assert new.version != old.version
    assert "京都.md" in {h.chunk.source for h in Searcher(again, store).search(FUJI, k=10) if FUJI in h.chunk.text}
    store.close()


def test_delete_and_search_on_an_empty_store_load_no_model(
    embedder: Embedder, model_dir: Path, tmp_path: Path, folder: Path
) -> None:
    store = ChromaStore.persistent(tmp_path / "data")
    lazy = fresh(model_dir)
    assert Searcher(lazy, store).search(TOKYO) == []  # nothing stored yet
    assert lazy.loaded is False
    ingested(embedder, store, folder)
    indexer = Indexer(lazy, store, chunk_tokens=48, chunk_overlap=8)
    assert [indexer.delete(source).source for source in ("東京.txt", "京都.md", "sub/猫.txt")] == [
        "東京.txt",
        "京都.md",
        "sub/猫.txt",
    ]
    assert lazy.loaded is False
    assert store.documents() == []
    assert Searcher(lazy, store).search(TOKYO, mode="dense") == []  # everything deleted: empty again
    assert lazy.loaded is False
    store.close()


def test_a_model_that_cannot_load_writes_nothing(tmp_path: Path, folder: Path) -> None:
    store = ChromaStore.persistent(tmp_path / "data")
    originals = Originals(tmp_path / "originals", grace=0)
    missing = fresh(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="no-such-model"):
        Indexer(missing, store, chunk_tokens=48, chunk_overlap=8, originals=originals).ingest_paths([folder])
    assert store.documents() == []
    assert store.count() == 0
    assert store.reader.bound_model() is None
    assert not any((tmp_path / "originals").rglob("*.*"))
    store.close()


def test_a_model_gone_since_is_needed_only_for_a_new_file_and_then_writes_nothing(
    model_dir: Path, tmp_path: Path, folder: Path
) -> None:
    """The store's model, by the same name, cannot load any more: unchanged files go on; a new one writes nothing."""
    import shutil

    place = shutil.copytree(model_dir, tmp_path / "model")
    store = ChromaStore.persistent(tmp_path / "data")
    originals = Originals(tmp_path / "originals", grace=0)
    ingested(fresh(place), store, folder)
    place.rename(tmp_path / "moved")
    gone = fresh(place)
    indexer = Indexer(gone, store, chunk_tokens=48, chunk_overlap=8, originals=originals)
    assert {r.status for r in indexer.ingest_paths([folder])} == {"unchanged", "duplicate", "skipped"}
    before = (store.documents(), store.count(), sorted((tmp_path / "originals").rglob("*")))
    (folder / "新しい.txt").write_text(KYOTO + FUJI, encoding="utf-8")
    with pytest.raises(ModelLoadError, match="model"):
        indexer.ingest_paths([folder])
    assert (store.documents(), store.count(), sorted((tmp_path / "originals").rglob("*"))) == before
    assert gone.loaded is False
    store.close()


def test_a_store_of_another_model_is_refused_even_when_nothing_changed(
    embedder: Embedder, tmp_path: Path, folder: Path
) -> None:
    """The store's model name is read without loading; another name is checked by loading the model."""
    store = ChromaStore.persistent(tmp_path / "data")
    ingested(embedder, store, folder)
    other = fresh(build_offline_model(tmp_path / "other", seed=1))
    with pytest.raises(ModelMismatchError, match="tiny-glucose"):
        Indexer(other, store, chunk_tokens=48, chunk_overlap=8).ingest_paths([folder])
    store.close()


def test_a_chunk_budget_over_the_model_limit_is_refused_before_anything_is_written(
    model_dir: Path, tmp_path: Path, folder: Path
) -> None:
    store = ChromaStore.persistent(tmp_path / "data")
    with pytest.raises(SettingsError, match="512"):
        Indexer(fresh(model_dir), store, chunk_tokens=600, chunk_overlap=0).ingest_paths([folder])
    assert store.documents() == []
    assert store.count() == 0
    store.close()


class CountingReader:
    """The in-process reader, counting the files it reads."""

    def __init__(self) -> None:
        from pipelines.store.indexing import InProcessReader

        self.inner = InProcessReader()
        self.read: list[str] = []

    def load_file(self, path: Path, source: str, limits: object) -> object:
        self.read.append(source)
        return self.inner.load_file(path, source, limits)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_stored_files_are_hashed_not_read(
    embedder: Embedder, model_dir: Path, store: ChromaStore, folder: Path, prefetch: int
) -> None:
    ingested(embedder, store, folder)
    (folder / "東京.txt").write_text(TOKYO, encoding="utf-8")  # changed: read and embedded again
    reader = CountingReader()
    indexer = Indexer(fresh(model_dir), store, chunk_tokens=48, chunk_overlap=8, prefetch=prefetch, reader=reader)  # type: ignore[arg-type]
    reports = {r.source: r.status for r in indexer.ingest_paths([folder])}
    assert reports["東京.txt"] == "replaced"
    assert reports["京都.md"] == reports["sub/猫.txt"] == "unchanged"
    assert reports["猫の写し.txt"] == "duplicate"
    assert reader.read == ["東京.txt"]  # the others' content hashes were stored already


def test_a_hashed_file_deleted_from_the_store_meanwhile_is_read_and_stored(
    embedder: Embedder, model_dir: Path, store: ChromaStore, folder: Path
) -> None:
    ingested(embedder, store, folder)
    indexer = Indexer(fresh(model_dir), store, chunk_tokens=48, chunk_overlap=8, prefetch=0)
    known = {d.version for d in store.documents()}
    unread = indexer._prepare(folder / "京都.md", "京都.md", known)
    Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8).delete("京都.md")  # another process deletes it
    report = indexer._ingest_prepared(unread, None)
    assert (report.source, report.status) == ("京都.md", "added")
    assert "京都.md" in {d.source for d in store.documents()}
