"""Office readers: Word, Excel and PowerPoint files built here, read into sections in order with their places."""

from __future__ import annotations

import datetime
import io
import re
import time
import zipfile
from collections.abc import Callable

import docx
import openpyxl
import pptx
import pytest
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import parse_xml
from openpyxl.utils import get_column_letter

from ingest.document import Place, Reading
from ingest.errors import FormatError, IngestError, ResourceLimitError
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.office import read_docx, read_pptx, read_xlsx
from testkit.office import make_docx, make_pptx, make_xlsx

Reader = Callable[[str, bytes, Limits], Reading]
_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def texts(reading: Reading) -> list[str]:
    return [section.text for section in reading.sections]


def rewrite(data: bytes, part: str, change: Callable[[bytes], bytes]) -> bytes:
    """The same ZIP with one entry changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info.filename, change(content) if info.filename == part else content)
    return out.getvalue()


def docx_bytes(document: docx.document.Document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx_bytes(book: openpyxl.Workbook) -> bytes:
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# Word

GUIDE = ("経費の手引き",)
CHAPTER_2 = (*GUIDE, "第2章 申請")
PROCEDURE = (*CHAPTER_2, "2.1 手続き")
DEADLINE = (*CHAPTER_2, "2.2 期限")
CHAPTER_3 = (*GUIDE, "第3章 審査")
REVIEW = (*CHAPTER_3, "3.1 審査の流れ")


def test_word_blocks_come_in_order_under_their_headings() -> None:
    reading = read_docx("手引き.docx", make_docx(), DEFAULT_LIMITS)
    assert [(s.text, s.place) for s in reading.sections] == [
        ("経費の手引き", Place(heading=GUIDE)),
        ("第2章 申請", Place(heading=CHAPTER_2)),
        ("2.1 手続き", Place(heading=PROCEDURE)),
        ("申請書は総務課に提出してください。", Place(heading=PROCEDURE)),
        ("項目: 交通費\n金額: 1,200円", Place(heading=PROCEDURE)),
        ("項目: 宿泊費\n金額: 8,000円", Place(heading=PROCEDURE)),
        ("項目: 領収書を添付すること", Place(heading=PROCEDURE)),
        ("次の点に注意してください。", Place(heading=PROCEDURE)),
        ("押印は不要です。", Place(heading=PROCEDURE)),
        ("2.2 期限", Place(heading=DEADLINE)),
        ("毎月末日までに提出してください。", Place(heading=DEADLINE)),
        ("第3章 審査", Place(heading=CHAPTER_3)),
        ("3.1 審査の流れ", Place(heading=REVIEW)),
        ("審査には一週間かかります。", Place(heading=REVIEW)),
        (" 電子申請も受け付けます。", Place(heading=("脚注",))),
        ("社外秘", Place(heading=("ヘッダー",))),
        ("株式会社サンプル 総務部", Place(heading=("フッター",))),
    ]
    assert reading.notes == ()


def test_word_header_text_box_and_merged_cell_are_read_once() -> None:
    text = "\n".join(texts(read_docx("手引き.docx", make_docx(), DEFAULT_LIMITS)))
    assert text.count("社外秘") == 1  # the header of two sections
    assert text.count("押印は不要です。") == 1  # a text box Word stores twice
    assert text.count("領収書を添付すること") == 1  # a row of two merged cells
    assert "- 1 -" not in text  # a page number in the footer


def test_word_macro_enabled_document_is_read_like_a_docx() -> None:
    docm = rewrite(
        make_docx(),
        "[Content_Types].xml",
        lambda xml: xml.replace(
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            b"application/vnd.ms-word.document.macroEnabled.main+xml",
        ),
    )
    assert texts(read_docx("手引き.docm", docm, DEFAULT_LIMITS)) == texts(
        read_docx("手引き.docx", make_docx(), DEFAULT_LIMITS)
    )


def test_word_japanese_heading_styles_and_levels() -> None:
    document = docx.Document()
    for name in ("表題", "見出し 1", "見出し 2"):
        document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    document.add_paragraph("社内規程", style="表題")
    document.add_paragraph("第1章 総則", style="見出し 1")
    document.add_paragraph("第1条 目的", style="見出し 2")
    document.add_paragraph("この規程は業務の基準を定める。")
    document.add_paragraph("第2条 適用", style="見出し 2")
    document.add_paragraph("第2章 雑則", style="見出し 1")
    document.add_paragraph("本文は見出しではない。", style="Heading 1")._p.get_or_add_pPr().append(
        parse_xml(f'<w:outlineLvl {_W} w:val="9"/>')  # the paragraph's own level: body text
    )
    reading = read_docx("規程.docx", docx_bytes(document), DEFAULT_LIMITS)
    assert [s.place.heading for s in reading.sections] == [
        ("社内規程",),
        ("社内規程", "第1章 総則"),
        ("社内規程", "第1章 総則", "第1条 目的"),
        ("社内規程", "第1章 総則", "第1条 目的"),
        ("社内規程", "第1章 総則", "第2条 適用"),
        ("社内規程", "第2章 雑則"),
        ("社内規程", "第2章 雑則"),
    ]


def test_word_tables_without_a_header_row_vertical_merges_and_empty_cells() -> None:
    document = docx.Document()
    single = document.add_table(rows=1, cols=3)
    for column, text in enumerate(["氏名", "山田太郎", "総務部"]):
        single.cell(0, column).text = text
    headless = document.add_table(rows=2, cols=2)
    headless.cell(1, 0).text = "備考"
    headless.cell(1, 1).text = "なし"
    merged = document.add_table(rows=4, cols=3)
    for row, cells in enumerate([("部署", "氏名", "内線"), ("営業部", "佐藤", "101"), ("", "鈴木", ""), ("", "", "")]):
        for column, text in enumerate(cells):
            merged.cell(row, column).text = text
    merged.cell(1, 0).merge(merged.cell(2, 0))  # 営業部 over two rows
    reading = read_docx("名簿.docx", docx_bytes(document), DEFAULT_LIMITS)
    assert texts(reading) == [
        "氏名 | 山田太郎 | 総務部",
        "備考 | なし",
        "部署: 営業部\n氏名: 佐藤\n内線: 101",
        "部署: 営業部\n氏名: 鈴木",
    ]


def test_word_table_of_contents_is_left_out() -> None:
    document = docx.Document()
    document.add_heading("第1章 概要", level=1)
    document.add_paragraph("概要を述べる。")
    toc = parse_xml(
        f"<w:sdt {_W}><w:sdtPr><w:docPartObj><w:docPartGallery w:val='Table of Contents'/></w:docPartObj></w:sdtPr>"
        "<w:sdtContent><w:p><w:r><w:t>第1章 概要 ..... 1</w:t></w:r></w:p></w:sdtContent></w:sdt>"
    )
    control = parse_xml(
        f"<w:sdt {_W}><w:sdtPr/><w:sdtContent><w:p><w:r><w:t>入力欄の文章</w:t></w:r></w:p></w:sdtContent></w:sdt>"
    )
    document.element.body.insert(0, toc)
    document.element.body.insert(1, control)
    assert texts(read_docx("目次.docx", docx_bytes(document), DEFAULT_LIMITS)) == [
        "入力欄の文章",
        "第1章 概要",
        "概要を述べる。",
    ]


# Excel


def test_excel_table_and_grid_sheets() -> None:
    reading = read_xlsx("経費.xlsx", make_xlsx(), DEFAULT_LIMITS)
    assert [(s.text, s.place) for s in reading.sections] == [
        ("日付: 2024-04-01\n商品: りんご\n金額: 120\n確認: TRUE", Place(sheet="売上", row=2)),
        ("日付: 2024-04-02 09:30\n商品: みかん\n金額: 80\n確認: FALSE", Place(sheet="売上", row=3)),
        ("日付: 2024-04-03\n商品: ぶどう\n金額: 350.5\n確認: TRUE", Place(sheet="売上", row=5)),
        ("日付: 合計", Place(sheet="売上", row=6)),
        ("経費申請書", Place(sheet="申請書", row=1)),
        ("氏名 山田太郎", Place(sheet="申請書", row=3)),
        ("所属 総務部", Place(sheet="申請書", row=4)),
        ("申請日 2024-04-05", Place(sheet="申請書", row=6)),
        ("備考 特になし", Place(sheet="申請書", row=8)),
    ]
    assert reading.notes == ()


def test_excel_formulas_are_never_shown_as_formulas() -> None:
    # openpyxl saves a formula without a calculated value (Excel saves both): there is nothing to show
    assert not any("SUM" in text for text in texts(read_xlsx("経費.xlsx", make_xlsx(), DEFAULT_LIMITS)))


def sheet_of(rows: list[list[object]], widths: float | None = None, merges: tuple[str, ...] = ()) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "表"
    for number, row in enumerate(rows, 1):
        for column, value in enumerate(row, 1):
            sheet.cell(number, column, value)
    if widths is not None:
        for column in range(1, 31):
            sheet.column_dimensions[get_column_letter(column)].width = widths
    for merge in merges:
        sheet.merge_cells(merge)
    return xlsx_bytes(book)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            sheet_of([["社員名簿"], [], ["氏名", "部署", "内線"], ["佐藤", "営業部", 101], ["鈴木", None, 102]]),
            ["社員名簿", "氏名: 佐藤\n部署: 営業部\n内線: 101", "氏名: 鈴木\n内線: 102"],
            id="表題の下の表",
        ),
        pytest.param(
            sheet_of([["氏名", "山田太郎"], ["住所", "東京都千代田区"], ["電話", "03-1234-5678"]]),
            ["氏名 山田太郎", "住所 東京都千代田区", "電話 03-1234-5678"],
            id="二列の項目と値",
        ),
        pytest.param(
            sheet_of([[None, "見積書"], ["宛先", None, None, None, "株式会社サンプル"], [None, None, "合計", 5000]]),
            ["見積書", "宛先 株式会社サンプル", "合計 5000"],
            id="散らばったセル",
        ),
        pytest.param(
            sheet_of([["氏名", "部署", "内線"], ["佐藤", "営業部", 101]], widths=2.5),
            ["氏名 部署 内線", "佐藤 営業部 101"],
            id="方眼紙の細い列",
        ),
        pytest.param(
            sheet_of(
                [["項目", "内容", None, "備考"], ["目的", "出張", None, "なし"], ["期間", "三日", None, "延長可"]],
                merges=("B1:C1", "B2:C2", "B3:C3"),
            ),
            ["項目 内容 備考", "目的 出張 なし", "期間 三日 延長可"],
            id="列をまたぐ結合",
        ),
        pytest.param(
            sheet_of(
                [["部署", "氏名", "内線"], ["営業部", "佐藤", 101], [None, "鈴木", 102], ["総務部", "田中", 201]],
                merges=("A2:A3",),
            ),
            [
                "部署: 営業部\n氏名: 佐藤\n内線: 101",
                "部署: 営業部\n氏名: 鈴木\n内線: 102",
                "部署: 総務部\n氏名: 田中\n内線: 201",
            ],
            id="縦に結合した表",
        ),
        pytest.param(
            sheet_of(
                [["氏名", "部署", "内線"], ["佐藤", "営業部", 101], ["氏名", "部署", "内線"], ["鈴木", "総務部", 102]]
            ),
            ["氏名: 佐藤\n部署: 営業部\n内線: 101", "氏名: 鈴木\n部署: 総務部\n内線: 102"],
            id="印刷用に繰り返した見出し",
        ),
    ],
)
def test_excel_sheets_are_read_as_tables_or_grids(data: bytes, expected: list[str]) -> None:
    assert texts(read_xlsx("表.xlsx", data, DEFAULT_LIMITS)) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (datetime.date(2024, 4, 1), "2024-04-01"),
        (datetime.datetime(2024, 4, 1), "2024-04-01"),
        (datetime.datetime(2024, 4, 1, 9, 5, 30), "2024-04-01 09:05"),
        (datetime.time(13, 30), "13:30"),
        (80.0, "80"),
        (0.1 + 0.2, "0.3"),
        (-1234.5, "-1234.5"),
        (1e20, "1e+20"),
        (True, "TRUE"),
        (False, "FALSE"),
        ("  前後の空白  ", "前後の空白"),
        ("#DIV/0!", "#DIV/0!"),
    ],
)
def test_excel_values_are_shown_as_excel_shows_them(value: object, shown: str) -> None:
    assert texts(read_xlsx("値.xlsx", sheet_of([[value]]), DEFAULT_LIMITS)) == [shown]


def test_excel_hidden_sheets_are_read_and_named_in_a_note() -> None:
    book = openpyxl.Workbook()
    visible = book.active
    assert visible is not None
    visible["A1"] = "公開する内容"
    secret = book.create_sheet("マスタ")
    secret["A1"] = "隠れた一覧"
    secret.sheet_state = "hidden"
    book.create_sheet("空")
    reading = read_xlsx("隠し.xlsx", xlsx_bytes(book), DEFAULT_LIMITS)
    assert [(s.text, s.place.sheet) for s in reading.sections] == [("公開する内容", "Sheet"), ("隠れた一覧", "マスタ")]
    assert reading.notes == ("非表示のシート（マスタ）も読み込みました。",)


def test_excel_a_stray_cell_at_the_sheets_far_corner_costs_nothing() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"] = "内容"
    sheet["XFD1048576"].number_format = "0.00"  # formatted, empty: max_row × max_column is 17 billion
    started = time.monotonic()
    assert texts(read_xlsx("端.xlsx", xlsx_bytes(book), DEFAULT_LIMITS)) == ["内容"]
    assert time.monotonic() - started < 10


def test_excel_a_merge_over_the_whole_sheet_is_refused_before_openpyxl_loads_it() -> None:
    data = rewrite(
        sheet_of([["内容"]]),
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace(
            b"</sheetData>", b'</sheetData><mergeCells count="1"><mergeCell ref="A1:XFD1048576"/></mergeCells>'
        ),
    )
    with pytest.raises(ResourceLimitError) as caught:
        read_xlsx("結合.xlsx", data, DEFAULT_LIMITS)
    assert str(caught.value) == (
        "結合.xlsx: 結合されたセルが多すぎます（17,179,869,184 セル、上限 1,000,000 セル）。"
        "行全体や列全体の結合を解除して保存し直すか、上限を RAG_MAX_MERGED_CELLS で変えてください。"
    )


# PowerPoint


def test_powerpoint_slides_title_first_shapes_by_position_notes_last_title_as_heading() -> None:
    reading = read_pptx("報告.pptx", make_pptx(), DEFAULT_LIMITS)
    # each slide's title is the heading of its sections (put before its chunks when they are embedded)
    first, second = Place(slide=1, heading=("四半期報告",)), Place(slide=2, heading=("売上の概要",))
    assert [(s.text, s.place) for s in reading.sections] == [
        ("四半期報告", first),
        ("2024年度 第1四半期", first),
        ("売上の概要", second),
        ("東日本が好調", second),
        ("地域: 東日本\n売上: 1,200", second),
        ("地域: 西日本\n売上: 900", second),
        ("前年比で増加しました。", second),
        ("注: 速報値", second),
        ("ノート: 口頭で補足する", second),
    ]


def test_powerpoint_hidden_slides_are_read_and_line_breaks_kept() -> None:
    presentation = pptx.Presentation(io.BytesIO(make_pptx()))
    presentation.slides[0]._element.set("show", "0")  # python-pptx has no setting for a hidden slide
    blank = presentation.slides.add_slide(presentation.slide_layouts[6])
    box = blank.shapes.add_textbox(0, 0, 100, 100).text_frame
    box.text = "一行目\v二行目"
    box.add_paragraph().text = "次の段落"
    buffer = io.BytesIO()
    presentation.save(buffer)
    reading = read_pptx("報告.pptx", buffer.getvalue(), DEFAULT_LIMITS)
    assert reading.sections[0] == read_pptx("報告.pptx", make_pptx(), DEFAULT_LIMITS).sections[0]
    assert (reading.sections[-1].text, reading.sections[-1].place) == ("一行目\n二行目\n次の段落", Place(slide=3))


# Damaged, hostile and huge files, for each reader

READERS = [
    pytest.param(read_docx, make_docx, "資料.docx", "Word 文書", id="docx"),
    pytest.param(read_xlsx, make_xlsx, "資料.xlsx", "Excel ブック", id="xlsx"),
    pytest.param(read_pptx, make_pptx, "資料.pptx", "PowerPoint プレゼンテーション", id="pptx"),
]
MAIN_PART = {
    "資料.docx": "word/document.xml",
    "資料.xlsx": "xl/worksheets/sheet1.xml",
    "資料.pptx": "ppt/slides/slide1.xml",
}


@pytest.mark.parametrize(("read", "make", "name", "kind"), READERS)
def test_bytes_that_are_not_a_zip_are_refused_with_the_file_name(
    read: Reader, make: Callable[[], bytes], name: str, kind: str
) -> None:
    with pytest.raises(IngestError) as caught:
        read(name, "これはテキストです。".encode(), DEFAULT_LIMITS)
    assert not isinstance(caught.value, ResourceLimitError)
    assert str(caught.value).startswith(f"{name}: ZIP 形式のファイルとして読めません（BadZipFile: ")


@pytest.mark.parametrize(("read", "make", "name", "kind"), READERS)
def test_a_zip_bomb_is_refused_before_the_library_opens_it(
    read: Reader, make: Callable[[], bytes], name: str, kind: str
) -> None:
    bomb = rewrite(make(), MAIN_PART[name], lambda xml: xml + bytes(6 * 1024 * 1024))
    with pytest.raises(
        ResourceLimitError, match=rf"^{re.escape(name)}: 中のファイル「{MAIN_PART[name]}」の圧縮率が高すぎます"
    ):
        read(name, bomb, DEFAULT_LIMITS)


@pytest.mark.parametrize(("read", "make", "name", "kind"), READERS)
def test_a_damaged_part_is_a_format_error_that_says_what_to_do(
    read: Reader, make: Callable[[], bytes], name: str, kind: str
) -> None:
    damaged = rewrite(make(), MAIN_PART[name], lambda xml: xml[: len(xml) // 2])
    with pytest.raises(FormatError) as caught:
        read(name, damaged, DEFAULT_LIMITS)
    message = str(caught.value)
    assert message.startswith(f"{name}: {kind}として読めません（")
    assert message.endswith(
        "ファイルが壊れているか、拡張子と中身が合っていません。" + kind.split()[0] + " で開いて保存し直してください。"
    )


@pytest.mark.parametrize(
    ("read", "other", "name", "expected"),
    [
        (
            read_docx,
            make_xlsx,
            "資料.docx",
            "資料.docx: Word 文書ではありません（本文の種類: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml）",
        ),
        (read_xlsx, make_docx, "資料.xlsx", "資料.xlsx: Excel ブックとして読めません（"),
        (read_pptx, make_docx, "資料.pptx", "資料.pptx: PowerPoint プレゼンテーションとして読めません（"),
    ],
    ids=["docx", "xlsx", "pptx"],
)
def test_another_office_format_under_the_extension_is_a_format_error(
    read: Reader, other: Callable[[], bytes], name: str, expected: str
) -> None:
    with pytest.raises(FormatError) as caught:
        read(name, other(), DEFAULT_LIMITS)
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    ("read", "make", "name", "where"),
    [
        (read_docx, make_docx, "資料.docx", ""),
        (read_xlsx, make_xlsx, "資料.xlsx", "シート 売上 の 3 行目までで "),
        (read_pptx, make_pptx, "資料.pptx", "スライド 2 枚目までで "),
    ],
    ids=["docx", "xlsx", "pptx"],
)
def test_characters_are_counted_as_the_file_is_read(
    read: Reader, make: Callable[[], bytes], name: str, where: str
) -> None:
    with pytest.raises(ResourceLimitError) as caught:
        read(name, make(), Limits(max_chars=60))
    message = str(caught.value)
    assert message.startswith(f"{name}: 文字数が多すぎます（{where}")
    assert message.endswith("上限 60 文字）。分割するか、上限を RAG_MAX_CHARS で変えてください。")


@pytest.mark.parametrize("name", ["暗号化.docx", "暗号化.xlsx", "暗号化.pptx"])
def test_a_password_protected_office_file_is_refused_as_such(name: str) -> None:
    # Office writes an encrypted file as an OLE2 compound file holding the encrypted package
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"EncryptedPackage"
    read = {".docx": read_docx, ".xlsx": read_xlsx, ".pptx": read_pptx}[name[-5:]]
    with pytest.raises(FormatError, match=rf"^{name}: パスワードで保護された Office ファイルか"):
        read(name, data, DEFAULT_LIMITS)


LAUGHS = (
    b'<!DOCTYPE worksheet [<!ENTITY a "'
    + b"\xe7\xac\x91" * 10
    + b'">'
    + b"".join(b'<!ENTITY %c "%s">' % (98 + i, b"&%c;" % (97 + i) * 10) for i in range(8))
    + b"]>"
)


@pytest.mark.parametrize(
    ("name", "part", "read"),
    [
        ("爆弾.xlsx", "xl/worksheets/sheet1.xml", read_xlsx),
        ("爆弾.docx", "word/document.xml", read_docx),
        ("爆弾.pptx", "ppt/slides/slide1.xml", read_pptx),
    ],
)
def test_entity_expansion_is_never_performed(name: str, part: str, read: Reader) -> None:
    # billion laughs: ten to the ninth 笑 from a few hundred bytes, declared in the part's DTD
    make = {".xlsx": make_xlsx, ".docx": make_docx, ".pptx": make_pptx}[name[-5:]]

    def declare(xml: bytes) -> bytes:
        head, separator, body = xml.partition(b"?>")
        return head + separator + LAUGHS + body if separator else LAUGHS + xml

    started = time.perf_counter()
    outcome: Reading | IngestError
    try:
        outcome = read(name, rewrite(make(), part, declare), DEFAULT_LIMITS)
    except IngestError as error:  # refused (openpyxl with defusedxml)
        outcome = error
    assert time.perf_counter() - started < 5
    if isinstance(outcome, IngestError):
        assert str(outcome).startswith(f"{name}: ")
    else:  # or read with the entities left unexpanded (lxml with resolve_entities off)
        assert sum(len(s.text) for s in outcome.sections) < 10_000
