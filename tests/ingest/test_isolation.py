"""The isolated reader: a file that hangs, crashes or balloons the reader fails alone, and the next one is read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.document import Section
from ingest.errors import EmptyDocumentError, FileTimeoutError, ReaderCrashedError
from ingest.isolation import IsolatedReader
from ingest.limits import Limits
from ingest.loaders import load_bytes
from testkit import hostile
from testkit.documents import make_pdf

PAGES = [["富士山は日本で最も高い山です。"], ["琵琶湖は滋賀県にある日本最大の湖である。"]]


@pytest.fixture
def reader() -> Iterator[IsolatedReader]:
    isolated = IsolatedReader(seconds=20, memory_mb=1024)
    yield isolated
    isolated.close()


def test_a_file_reads_as_it_does_in_process(reader: IsolatedReader, tmp_path: Path) -> None:
    data = make_pdf(PAGES)
    assert reader.load_bytes("湖.pdf", data, Limits()) == load_bytes("湖.pdf", data)
    (tmp_path / "メモ.txt").write_bytes("有給休暇は十日です。".encode("cp932"))
    loaded = reader.load_file(tmp_path / "メモ.txt", "メモ.txt", Limits())
    assert (loaded.source, loaded.sections, loaded.encoding) == (
        "メモ.txt",
        (Section("有給休暇は十日です。"),),
        "cp932",
    )


def test_a_file_that_cannot_be_read_keeps_its_own_error(reader: IsolatedReader) -> None:
    with pytest.raises(EmptyDocumentError, match="空です"):
        reader.load_bytes("空.txt", b"", Limits())


def test_a_file_that_hangs_is_stopped_and_the_next_is_read(reader: IsolatedReader) -> None:
    reader.seconds = 1.0
    started = time.monotonic()
    with pytest.raises(FileTimeoutError) as caught:
        reader.run("無限.pdf", hostile.hang, 120)
    assert time.monotonic() - started < 15
    assert str(caught.value).startswith("無限.pdf: 読み取りが 1 秒で終わらなかったため、中止しました。")
    assert "RAG_SECONDS_PER_FILE" in str(caught.value)
    reader.seconds = 20
    assert reader.load_bytes("湖.pdf", make_pdf(PAGES), Limits()).sections[1].place.page == 2  # a new child reads on


def test_a_reader_that_crashes_fails_its_file_only(reader: IsolatedReader) -> None:
    with pytest.raises(ReaderCrashedError, match=r"壊れた\.pdf: ファイルを読む処理が異常終了しました"):
        reader.run("壊れた.pdf", hostile.crash)
    assert reader.load_bytes("湖.pdf", make_pdf(PAGES), Limits()).source == "湖.pdf"


@pytest.mark.slow
def test_a_reader_that_balloons_hits_its_memory_bound(reader: IsolatedReader) -> None:
    with pytest.raises(ReaderCrashedError) as caught:
        reader.run("爆弾.pdf", hostile.balloon, 4096)  # 4 GB asked, 1 GB allowed
    assert "メモリの上限 1,024 MB" in str(caught.value)
    assert reader.load_bytes("湖.pdf", make_pdf(PAGES), Limits()).source == "湖.pdf"
