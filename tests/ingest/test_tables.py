"""CSV and TSV files: Excel's CP932 exports, quoted values, delimiters, and rows numbered as a spreadsheet numbers them."""

from __future__ import annotations

import pytest

from ingest.document import Place, Reading, Section
from ingest.errors import EncodingError, ResourceLimitError
from ingest.limits import Limits
from ingest.tables import read_csv
from testkit.web import make_csv

LIMITS = Limits()
STAFF = [
    ["社員番号", "氏名", "部署"],
    ["1001", "山田 太郎", "総務部"],
    ["1002", "佐藤 花子", "営業部"],
]


def rows(reading: Reading) -> list[tuple[int | None, str]]:
    return [(section.place.row, section.text) for section in reading.sections]


def test_a_cp932_export_becomes_one_section_per_row() -> None:
    reading = read_csv("社員.csv", make_csv(STAFF), LIMITS)
    assert reading.encoding == "cp932"
    assert reading.sections == (
        Section("社員番号: 1001\n氏名: 山田 太郎\n部署: 総務部", Place(row=2)),
        Section("社員番号: 1002\n氏名: 佐藤 花子\n部署: 営業部", Place(row=3)),
    )
    assert reading.notes == ()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932", "euc_jp", "utf-16"])
def test_every_japanese_encoding(encoding: str) -> None:
    reading = read_csv("社員.csv", make_csv(STAFF, encoding=encoding), LIMITS)
    assert reading.encoding == encoding
    assert rows(reading)[0] == (2, "社員番号: 1001\n氏名: 山田 太郎\n部署: 総務部")


def test_quoted_values_keep_commas_and_line_breaks_and_rows_count_records() -> None:
    data = make_csv(
        [
            ["品名", "説明", "価格"],
            ["りんご", "赤い, 甘い", "100"],
            ["みかん", "一行目\r\n二行目\n三行目", "80"],
            ["ぶどう", '"巨峰"と呼ばれる', "300"],
        ]
    )
    assert rows(read_csv("商品.csv", data, LIMITS)) == [
        (2, "品名: りんご\n説明: 赤い, 甘い\n価格: 100"),
        (3, "品名: みかん\n説明: 一行目\n二行目\n三行目\n価格: 80"),
        (4, '品名: ぶどう\n説明: "巨峰"と呼ばれる\n価格: 300'),  # row 4 although the file's line 6
    ]


def test_blank_rows_are_skipped_and_row_numbers_stay_true() -> None:
    text = "\r\n社員番号,氏名,部署\r\n1001,山田,総務部\r\n\r\n,,\r\n , ,\u3000\r\n1002,佐藤,営業部\r\n\r\n"
    assert rows(read_csv("社員.csv", text.encode("cp932"), LIMITS)) == [
        (3, "社員番号: 1001\n氏名: 山田\n部署: 総務部"),
        (7, "社員番号: 1002\n氏名: 佐藤\n部署: 営業部"),
    ]


def test_empty_values_are_left_out_and_unnamed_columns_are_numbered() -> None:
    data = make_csv([["氏名", "", "備考"], ["山田", "東京", ""], ["佐藤", "", "", "追加の値", "さらに"], ["鈴木"]])
    assert rows(read_csv("名簿.csv", data, LIMITS)) == [
        (2, "氏名: 山田\n列2: 東京"),
        (3, "氏名: 佐藤\n列4: 追加の値\n列5: さらに"),
        (4, "氏名: 鈴木"),
    ]


def test_a_header_alone_is_one_section() -> None:
    assert rows(read_csv("空の表.csv", make_csv([["社員番号", "氏名", "", "部署"]]), LIMITS)) == [
        (1, "社員番号 | 氏名 | 部署")
    ]


def test_a_file_of_blank_rows_has_no_sections() -> None:
    assert read_csv("空.csv", b",,\r\n\r\n", LIMITS).sections == ()


