"""What people upload: every bad input gets its documented outcome, and what is stored stays untouched."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.embedder import Embedder
from pipelines.errors import SettingsError
from pipelines.indexing import Indexer, upload_name
from pipelines.retrieval import Searcher
from pipelines.settings import Settings
from pipelines.store import ChromaStore
from testkit.documents import make_blank_pdf, make_pdf

KEEP = "この文書は最初から保存されていて、何があっても残ります。"
TEXT = "吾輩は猫である。名前はまだ無い。"


def truncated_pdf() -> bytes:
    data = make_pdf([[TEXT]] * 3)
    return data[: len(data) // 3]


BAD: list[tuple[str, Callable[[], bytes], str]] = [
    ("空.txt", lambda: b"", "ファイルが空です"),
    ("乱数.pdf", lambda: os.urandom(4096), "PDF を読み取れません"),
    ("途中まで.pdf", truncated_pdf, "PDF"),
    ("鍵付き.pdf", lambda: make_pdf([[TEXT]], password="himitsu"), "パスワード"),
    ("スキャン.pdf", lambda: make_blank_pdf(2), "OCR には対応していない"),
    ("画像.png", lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(64), "対応していません"),
    ("表.xlsx", lambda: b"PK\x03\x04" + os.urandom(64), "対応していません"),
    ("バイナリ.txt", lambda: os.urandom(2048), "文字コードを判別できません"),
    ("大きすぎる.txt", lambda: ("あ" * 400_000).encode(), "大きすぎます"),
    ("制御文字だけ.txt", lambda: b"\x00\x01\x02\x00\x1b", "文字"),
]
GOOD: list[tuple[str, Callable[[], bytes], str]] = [
    (
        "縦書き.pdf",
        lambda: make_pdf([["縦書きの日本語の文章です。", "二列目も続きます。"]], vertical=True),
        "縦書きの日本語の文章です。",
    ),
    ("シフトJIS.txt", lambda: TEXT.encode("cp932"), TEXT),
    ("EUC.txt", lambda: TEXT.encode("euc_jp"), TEXT),
    ("UTF16.txt", lambda: TEXT.encode("utf-16"), TEXT),
    ("NUL入り.txt", lambda: "吾輩は\x00猫である。\x00名前はまだ無い。".encode(), TEXT),
]


@pytest.fixture
def limited(embedder: Embedder, store: ChromaStore) -> Indexer:
    indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, max_bytes=1024 * 1024)
    assert indexer.ingest_bytes("保存済み.txt", KEEP.encode()).status == "added"
    return indexer


def untouched(indexer: Indexer, embedder: Embedder) -> None:
    documents = indexer.store.documents()
    assert "保存済み.txt" in [d.source for d in documents]
    assert Searcher(embedder, indexer.store).search(KEEP, k=1)[0].text == KEEP
    assert indexer.store.count() == sum(d.chunks for d in documents)  # no orphan chunks


@pytest.mark.parametrize(("name", "make", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_with_a_reason(
    limited: Indexer, embedder: Embedder, name: str, make: Callable[[], bytes], message: str
) -> None:
    report = limited.ingest_bytes(name, make())
    assert report.status == "failed"
    assert message in report.message
    assert name in report.message
    untouched(limited, embedder)
    assert name not in [d.source for d in limited.store.documents()]


@pytest.mark.parametrize(("name", "make", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_awkward_but_valid_input_is_stored(
    limited: Indexer, embedder: Embedder, name: str, make: Callable[[], bytes], expected: str
) -> None:
    report = limited.ingest_bytes(name, make())
    assert report.status == "added", report.message
    hit = Searcher(embedder, limited.store).search(expected, k=5, sources=[name])[0]
    assert expected in hit.text
    untouched(limited, embedder)


@pytest.mark.parametrize(
    ("uploaded", "stored"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("sub/dir/報告書.md", "報告書.md"),
        ("C:\\Users\\山田\\メモ.txt", "メモ.txt"),
        ("制御\x00文字\x1b[31m.txt", "制御文字[31m.txt"),
        ("../", "名前なし"),
        ("/.txt", "名前なし.txt"),
        ("日本語の名前.txt", "日本語の名前.txt"),
    ],
)
def test_upload_names_are_labels_not_paths(uploaded: str, stored: str) -> None:
    assert upload_name(uploaded) == stored


def test_path_like_name_is_stored_under_its_last_part(limited: Indexer, tmp_path: Path) -> None:
    report = limited.ingest_bytes("../../秘密.txt", TEXT.encode())
    assert (report.source, report.status) == ("秘密.txt", "added")
    assert not (tmp_path.parent / "秘密.txt").exists()


def test_same_file_twice_is_unchanged(limited: Indexer, embedder: Embedder) -> None:
    assert limited.ingest_bytes("二回.txt", TEXT.encode()).status == "added"
    before = embedder.stats.texts
    assert limited.ingest_bytes("二回.txt", TEXT.encode()).status == "unchanged"
    assert embedder.stats.texts == before


def test_two_files_with_one_name_the_second_replaces_the_first(limited: Indexer, embedder: Embedder) -> None:
    limited.ingest_bytes("同名.txt", TEXT.encode())
    assert limited.ingest_bytes("同名.txt", KEEP.replace("最初から", "後から").encode()).status == "replaced"
    texts = [h.text for h in Searcher(embedder, limited.store).search(TEXT, k=10, sources=["同名.txt"])]
    assert texts == [KEEP.replace("最初から", "後から")]
    untouched(limited, embedder)


def test_large_file_on_disk_is_refused_before_reading(limited: Indexer, tmp_path: Path) -> None:
    big = tmp_path / "巨大.txt"
    with big.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # sparse: 2 MB that were never written
    (report,) = limited.ingest_paths([big])
    assert (report.status, "大きすぎます" in report.message) == ("failed", True)


@pytest.mark.parametrize("host", ["chroma.example.com", "10.0.0.5"])
def test_remote_chroma_needs_a_token(host: str) -> None:
    with pytest.raises(SettingsError, match="RAG_CHROMA_TOKEN"):
        Settings(chroma_host=host)
    assert Settings(chroma_host=host, chroma_token="t").chroma_token == "t"
    assert Settings(chroma_host="127.0.0.1").chroma_host == "127.0.0.1"
