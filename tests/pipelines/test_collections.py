"""Collections: names mapped to Chroma's rules, the catalogue in a real Chroma, and the CLI's ``collections`` verbs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.errors import CollectionExistsError, CollectionNameError, CollectionNotFoundError
from pipelines.store.chroma import ChromaStore
from pipelines.store.collections import LEGACY, Collections, chroma_name, clean_name
from testkit.cli import run

CHROMA_RULE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。"


@pytest.mark.parametrize(
    ("typed", "kept", "chroma"),
    [
        ("default", "default", "documents"),
        ("documents", "documents", "documents"),  # RAG_COLLECTION=documents, the name before: the default
        ("  default\u3000", "default", "documents"),
        ("人事規程", "人事規程", None),
        ("Tech Docs 2024", "Tech Docs 2024", "c-tech-docs-2024-"),
        ("ＡＢＣ", "ABC", "c-abc-"),  # full-width letters are the same name as half-width ones
        ("ｼﾞﾝｼﾞ", "ジンジ", None),
        ("人事規程 v2", "人事規程 v2", "c-v2-"),
        ("a" * 64, "a" * 64, "c-" + "a" * 40 + "-"),
        ("営業/経理", None, None),
        ("", None, None),
        ("   ", None, None),
        ("a" * 65, None, None),
        ("改行\nあり", None, None),
        ("..", None, None),
        ("100%", None, None),
    ],
)
def test_names_map_to_chroma_rules(typed: str, kept: str | None, chroma: str | None) -> None:
    if kept is None:
        with pytest.raises(CollectionNameError):
            clean_name(typed)
        return
    assert clean_name(typed) == kept
    name = chroma_name(typed)
    assert CHROMA_RULE.match(name), name
    assert ".." not in name
    if chroma is not None:
        assert name == chroma if chroma == LEGACY else name.startswith(chroma)
    assert chroma_name(kept) == name  # the same name whichever form was typed


def test_different_names_never_share_a_collection() -> None:
    names = ["人事規程", "技術文書", "人事規程2", "Tech", "tech", "TECH", "tech-", "a b", "a-b", "a_b"]
    assert len({chroma_name(n) for n in names}) == len(names)


@pytest.fixture
def collections(tmp_path: Path) -> Collections:
    return Collections(ChromaStore.persistent(tmp_path / "data"), tmp_path / "data" / "keyword", tmp_path / "originals")


def test_catalogue_create_and_delete(collections: Collections) -> None:
    assert [(c.name, c.chroma_name, c.documents) for c in collections.catalogue()] == [("default", "documents", 0)]
    made = collections.create("人事規程")
    assert (made.name, made.documents, made.chunks) == ("人事規程", 0, 0)
    assert made.created_at
    with pytest.raises(CollectionExistsError, match="もうあります"):
        collections.create("人事規程")
    with pytest.raises(CollectionExistsError):
        collections.create("default")
    assert [c.name for c in collections.catalogue()] == ["default", "人事規程"]
    location = collections.open("人事規程")
    assert location.store.name == made.chroma_name
    assert location.originals_dir == collections.originals_dir / made.chroma_name
    assert location.keyword_path.name == f"{made.chroma_name}.npz"
    with pytest.raises(CollectionNotFoundError, match="collections create 技術文書"):
        collections.open("技術文書")
    with pytest.raises(CollectionExistsError, match="削除できません"):
        collections.delete("default")
    assert collections.delete("人事規程").name == "人事規程"
    assert [c.name for c in collections.catalogue()] == ["default"]
    with pytest.raises(CollectionNotFoundError):
        collections.delete("人事規程")


def test_a_collection_made_before_collections_is_found_by_its_name(tmp_path: Path, embedder: object) -> None:
    """A store written under RAG_COLLECTION=old before collections existed keeps working under that name."""
    from pipelines.store.indexing import Indexer

    old = ChromaStore.persistent(tmp_path / "data", "old")
    Indexer(embedder, old, 48, 8).ingest_text("東京.txt", TOKYO)  # type: ignore[arg-type]
    collections = Collections(ChromaStore.persistent(tmp_path / "data"), tmp_path / "kw", tmp_path / "originals")
    location = collections.open("old")
    assert location.store.name == "old"
    assert location.originals_dir == tmp_path / "originals"  # the directory it used
    assert [(c.name, c.documents) for c in collections.catalogue()] == [("default", 0), ("old", 1)]


@pytest.fixture
def docs(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_PRECISION", "float32")  # no calibration: these tests are about collections
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "東京.txt").write_text(TOKYO, encoding="utf-8")
    (folder / "休暇.txt").write_text(LEAVE, encoding="utf-8")
    return folder


@pytest.mark.slow
def test_cli_collections_keep_documents_apart(docs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("collections") == (0, "default\t0 文書\t0 チャンク\n", "")
    status, out, err = run("ingest", str(docs / "休暇.txt"), "--collection", "人事規程")
    assert status == 2
    assert "コレクション「人事規程」はありません" in err
    assert run("collections", "create", "人事規程")[:2] == (0, "作成しました: 人事規程（0 文書、0 チャンク）\n")
    assert run("collections", "create", "人事規程")[0] == 2
    assert run("ingest", str(docs / "休暇.txt"), "--collection", "人事規程")[0] == 0
    monkeypatch.setenv("RAG_COLLECTION", "人事規程")  # the variable does what the flag does
    assert "追加\t東京.txt" in run("ingest", str(docs / "東京.txt"), "--collection", "default")[1]
    status, out, _ = run("collections", "--json")
    listed = {c["name"]: (c["documents"], c["chunks"]) for c in json.loads(out)}
    assert listed == {"default": (1, 1), "人事規程": (1, 1)}
    _, out, _ = run("search", "有給休暇", "--json")
    assert {h["source"] for h in json.loads(out)} == {"休暇.txt"}
    _, out, _ = run("search", "有給休暇", "--json", "--collection", "default")
    assert {h["source"] for h in json.loads(out)} == {"東京.txt"}
    _, out, _ = run("documents", "--json")
    assert [d["source"] for d in json.loads(out)] == ["休暇.txt"]


def test_cli_delete_needs_yes_and_leaves_nothing(docs: Path, tmp_path: Path) -> None:
    run("collections", "create", "技術文書")
    assert run("ingest", str(docs), "--collection", "技術文書")[0] == 0
    data = tmp_path / "data"
    chroma = json.loads(run("collections", "--json")[1])[1]["chroma_name"]
    assert (data / "keyword" / f"{chroma}.npz").is_file()
    assert any((data / "originals" / chroma).rglob("*"))
    status, out, err = run("collections", "delete", "技術文書")
    assert (status, out) == (2, "")
    assert "（2 文書、2 チャンク）" in err
    assert "--yes" in err
    assert run("collections", "delete", "技術文書", "--yes")[:2] == (
        0,
        "削除しました: 技術文書（2 文書、2 チャンク）\n",
    )
    store = ChromaStore.persistent(data)
    assert not [c.name for c in store.client.list_collections() if c.name.startswith(chroma)]
    assert not (data / "keyword" / f"{chroma}.npz").exists()
    assert not (data / "originals" / chroma).exists()
    status, _, err = run("search", "東京", "--collection", "技術文書")
    assert status == 2
    assert "ありません" in err
    assert run("collections", "delete", "default", "--yes")[0] == 2


def test_a_writer_holding_a_deleted_collection_does_not_make_it_again(tmp_path: Path, embedder: object) -> None:
    """Another process deleted the collection: this one's next write is refused, and the collection stays gone."""
    from pipelines.store.indexing import Indexer

    def collections() -> Collections:  # a process's own connection to the data directory
        return Collections(ChromaStore.persistent(tmp_path / "data"), tmp_path / "kw", tmp_path / "originals")

    here, there = collections(), collections()
    here.create("技術文書")
    bound = Indexer(embedder, here.open("技術文書").store, 48, 8)  # type: ignore[arg-type]
    unbound = Indexer(embedder, here.open("技術文書").store, 48, 8)  # type: ignore[arg-type]
    assert bound.ingest_text("東京.txt", TOKYO).status == "added"
    there.delete("技術文書")
    for indexer in (bound, unbound):
        with pytest.raises(CollectionNotFoundError, match="削除された"):
            indexer.ingest_text("休暇.txt", LEAVE)
    assert [c.name for c in here.catalogue()] == ["default"]