def test_tsv_is_split_at_tabs() -> None:
    data = make_csv([["氏名", "住所"], ["山田", "東京都千代田区1-1, 2F"]], delimiter="\t")
    reading = read_csv("住所.tsv", data, LIMITS)
    assert rows(reading) == [(2, "氏名: 山田\n住所: 東京都千代田区1-1, 2F")]
    assert reading.notes == ()


@pytest.mark.parametrize(
    ("text", "expected", "noted"),
    [
        ("氏名\t住所\n山田\t東京都\n佐藤\t大阪府\n", "氏名: 山田\n住所: 東京都", "タブ"),
        ("氏名;住所\n山田;東京都\n佐藤;大阪府\n", "氏名: 山田\n住所: 東京都", "セミコロン"),
        # a comma-separated file whose values hold semicolons and tabs stays comma-separated
        ("氏名,備考\n山田,朝;昼;夜\n佐藤,a;b;c\n", "氏名: 山田\n備考: 朝;昼;夜", None),
        ("項目,内容\nA,x\ty\nB,p\tq\n", "項目: A\n内容: x\ty", None),
        # one column: nothing to tell
        ("氏名\n山田\n佐藤\n", "氏名: 山田", None),
    ],
)
def test_a_csv_delimiter_other_than_comma_is_found_and_noted(text: str, expected: str, noted: str | None) -> None:
    reading = read_csv("データ.csv", text.encode(), LIMITS)
    assert reading.sections[0] == Section(expected, Place(row=2))
    if noted is None:
        assert reading.notes == ()
    else:
        assert len(reading.notes) == 1
        assert noted in reading.notes[0]


@pytest.mark.parametrize(
    ("text", "expected", "row"),
    [
        # a quote never closed: the rest of the file is the value (csv's reading), and the person is told
        ('氏名,備考\n山田,"閉じない\n佐藤,普通\n', [(2, "氏名: 山田\n備考: 閉じない\n佐藤,普通")], "2 行目"),
        (
            '氏名,備考\n山田,"引用"の後\n佐藤,普通\n',
            [(2, "氏名: 山田\n備考: 引用の後"), (3, "氏名: 佐藤\n備考: 普通")],
            "2 行目",
        ),
    ],
)
def test_broken_quoting_is_read_leniently_with_a_note(text: str, expected: list[tuple[int, str]], row: str) -> None:
    reading = read_csv("壊れた.csv", text.encode(), LIMITS)
    assert rows(reading) == expected
    assert len(reading.notes) == 1
    assert "壊れた.csv" in reading.notes[0]
    assert row in reading.notes[0]


def test_nul_characters_are_kept_for_normalisation() -> None:
    # since Python 3.11 the csv module reads NUL like any character; normalisation removes it
    assert rows(read_csv("a.csv", b"a,b\r\n1,\x002\r\n", LIMITS)) == [(2, "a: 1\nb: \x002")]


def test_a_value_longer_than_the_csv_modules_default_limit_is_read() -> None:
    long = "あ" * 200_000  # csv.field_size_limit() is 131,072 by default
    assert rows(read_csv("長い.csv", make_csv([["本文"], [long]], encoding="utf-8"), LIMITS)) == [(2, f"本文: {long}")]


def test_the_character_limit_is_kept() -> None:
    with pytest.raises(ResourceLimitError, match=r"大きい\.csv.*RAG_MAX_CHARS"):
        read_csv("大きい.csv", make_csv([["本文"], ["あ" * 2_000]]), Limits(max_chars=1_000))
    with pytest.raises(ResourceLimitError, match="少なくとも"):
        read_csv("大きい.csv", b"a" * 8_000, Limits(max_chars=1_000))


def test_binary_data_is_an_encoding_error_naming_the_file() -> None:
    with pytest.raises(EncodingError, match=r"データ\.csv"):
        read_csv("データ.csv", bytes(range(128, 256)) * 8, LIMITS)
