"""Places: the labels cards show, Markdown's heading paths, and where a chunk is said to be."""

from __future__ import annotations

import io

import pytest

from ingest.chunking import chunk_text
from ingest.document import NOWHERE, Place, Section, describe
from ingest.loaders import load_bytes, markdown_sections
from ingest.normalize import join_sections


@pytest.mark.parametrize(
    ("first", "last", "label"),
    [
        (Place(page=2), Place(page=2), "2 ページ"),
        (Place(page=1), Place(page=2), "1–2 ページ"),
        (Place(slide=3), Place(slide=3), "スライド 3"),
        (Place(slide=3), Place(slide=4), "スライド 3–4"),
        (Place(sheet="売上", row=12), Place(sheet="売上", row=30), "シート 売上 ・ 12–30 行"),
        (Place(sheet="売上", row=5), Place(sheet="売上", row=5), "シート 売上 ・ 5 行"),
        (Place(sheet="売上", row=40), Place(sheet="経費", row=2), "シート 売上 ・ 40 行 〜 シート 経費 ・ 2 行"),
        (Place(row=2), Place(row=9), "2–9 行"),
        (
            Place(heading=("第2章 申請", "2.1 手続き")),
            Place(heading=("第2章 申請", "2.2 期限")),
            "第2章 申請 > 2.1 手続き",
        ),
        (Place(page=4, ocr=True), Place(page=4, ocr=True), "4 ページ"),
        (NOWHERE, NOWHERE, ""),
    ],
)
def test_labels_as_the_card_shows_them(first: Place, last: Place, label: str) -> None:
    assert describe(first, last) == label


def test_markdown_is_cut_at_its_headings_but_not_inside_code() -> None:
    text = "前書き。\n# 第1章 総則\n目的を定める。\n```\n# これはコード\n```\n## 1.1 定義\n用語の定義。\n# 第2章 申請\n申請する。"
    sections = markdown_sections(text)
    assert [(s.text.split("\n")[0], s.place.heading) for s in sections] == [
        ("前書き。", ()),
        ("# 第1章 総則", ("第1章 総則",)),
        ("## 1.1 定義", ("第1章 総則", "1.1 定義")),
        ("# 第2章 申請", ("第2章 申請",)),
    ]
    assert "# これはコード" in sections[1].text


def test_a_chunk_is_placed_under_the_headings_it_starts_with() -> None:
    sections = [
        Section("第2章 出張", Place(heading=("第2章 出張",))),
        Section("2.1 旅費", Place(heading=("第2章 出張", "2.1 旅費"))),
        Section("出張の日当は一日三千円です。", Place(heading=("第2章 出張", "2.1 旅費"))),
        Section("2.2 報告", Place(heading=("第2章 出張", "2.2 報告"))),
        Section("帰着後に報告書を出します。", Place(heading=("第2章 出張", "2.2 報告"))),
    ]
    paged = join_sections(sections)
    (chunk,) = chunk_text(paged, lambda text: len(text) + 2, max_tokens=200)
    assert describe(chunk.place, chunk.place_end) == "第2章 出張 > 2.1 旅費"
    assert chunk.place_end.heading == ("第2章 出張", "2.2 報告")
    # a heading alone in its chunk is still where it is
    assert paged.place_of(0, len("第2章 出張")).heading == ("第2章 出張",)


def test_structured_sections_never_run_into_each_other_but_pages_do() -> None:
    rows = join_sections([Section("品目: りんご", Place(row=2)), Section("品目: みかん", Place(row=3))])
    assert rows.text == "品目: りんご\n\n品目: みかん"
    pages = join_sections(
        [Section("この文は次の", Place(page=1), flows=True), Section("ページに続く。", Place(page=2), flows=True)]
    )
    assert pages.text == "この文は次のページに続く。"


def test_a_markdown_file_keeps_its_heading_paths() -> None:
    loaded = load_bytes("議事録.md", "# 定例会議\n\n## 決定事項\n\n忘年会は十二月十日に開きます。\n".encode())
    assert loaded.kind == "markdown"
    assert [s.place.heading for s in loaded.sections] == [("定例会議",), ("定例会議", "決定事項")]
    assert loaded.pages == 0


def test_lines_that_are_meant_stay_lines() -> None:
    # a table row's 列名: 値 lines end without 。, as a PDF line broken mid-sentence does: only the
    # wrapped kinds of text are re-joined
    row = "品目: みかん\n産地: 愛媛\n単価: 80"
    assert join_sections([Section(row, Place(row=4), wrapped=False)]).text == row
    assert join_sections([Section("この文は途中で\n折り返されている。")]).text == "この文は途中で折り返されている。"
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["品目", "産地", "単価"])
    sheet.append(["みかん", "愛媛", 80])
    buffer = io.BytesIO()
    book.save(buffer)
    loaded = load_bytes("青果.xlsx", buffer.getvalue())
    assert join_sections(loaded.sections).text == row
