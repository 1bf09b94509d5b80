"""What people upload: every bad input gets its documented outcome, and what is stored stays untouched."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.isolation import IsolatedReader
from ingest.limits import DEFAULT_LIMITS, Limits
from pipelines.errors import SettingsError
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Searcher
from pipelines.service.compose import build
from pipelines.settings import LIMITS, Settings
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.paths import upload_name
from testkit.documents import make_blank_pdf, make_pdf

KEEP = "この文書は最初から保存されていて、何があっても残ります。"
TEXT = "吾輩は猫である。名前はまだ無い。"


# what the `limited` indexer accepts: small, so that a test builds a file over them in milliseconds
SMALL = Limits(max_pages=3, max_chars=10_000)


def truncated_pdf() -> bytes:
    data = make_pdf([[TEXT]] * 3)
    return data[: len(data) // 3]


BAD: list[tuple[str, Callable[[], bytes], str]] = [
    ("空.txt", lambda: b"", "ファイルが空です"),
    ("乱数.pdf", lambda: os.urandom(4096), "PDF を読み取れません"),
    ("途中まで.pdf", truncated_pdf, "PDF"),
    ("鍵付き.pdf", lambda: make_pdf([[TEXT]], password="himitsu"), "パスワード"),
    ("白紙.pdf", lambda: make_blank_pdf(2), "文字が見つかりませんでした"),
    ("画像.png", lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(64), "画像として読めません"),
    ("表.xlsx", lambda: b"PK\x03\x04" + os.urandom(64), "ZIP 形式のファイルとして読めません"),
    ("文書.docx", lambda: b"\xd0\xcf\x11\xe0" + os.urandom(512), "ZIP 形式のファイルとして読めません"),
    ("社内報.html", lambda: os.urandom(2048), "文字コード"),
    ("実行.exe", lambda: b"MZ\x90\x00", "対応していない形式"),
    ("バイナリ.txt", lambda: os.urandom(2048), "文字コードを判別できません"),
    ("大きすぎる.txt", lambda: ("あ" * 400_000).encode(), "大きすぎます"),
    ("制御文字だけ.txt", lambda: b"\x00\x01\x02\x00\x1b", "文字"),
    (
        "厚すぎる.pdf",
        lambda: make_pdf([[TEXT]] * 4),
        "ページ数が多すぎます（4 ページ、上限 3 ページ）。分割するか、上限を RAG_MAX_PAGES",
    ),
    ("長すぎる.txt", lambda: ("あ" * 10_001).encode("cp932"), "文字数が多すぎます（10,001 文字、上限 10,000 文字）"),
    ("長すぎる.pdf", lambda: make_pdf([["東京" * 50] * 40] * 3), "（3 ページ目までで 12,120 文字、上限 10,000 文字）"),
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
    indexer = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, max_bytes=1024 * 1024, limits=SMALL)
    assert indexer.ingest_bytes("保存済み.txt", KEEP.encode()).status == "added"
    return indexer


def untouched(indexer: Indexer, embedder: Embedder) -> None:
    documents = indexer.store.documents()
    assert "保存済み.txt" in [d.source for d in documents]
    assert Searcher(embedder, indexer.store).search(KEEP, k=1)[0].chunk.text == KEEP
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
    assert expected in hit.chunk.text
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
    texts = [h.chunk.text for h in Searcher(embedder, limited.store).search(TEXT, k=10, sources=["同名.txt"])]
    assert texts == [KEEP.replace("最初から", "後から")]
    untouched(limited, embedder)


def test_large_file_on_disk_is_refused_before_reading(limited: Indexer, tmp_path: Path) -> None:
    big = tmp_path / "巨大.txt"
    with big.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # sparse: 2 MB that were never written
    (report,) = limited.ingest_paths([big])
    assert (report.status, "大きすぎます" in report.message) == ("failed", True)


def test_limits_apply_to_files_on_disk_too(limited: Indexer, embedder: Embedder, tmp_path: Path) -> None:
    (tmp_path / "議事録.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "全集.pdf").write_bytes(make_pdf([[TEXT]] * 5))
    reports = {r.source: r for r in limited.ingest_paths([tmp_path])}
    assert reports["議事録.txt"].status == "added"
    assert (reports["全集.pdf"].status, reports["全集.pdf"].message) == (
        "failed",
        "全集.pdf: ページ数が多すぎます（5 ページ、上限 3 ページ）。分割するか、上限を RAG_MAX_PAGES で変えてください。",
    )
    untouched(limited, embedder)


def test_limit_settings_default_to_the_loaders_limits() -> None:
    assert Limits(**{name: getattr(Settings(), name) for name in LIMITS}) == DEFAULT_LIMITS
    assert LIMITS == (
        "max_pages",
        "max_chars",
        "max_pixels",
        "max_zip_mb",
        "max_zip_entries",
        "max_zip_ratio",
        "max_merged_cells",
        "seconds_per_file",
        "reader_memory_mb",
    )


def test_limit_settings_reach_the_indexer(embedder: Embedder, tmp_path: Path) -> None:
    values = dict(zip(LIMITS, (10, 20_000, 1_000_000, 5, 30, 50, 7_000, 60, 2048), strict=True))
    store = ChromaStore.persistent(tmp_path / "limits")
    try:
        settings = Settings.from_env({f"RAG_{name.upper()}": str(value) for name, value in values.items()})
        indexer = build(settings, embedder=embedder, store=store).indexer
    finally:
        store.close()
    assert indexer.limits == Limits(**values)
    assert indexer.limits.max_pages == 10
    assert isinstance(indexer.reader, IsolatedReader)  # files are read in a child process, with these bounds
    assert (indexer.reader.seconds, indexer.reader.memory_mb) == (60, 2048)


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize(
    ("raw", "message"),
    [("0", "は 1 以上にしてください（現在 0）。"), ("多い", "は整数で指定してください（現在 '多い'）。")],
)
def test_limit_settings_must_be_positive_integers(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({f"RAG_{name.upper()}": raw})
    assert str(caught.value) == f"RAG_{name.upper()} {message}"


@pytest.mark.parametrize("host", ["chroma.example.com", "10.0.0.5"])
def test_remote_chroma_needs_a_token(host: str) -> None:
    with pytest.raises(SettingsError, match="RAG_CHROMA_TOKEN"):
        Settings(chroma_host=host)
    assert Settings(chroma_host=host, chroma_token="t").chroma_token == "t"
    assert Settings(chroma_host="127.0.0.1").chroma_host == "127.0.0.1"


@pytest.mark.slow
def test_a_file_that_outlasts_its_time_fails_alone(limited: Indexer, embedder: Embedder) -> None:
    """Read in a child process: past its time the reading is stopped, the report says so, the store is as it was."""
    limited.reader = reader = IsolatedReader(seconds=0.001)  # no child starts that fast: every read runs out of time
    try:
        report = limited.ingest_bytes("遅い.pdf", make_pdf([["読むのに時間がかかる文書です。"]]))
        assert report.status == "failed"
        assert report.message.startswith("遅い.pdf: 読み取りが 0 秒で終わらなかったため、中止しました。")
        untouched(limited, embedder)
        reader.seconds = 60  # the next file gets a new child and is read
        assert limited.ingest_bytes("次.txt", "次の文書は読めます。".encode()).status == "added"
    finally:
        reader.close()
