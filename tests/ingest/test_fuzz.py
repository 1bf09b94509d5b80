"""Fuzzing (hypothesis): any bytes, damaged PDFs, text, ZIPs, Office files, HTML, CSV and images end in a document or an IngestError, soon.

Each case goes through ``outcome``, which allows only those two endings and stops a case that runs
for more than ``HANG_SECONDS``. The number of cases per format is counted in ``CASES`` and written as
a test-suite property (seen in ``--junitxml`` output); nothing is printed.
"""

from __future__ import annotations

import copy
import functools
import io
import os
import signal
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import get_args

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from ingest.errors import IngestError, MissingToolError, PdfError
from ingest.limits import DEFAULT_LIMITS, check_zip
from ingest.loaders import FORMATS, LoadedFile, content_hash, load_bytes
from ingest.ocr import OcrOptions
from testkit.documents import SENTENCES, make_pdf
from testkit.office import make_docx, make_pptx, make_xlsx
from testkit.scans import requires_ocr
from testkit.web import Declaration, make_csv, make_html

HANG_SECONDS = 20
CASES: Counter[str] = Counter()
# A case may take a while on a busy machine; a hang is caught by ``outcome``'s alarm, not by this.
# Random cases on a developer's machine, the same cases on CI (CI=true): a new finding is a developer's
# to fix, never a reason for a submission to fail by chance.
FUZZ = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=150,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(BaseException):
    """A case ran past HANG_SECONDS; a BaseException, so no ``except Exception`` in a loader can hide it."""


@contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    if not hasattr(signal, "setitimer"):  # Windows: no alarm; the deadline still catches a slow case
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Hang(f"more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(kind: str, name: str, data: bytes, ocr: OcrOptions | None = None) -> LoadedFile | IngestError:
    """Read ``data`` as ``name``: a LoadedFile or an IngestError with a message naming the file; anything else fails."""
    CASES[kind] += 1
    with hang_guard(HANG_SECONDS):
        try:
            loaded = load_bytes(name, data, ocr=ocr)
        except IngestError as error:
            refused = error
        else:
            assert loaded.source == name
            assert loaded.content_hash == content_hash(data)
            assert loaded.sections
            return loaded
    assert str(refused).startswith(f"{name}: "), str(refused)
    return refused


@pytest.fixture(scope="module", autouse=True)
def _count_cases(record_testsuite_property: Callable[[str, object], None]) -> Iterator[None]:
    yield
    for kind, count in sorted(CASES.items()):
        record_testsuite_property(f"fuzz_cases_{kind}", count)


# Valid Japanese PDFs to damage: two pages across, vertical, and encrypted with an empty password.


@functools.cache
def sample_pdf(kind: str) -> bytes:
    if kind == "縦書き":
        return make_pdf([list(SENTENCES[:2])], vertical=True)
    if kind == "暗号":
        return make_pdf([[SENTENCES[3]]], password="")
    return make_pdf([list(SENTENCES[:3]), list(SENTENCES[3:])])


# Damaged PDFs are read with OCR on, as by default, so that pages that lost their text reach pdfium and
# Tesseract too; in English at 72 dpi, as the default (Japanese at 300 dpi) takes seconds a page.
PDF_OCR = OcrOptions(langs="eng", dpi=72)
PDFS = st.sampled_from(["横書き", "縦書き", "暗号"]).map(sample_pdf)
# bytes that mean something to a PDF parser, to insert where random bytes would rarely reach
PDF_TOKENS = st.sampled_from(
    b"0|-1|999999999|1e308|1 0 R|<<|>>|[[[[|]|(|\\|obj|endobj|stream\n|endstream|xref|trailer|%%EOF|/Length 0"
    b"|/Count 1000000000|/Kids [|/Type /Pages|/Filter /FlateDecode|/W [0 [1 2]]"
    b"|/DecodeParms << /Predictor 12 /Columns 999999 >>".split(b"|")
)


@st.composite
def flipped(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), min_size=1)):
        data[position] = value
    return bytes(data)


