"""A shared folder of Japanese office documents, one file of every format, through ``python -m pipelines``.

Each file holds one fact no other file has; a question about it finds that file first, with the place
the card shows (page, slide, sheet and rows, headings), and the scanned pages are found through OCR.
Questions are asked in keyword mode: the tests' offline model is a tiny untrained one, so its meaning
search says nothing, while the words show whether each format was read right.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from testkit.cli import run
from testkit.documents import make_pdf
from testkit.legacy import require_libreoffice, require_program, save_as
from testkit.office import make_branch_pptx, make_produce_xlsx, make_trip_docx
from testkit.scans import scan_image, scanned_pdf
from testkit.web import make_csv, make_html

pytestmark = pytest.mark.ocr  # LibreOffice saves the .doc, Tesseract reads the scans


def legacy_source() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("慶弔休暇は五日間与えられる。")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shared_drive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a Japanese office keeps one: every format, legacy Word and scans included."""
    soffice = require_libreoffice()
    require_program("tesseract", install="apt-get install tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert")
    folder = tmp_path_factory.mktemp("共有") / "総務"
    (folder / "古い").mkdir(parents=True)
    (folder / "出張規程.docx").write_bytes(make_trip_docx())
    (folder / "古い" / "休暇規程.doc").write_bytes(save_as(legacy_source(), ".docx", "doc", soffice))
    (folder / "青果.xlsx").write_bytes(make_produce_xlsx())
    (folder / "支店報告.pptx").write_bytes(make_branch_pptx())
    page = "<nav>トップ お問い合わせ</nav><h1>社内報</h1><h2>釣り部</h2><p>釣り部は毎月第二土曜日に活動します。</p>"
    (folder / "社内報.html").write_bytes(make_html(page, encoding="cp932", label="Shift_JIS"))
    rows = [["社員番号", "氏名", "内線"], ["1001", "佐藤一郎", "4410"], ["1002", "鈴木花子", "4455"]]
    (folder / "内線表.csv").write_bytes(make_csv(rows))
    (folder / "議事録.md").write_bytes("# 定例会議\n\n## 決定事項\n\n忘年会は十二月十日に開きます。\n".encode())
    (folder / "メモ.txt").write_bytes("駐輪場は北門の横にあります。".encode("euc_jp"))
    (folder / "島.pdf").write_bytes(make_pdf([["日本の島について。"], ["屋久島は鹿児島県にある世界遺産の島です。"]]))
    (folder / "スキャン.png").write_bytes(_png(scan_image(["琵琶湖は滋賀県にある日本最大の湖である。"])))
    columns = [
        "法隆寺は奈良県にある古い寺である。",
        "東大寺の大仏は奈良時代に造られた。",
        "京都には古い寺や神社が多い。",
    ]
    vertical = scan_image(columns, vertical=True)
    (folder / "縦書き.pdf").write_bytes(scanned_pdf([vertical]))
    (folder / "setup.exe").write_bytes(b"MZ\x90\x00")
    (folder / "~$出張規程.docx").write_bytes(b"\x0bYamada" + bytes(150))  # Word's lock file while it is open
    return folder


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ingested(shared_drive: Path, tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAG_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        patch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
        patch.setenv("RAG_DEVICE", "cpu")
        status, out, err = run("ingest", str(shared_drive), "--json")
        report: dict[str, Any] = json.loads(out)
        report["status"], report["err"] = status, err
        report["hits"] = {question: _first(question) for question in QUESTIONS}
        status, out, err = run("search", "お問い合わせ 社外秘", "--json", "-k", "5", "--mode", "keyword")
        report["boilerplate"] = json.loads(out)
    return report


QUESTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "出張の日当はいくらですか？": ("出張規程.docx", {"location": "第2章 出張 > 2.1 旅費"}),
    "慶弔休暇は何日ですか？": ("古い/休暇規程.doc", {}),
    "ドリアンの単価は？": ("青果.xlsx", {"sheet": "青果"}),
    "新潟支店の売上はどうでしたか？": ("支店報告.pptx", {}),
    "釣り部はいつ活動しますか？": ("社内報.html", {"location": "社内報 > 釣り部"}),
    "鈴木花子の内線番号は？": ("内線表.csv", {}),
    "忘年会はいつですか？": ("議事録.md", {"location": "定例会議 > 決定事項"}),
    "駐輪場はどこですか？": ("メモ.txt", {"location": ""}),
    # the chunk runs over the page break: 1–2 ページ
    "屋久島はどこにありますか？": ("島.pdf", {"page_end": 2, "ocr": False}),
    "琵琶湖はどこにありますか？": ("スキャン.png", {"location": "1 ページ", "ocr": True}),
    "法隆寺はどこにありますか？": ("縦書き.pdf", {"location": "1 ページ", "ocr": True}),
}


def _first(question: str) -> dict[str, Any]:
    status, out, err = run("search", question, "--json", "-k", "1", "--mode", "keyword")
    assert status == 0, err
    hits: list[dict[str, Any]] = json.loads(out)
    assert hits, f"{question}: nothing found"
    return hits[0]


def test_every_format_is_stored_and_unsupported_files_are_named(ingested: dict[str, Any]) -> None:
    statuses = {f["source"]: (f["status"], f["message"]) for f in ingested["files"]}
    assert statuses.pop("setup.exe") == ("skipped", "対応していない形式（.exe）")
    assert statuses.pop("~$出張規程.docx") == ("skipped", "Office が開いている間だけ置く一時ファイル（~$）")
    assert {source: status for source, (status, _) in statuses.items()} == dict.fromkeys(
        [source for source, _ in QUESTIONS.values()], "added"
    ), statuses
    assert ingested["status"] == 0, ingested["err"]
    notes = {f["source"]: f["notes"] for f in ingested["files"]}
    assert any("LibreOffice" in note for note in notes["古い/休暇規程.doc"])


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_a_fact_only_one_file_holds_is_found_first_with_its_place(ingested: dict[str, Any], question: str) -> None:
    source, expected = QUESTIONS[question]
    hit = ingested["hits"][question]
    assert hit["source"] == source, hit
    assert {key: hit[key] for key in expected} == expected, hit


def test_rows_and_slides_are_located(ingested: dict[str, Any]) -> None:
    sheet = ingested["hits"]["ドリアンの単価は？"]
    assert sheet["row"] <= 3 <= sheet["row_end"], sheet  # the header is row 1, ドリアン row 3
    assert sheet["location"].startswith("シート 青果 ・ "), sheet
    assert "品目: ドリアン" in sheet["text"], sheet
    listed = ingested["hits"]["鈴木花子の内線番号は？"]
    assert listed["row"] <= 3 <= listed["row_end"], listed
    assert "内線: 4455" in listed["text"], listed
    slide = ingested["hits"]["新潟支店の売上はどうでしたか？"]
    assert slide["slide"] <= 2 <= slide["slide_end"], slide
    assert slide["location"] in ("スライド 2", "スライド 1–2"), slide


def test_navigation_is_left_out_and_a_page_header_is_kept_once(ingested: dict[str, Any]) -> None:
    texts = [hit["text"] for hit in ingested["boilerplate"]]
    assert not any("お問い合わせ" in text for text in texts), texts
    assert sum(text.count("社外秘") for text in texts) == 1, texts
