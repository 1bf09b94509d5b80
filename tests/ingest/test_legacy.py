"""Legacy Office files: .doc and .xls converted by LibreOffice, Japanese text intact, and a clear error without it."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest

from ingest import legacy
from ingest.errors import FormatError, MissingToolError
from ingest.legacy import convert_legacy, libreoffice
from ingest.limits import Limits
from testkit.legacy import require_libreoffice, save_as
from testkit.office import make_docx, make_xlsx

LIMITS = Limits()


@pytest.mark.ocr
def test_a_doc_comes_back_as_a_docx_with_its_japanese_text() -> None:
    import docx

    soffice = require_libreoffice()
    old = save_as(make_docx(), ".docx", "doc", soffice)
    assert old.startswith(b"\xd0\xcf\x11\xe0")  # an OLE2 compound file, as Word 97-2003 writes

    name, data = convert_legacy("報告書.doc", old, LIMITS)

    assert name == "報告書.docx"
    document = docx.Document(io.BytesIO(data))
    paragraphs = [paragraph.text for paragraph in document.paragraphs]
    assert "第2章 申請" in paragraphs
    assert any(text.startswith("申請書は総務課に提出してください。") for text in paragraphs)


@pytest.mark.ocr
def test_an_xls_comes_back_as_an_xlsx_with_its_sheets() -> None:
    import openpyxl

    soffice = require_libreoffice()
    old = save_as(make_xlsx(), ".xlsx", "xls", soffice)

    name, data = convert_legacy("売上表.XLS", old, LIMITS)

    assert name == "売上表.xlsx"
    # LibreOffice writes booleans as formulas (=TRUE()) with their values cached: read those, as a reader must
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    assert workbook.sheetnames == ["売上", "申請書"]
    sales = list(workbook["売上"].iter_rows(values_only=True))
    assert sales[0] == ("日付", "商品", "金額", "確認")
    assert sales[1][1:] == ("りんご", 120, True)
    assert "経費申請書" in next(workbook["申請書"].iter_rows(values_only=True))


@pytest.mark.ocr
def test_a_file_libreoffice_cannot_read_is_a_format_error_naming_the_file() -> None:
    require_libreoffice()
    # LibreOffice reads most bytes as text, but not a compound file's header with nothing in it
    broken = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    with pytest.raises(FormatError, match=r"壊れた\.doc.*docx.*source file could not be loaded") as raised:
        convert_legacy("壊れた.doc", broken, LIMITS)
    assert "javaldx" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("報告書.doc", "libreoffice-writer-nogui"),
        ("売上.xls", "libreoffice-calc-nogui"),
        ("提案.ppt", "libreoffice-impress-nogui"),
    ],
)
def test_without_libreoffice_the_error_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, package: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no programs in it
    assert libreoffice() is None
    with pytest.raises(MissingToolError, match=package) as raised:
        convert_legacy(name, b"\xd0\xcf\x11\xe0", LIMITS)
    assert name in str(raised.value)
    assert "追加していません" in str(raised.value)


def test_a_conversion_past_the_files_time_is_stopped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a stand-in for soffice that starts a child of its own and hangs, as soffice.bin under oosplash
    fake = tmp_path / "soffice"
    fake.write_text("#!/bin/sh\nsleep 60 &\nsleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    started = time.perf_counter()
    with pytest.raises(FormatError, match="1 秒以内に終わりませんでした"):
        convert_legacy("遅い.doc", b"\xd0\xcf\x11\xe0", Limits(seconds_per_file=1), seconds=120)
    assert time.perf_counter() - started < 10  # the whole group is killed: nothing holds its output open


def test_the_uploaded_name_never_reaches_the_command_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a stand-in for soffice that records its arguments and writes nothing
    fake = tmp_path / "soffice"
    log = tmp_path / "arguments"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\necho "Error: source file could not be loaded" >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(FormatError, match="source file could not be loaded"):
        convert_legacy("--outdir=; rm -rf ~ .doc", b"x", LIMITS)
    arguments = log.read_text().splitlines()
    assert arguments[-1].endswith("/input.doc")
    assert not any("rm -rf" in argument for argument in arguments)
    assert any(argument.startswith("-env:UserInstallation=file:///") for argument in arguments)


@pytest.mark.parametrize(("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_a_missing_program_skips_the_test_except_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="soffice or libreoffice is not installed"):
        require_libreoffice()


def test_other_files_are_a_callers_bug() -> None:
    with pytest.raises(ValueError, match="legacy"):
        convert_legacy("報告書.docx", b"", LIMITS)


def test_the_program_is_found_on_path() -> None:
    assert libreoffice() == (shutil.which("soffice") or shutil.which("libreoffice"))
    assert legacy.LEGACY_SUFFIXES == (".doc", ".xls", ".ppt")