@st.composite
def truncated(draw: st.DrawFn, base: bytes) -> bytes:
    return base[: draw(st.integers(0, len(base) - 1))]


@st.composite
def spliced(draw: st.DrawFn, base: bytes, tokens: st.SearchStrategy[bytes]) -> bytes:
    """Chunks inserted (random bytes, meaningful tokens, or a copy of another part) or deleted, a few times."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "token", "copy", "delete"]))
        if action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=256))
        elif action == "token":
            data[at:at] = draw(tokens)
        elif action == "copy":
            start = draw(st.integers(0, len(data)))
            data[at:at] = data[start : start + draw(st.integers(1, 2048))]
        else:
            del data[at : at + draw(st.integers(1, 1024))]
    return bytes(data)


@st.composite
def damaged(draw: st.DrawFn, base: bytes, tokens: st.SearchStrategy[bytes]) -> bytes:
    """``base`` as it is, with bytes flipped, cut off, or with chunks (``tokens`` among them) inserted or deleted."""
    damage = draw(st.sampled_from(["none", "flip", "truncate", "splice"]))
    if damage == "flip":
        return draw(flipped(base))
    if damage == "truncate":
        return draw(truncated(base))
    if damage == "splice":
        return draw(spliced(base, tokens))
    return base


@given(st.binary(max_size=4096), st.sampled_from([b"", b"%PDF-1.7\n", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<"]))
@FUZZ
def test_any_bytes_as_a_pdf(data: bytes, header: bytes) -> None:
    outcome("pdf", "何か.pdf", header + data, PDF_OCR)


@pytest.mark.slow
@given(PDFS.flatmap(flipped))
@FUZZ
def test_pdf_with_flipped_bytes(data: bytes) -> None:
    outcome("pdf", "反転.pdf", data, PDF_OCR)


@given(PDFS.flatmap(truncated))
@FUZZ
def test_pdf_cut_off_anywhere(data: bytes) -> None:
    outcome("pdf", "途中まで.pdf", data, PDF_OCR)


@pytest.mark.slow
@given(PDFS.flatmap(lambda base: spliced(base, PDF_TOKENS)))
@settings(FUZZ, max_examples=300)
def test_pdf_with_chunks_inserted_or_deleted(data: bytes) -> None:
    outcome("pdf", "継ぎはぎ.pdf", data, PDF_OCR)


def replaced(old: bytes, new: bytes) -> Callable[[], bytes]:
    return lambda: sample_pdf("横書き").replace(old, new, 1)


def nested_arrays() -> bytes:
    """A page whose content stream holds arrays nested 1,000 deep."""
    from reportlab.pdfgen import canvas

    sample_pdf("横書き")  # registers the font
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pageCompression=0)
    pdf.setFont("HeiseiKakuGo-W5", 11)
    pdf.drawString(56, 780, SENTENCES[0])
    pdf.addLiteral("[" * 1000 + "]" * 1000 + " pop")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


# Inputs that once raised what the PDF loader did not catch; each is now a PdfError.
ESCAPED = [
    pytest.param(replaced(b"/ASCII85Decode", b"/ASCII85DecodX"), "NotImplementedError", id="壊れたフィルター名"),
    pytest.param(
        replaced(b"/ASCII85Decode /FlateDecode", b"/ASCII85Decode /Fl         "),
        "DeprecationError",
        id="廃止された略称",
    ),
    pytest.param(replaced(b"/W [ 1 [", b"/W [ 9999999999 ["), "OverflowError", id="巨大な文字コード"),
    pytest.param(nested_arrays, "RecursionError", id="千段の入れ子"),
]


@pytest.mark.parametrize(("make", "cause"), ESCAPED)
def test_inputs_that_once_escaped_the_pdf_loader(make: Callable[[], bytes], cause: str) -> None:
    error = outcome("pdf", "回帰.pdf", make())
    assert isinstance(error, PdfError)
    assert str(error).startswith(f"回帰.pdf: PDF を読み取れません（{cause}: ")
    assert str(error).endswith("元のファイルから PDF を作り直してください。")


# Text: Japanese in every encoding the loader detects, then corrupted.

JAPANESE = st.lists(
    st.one_of(
        st.sampled_from(SENTENCES),
        st.sampled_from(list("あいうえおかきくけこアイウエオ漢字日本語東京、。「」！？ＡＢＣ１２３abc123 \n\r\t")),
    ),
    min_size=1,
    max_size=40,
).map("".join)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "cp932", "euc_jp", "utf-16", "utf-16-le", "utf-16-be"])
TEXT_SUFFIXES = tuple(s for f in FORMATS if f.kind in ("text", "markdown") for s in f.suffixes)
TEXT_NAMES = st.sampled_from(TEXT_SUFFIXES).map(lambda suffix: "文書" + suffix)


@st.composite
def corrupted_text(draw: st.DrawFn) -> bytes:
    data = draw(JAPANESE).encode(draw(ENCODINGS))
    return draw(damaged(data, st.sampled_from([b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\x82", b"\x8e", b"\r\n"])))


@given(st.binary(max_size=4096), TEXT_NAMES)
@FUZZ
def test_any_bytes_as_text(data: bytes, name: str) -> None:
    outcome("text", name, data)


@given(corrupted_text(), TEXT_NAMES)
@settings(FUZZ, max_examples=400)
def test_japanese_text_in_any_encoding_corrupted(data: bytes, name: str) -> None:
    outcome("text", name, data)


@given(JAPANESE, ENCODINGS)
@FUZZ
@example("吾輩は猫である。", "euc_jp")
def test_intact_japanese_text_is_read(text: str, encoding: str) -> None:
    loaded = outcome("text", "無傷.txt", text.encode(encoding))
    if text.strip():  # blank text is refused as empty; any other is read, whatever the encoding
        assert isinstance(loaded, LoadedFile)


# ZIP-based files: only the central directory is read, and that must not fail in any other way.


@functools.cache
def sample_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b'<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", f"<w:document><w:t>{''.join(SENTENCES)}</w:t></w:document>".encode())
    return buffer.getvalue()


ZIP_TOKENS = st.sampled_from([b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"\xff" * 8])


def zip_outcome(data: bytes) -> None:
    CASES["zip"] += 1
    with hang_guard(HANG_SECONDS):
        try:
            infos = check_zip("資料.docx", data, DEFAULT_LIMITS)
        except IngestError as error:
            refused = error
        else:
            assert len(infos) <= DEFAULT_LIMITS.max_zip_entries
            return
    assert str(refused).startswith("資料.docx: "), str(refused)


@given(st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(lambda data: b"PK\x03\x04" + data)))
@FUZZ
def test_any_bytes_as_a_zip(data: bytes) -> None:
    zip_outcome(data)


@given(
    st.one_of(
        st.builds(sample_zip).flatmap(flipped),
        st.builds(sample_zip).flatmap(truncated),
        st.builds(sample_zip).flatmap(lambda base: spliced(base, ZIP_TOKENS)),
    )
)
@example(
    # a central-directory entry that asks for ZIP version 6.4: zipfile raises NotImplementedError
    bytes.fromhex(
        "504b0304140000000800917b7b5dee4758661f0000001d000000130000005b436f6e74656e745f54797065735d2e786d6c"
        "b3b1afc8cd51284b2d2ace cccfb35532d43350b2b7b309a92c482dd6b70300"
        "504b01021403400000000800917b7b5dee4758661f0000001d00000013000000000000000000000080010000"
        "00005b436f6e74656e745f54797065735d2e786d6c"
        "504b0506000000000100010041000000500000000000".replace(" ", "")
    )
)
@settings(FUZZ, max_examples=300)
def test_damaged_zip(data: bytes) -> None:
    zip_outcome(data)


# Office files: the whole file damaged, or a valid ZIP whose one part is damaged, so that the damage
# reaches the XML parsers and the readers behind the ZIP checks.

OFFICE_NAMES = {"docx": "報告書.docx", "xlsx": "集計表.xlsx", "pptx": "発表資料.pptx"}
# Parts each reader opens: the main story, the parts it refers to, relationships and content types.
OFFICE_PARTS = {
    "docx": (
        "word/document.xml",
        "word/styles.xml",
        "word/footnotes.xml",
        "word/header1.xml",
        "word/_rels/document.xml.rels",
        "[Content_Types].xml",
        "_rels/.rels",
    ),
    "xlsx": (
        "xl/worksheets/sheet1.xml",
        "xl/worksheets/sheet2.xml",
        "xl/workbook.xml",
        "xl/styles.xml",
        "xl/_rels/workbook.xml.rels",
        "[Content_Types].xml",
    ),
    "pptx": (
        "ppt/slides/slide2.xml",
        "ppt/slides/slide1.xml",
        "ppt/slides/_rels/slide2.xml.rels",
        "ppt/notesSlides/notesSlide1.xml",
        "ppt/presentation.xml",
        "[Content_Types].xml",
    ),
}
# Markup that means something to an XML parser or to the Office libraries reading the parsed tree.
XML_TOKENS = st.sampled_from(
    [
        b"<",
        b">",
        b"</",
        b"/>",
        b"&",
        b"&#0;",
        b"&#x110000;",
        b"&undefined;",
        b"<![CDATA[",
        b"]]>",
        b"<!--",
        b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        b'<?xml version="1.0" encoding="utf-16"?>',
        b"\x00",
        b"\xff\xfe",
        b' r:id="rId999"',
        b' val="-1"',
        b' w:val="99999999999999999999"',
        b' ref="A1:XFD1048576"',
        b' r="XFD1048577"',
        b' t="d"',
        b' t="n"',
        b' gridSpan="0"',
        b' x="-9223372036854775809"',
        b"<w:tbl><w:tr><w:tc>",
        b'<c r="A1" t="s"><v>999</v></c>',
        b"<p:sp><p:txBody>",
        b'<sheet name="x" sheetId="9" r:id="rId1"/>',
    ]
)


@functools.cache
def sample_office(kind: str) -> bytes:
    return {"docx": make_docx, "xlsx": make_xlsx, "pptx": make_pptx}[kind]()


@functools.cache
def office_part(kind: str, part: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(sample_office(kind))) as archive:
        return archive.read(part)


def with_part(kind: str, part: str, content: bytes) -> bytes:
    """The sample file of ``kind`` with ``part`` replaced by ``content``: a valid ZIP, the damage inside it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(sample_office(kind))) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            data = content if info.filename == part else source.read(info)
            target.writestr(info.filename, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


# Values that well-formed parts may hold and their readers may not expect.
ODD_VALUES = st.sampled_from(
    [
        "",
        "-1",
        "0",
        "99999999999999999999",
        "1e308",
        "nan",
        "A0",
        "XFD1048577",
        "A1:XFD1048576",
        "rId999",
        "x",
        "\u3000",
    ]
)


@st.composite
def reshaped_xml(draw: st.DrawFn, base: bytes) -> bytes:
    """A part still well-formed, its elements removed, copied elsewhere, or given odd attributes and text."""
    root = etree.fromstring(base)
    elements = [element for element in root.iter() if isinstance(element.tag, str)]
    for _ in range(draw(st.integers(1, 4))):
        element = draw(st.sampled_from(elements))
        action = draw(st.sampled_from(["attribute", "text", "remove", "copy"]))
        if action == "attribute" and element.attrib:
            element.set(draw(st.sampled_from(sorted(element.attrib))), draw(ODD_VALUES))
        elif action == "text":
            element.text = draw(ODD_VALUES)
        elif action == "remove" and element.getparent() is not None:
            element.getparent().remove(element)
        elif action == "copy":
            draw(st.sampled_from(elements)).append(copy.deepcopy(element))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def damaged_xml(base: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(reshaped_xml(base), damaged(base, XML_TOKENS), st.binary(max_size=1024))


@st.composite
def office_with_damaged_part(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(OFFICE_PARTS)))
    part = draw(st.sampled_from(OFFICE_PARTS[kind]))
    return kind, with_part(kind, part, draw(damaged_xml(office_part(kind, part))))


OFFICE_KINDS = st.sampled_from(sorted(OFFICE_NAMES))


@given(OFFICE_KINDS.flatmap(lambda kind: st.tuples(st.just(kind), damaged(sample_office(kind), ZIP_TOKENS))))
@FUZZ
def test_office_file_damaged_anywhere(case: tuple[str, bytes]) -> None:
    kind, data = case
    outcome(kind, OFFICE_NAMES[kind], data)


@pytest.mark.slow
@given(office_with_damaged_part())
@settings(FUZZ, max_examples=300)
def test_office_file_with_a_damaged_part(case: tuple[str, bytes]) -> None:
    kind, data = case
    outcome(kind, OFFICE_NAMES[kind], data)


# HTML: pages in Japanese encodings, declaring charsets that may lie, then damaged.

HTML_BODIES = st.lists(
    st.sampled_from(
        [
            "<h1>経費の手引き</h1>",
            "<h2>申請</h2><p>申請書は総務課に提出してください。</p>",
            "<main><article><h3>期限</h3><p>毎月末日まで</p></article></main>",
            "<table><thead><tr><th>項目</th><th colspan=2>金額</th></tr></thead>"
            "<tr><td rowspan=3>交通費</td><td>1,200円</td></tr><tr><td rowspan=0>宿泊費</td></tr></table>",
            "<ul><li>一つ目<li>二つ目</ul>",
            "<pre>  整形済み\n  テキスト</pre>",
            "<ruby>漢字<rp>(</rp><rt>かんじ</rt><rp>)</rp></ruby>",
            "<nav>メニュー</nav><script>var x = '<p>';</script>",
            "<div hidden>隠し</div><div style='display:none'>見えない</div>",
            "<form><p>入力欄</p></form>",
        ]
    ),
    min_size=1,
    max_size=6,
).map("".join)
# Labels a page may declare: right, wrong, unknown, and Python codecs that no browser knows.
HTML_LABELS = st.sampled_from(
    [
        None,
        "utf-8",
        "Shift_JIS",
        "euc-jp",
        "utf-16",
        "iso-8859-1",
        "iso-2022-jp",
        "utf-7",
        "cp037",
        "x-user-defined",
        "no-such-charset",
        "idna",
        "undefined",
        "rot13",
        "base64",
        "unicode_escape",
    ]
)
HTML_TOKENS = st.sampled_from(
    [
        b"<",
        b"</",
        b"<table>",
        b"<tr>",
        b"<td rowspan=65534 colspan=1000>",
        b"<th>",
        b"</table>",
        b"<pre>",
        b"<h1>",
        b"<br>",
        b"<!--",
        b"<![CDATA[",
        b"<?xml encoding='utf-16'?>",
        b"<meta charset=undefined>",
        b"<meta charset=utf-7>",
        b"<script>",
        b"<main>",
        b"&#0;",
        b"&#xD800;",
        b"&#x110000;",
        b"\x00",
        b"\xff\xfe",
        b"\xef\xbb\xbf",
        b"\x82",
        b"+2ADYAA-",
    ]
)


@st.composite
def html_page(draw: st.DrawFn) -> bytes:
    encoding = draw(st.sampled_from(["utf-8", "cp932", "euc_jp", "utf-16"]))
    label = draw(HTML_LABELS)
    declare = draw(st.sampled_from(get_args(Declaration)))
    title = draw(st.sampled_from([None, "", "会社案内"]))
    page = make_html(draw(HTML_BODIES), title=title, encoding=encoding, declare=declare, label=label)
    return draw(damaged(page, HTML_TOKENS))


@given(st.binary(max_size=4096), st.sampled_from([b"", b"<!DOCTYPE html>", b"<meta charset=shift_jis>", b"\xff\xfe"]))
@FUZZ
def test_any_bytes_as_html(data: bytes, head: bytes) -> None:
    outcome("html", "何か.html", head + data)


@given(html_page())
@settings(FUZZ, max_examples=300)
# Pages that once escaped the HTML reader: a charset whose Python codec raises UnicodeError, one that
# warns of an invalid escape, and a control character that lxml refused once <head> was dropped.
@example(make_html("<h1>経費の手引き</h1>", label="undefined"))
@example(make_html("<p>C:\\Windows\\</p>", label="unicode_escape"))
@example(b"\x01" + make_html("<h1>経費の手引き</h1>", title=""))
def test_html_page_with_lying_charset_and_damaged_markup(data: bytes) -> None:
    outcome("html", "ページ.htm", data)


# CSV: Excel's exports in Japanese encodings, then quotes left open, NULs, stray delimiters and long fields.

CSV_CELLS = st.one_of(
    st.sampled_from(["日付", "商品", "金額", "りんご", "1,200", '"引用"', "改行\nあり", "", " "]),
    st.text(alphabet='あア漢,\t;"\r\n\x00 a1', max_size=12),
)
CSV_TOKENS = st.sampled_from([b'"', b'""', b'"""', b"\x00", b"\r", b"\n", b",", b"\t", b";", b"\x82", b"x" * 100_000])


@st.composite
def csv_file(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(st.lists(CSV_CELLS, min_size=1, max_size=5), min_size=1, max_size=8))
    encoding = draw(st.sampled_from(["cp932", "utf-8", "utf-8-sig", "euc_jp", "utf-16"]))
    delimiter = draw(st.sampled_from([",", "\t", ";"]))
    try:
        data = make_csv(rows, encoding=encoding, delimiter=delimiter)
    except UnicodeEncodeError:
        data = make_csv(rows, encoding="utf-8", delimiter=delimiter)
    return draw(damaged(data, CSV_TOKENS))


CSV_NAMES = st.sampled_from(["表.csv", "表.tsv"])


@given(st.binary(max_size=4096), CSV_NAMES)
@FUZZ
def test_any_bytes_as_csv(data: bytes, name: str) -> None:
    outcome("csv", name, data)


@given(csv_file(), CSV_NAMES)
@settings(FUZZ, max_examples=300)
# 64 KiB that csv.Sniffer took over a minute to look at, when it was given the whole sample
@example(b',"' * 32768, "表.csv")
@pytest.mark.slow
def test_csv_with_broken_quotes_nuls_and_long_fields(data: bytes, name: str) -> None:
    outcome("csv", name, data)


# Images: a tiny blank PNG, damaged; few cases, as each that Pillow decodes runs Tesseract (on so small
# an image, in well under a second).

PNG_TOKENS = st.sampled_from(
    [
        b"IHDR",
        b"IDAT",
        b"IEND",
        b"PLTE",
        b"tRNS",
        b"acTL",
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x00",
        b"\x7f\xff\xff\xff",
    ]
)


@functools.cache
def sample_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (64, 32), 255).save(buffer, format="PNG")
    return buffer.getvalue()


@requires_ocr
@given(st.builds(sample_png).flatmap(lambda base: damaged(base, PNG_TOKENS)))
@settings(FUZZ, max_examples=50)
def test_damaged_image(data: bytes) -> None:
    result = outcome("image", "スキャン.png", data)
    assert not isinstance(result, MissingToolError), str(result)
