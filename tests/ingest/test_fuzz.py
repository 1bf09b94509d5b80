"""Fuzzing (hypothesis): any bytes, damaged PDFs, corrupted text and ZIPs end in a document or an IngestError, soon.

Each case goes through ``outcome``, which allows only those two endings and stops a case that runs
for more than ``HANG_SECONDS``. The number of cases per format is counted in ``CASES`` and written as
a test-suite property (seen in ``--junitxml`` output); nothing is printed.
"""

from __future__ import annotations

import functools
import io
import os
import signal
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.errors import IngestError, PdfError
from ingest.limits import DEFAULT_LIMITS, check_zip
from ingest.loaders import FORMATS, LoadedFile, content_hash, load_bytes
from testkit.documents import SENTENCES, make_pdf

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


def outcome(kind: str, name: str, data: bytes) -> LoadedFile | IngestError:
    """Read ``data`` as ``name``: a LoadedFile or an IngestError with a message naming the file; anything else fails."""
    CASES[kind] += 1
    with hang_guard(HANG_SECONDS):
        try:
            loaded = load_bytes(name, data)
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


@given(st.binary(max_size=4096), st.sampled_from([b"", b"%PDF-1.7\n", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<"]))
@FUZZ
def test_any_bytes_as_a_pdf(data: bytes, header: bytes) -> None:
    outcome("pdf", "何か.pdf", header + data)


@given(PDFS.flatmap(flipped))
@FUZZ
def test_pdf_with_flipped_bytes(data: bytes) -> None:
    outcome("pdf", "反転.pdf", data)


@given(PDFS.flatmap(truncated))
@FUZZ
def test_pdf_cut_off_anywhere(data: bytes) -> None:
    outcome("pdf", "途中まで.pdf", data)


@given(PDFS.flatmap(lambda base: spliced(base, PDF_TOKENS)))
@settings(FUZZ, max_examples=300)
def test_pdf_with_chunks_inserted_or_deleted(data: bytes) -> None:
    outcome("pdf", "継ぎはぎ.pdf", data)


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
    damage = draw(st.sampled_from(["none", "flip", "truncate", "splice"]))
    if damage == "flip":
        return draw(flipped(data))
    if damage == "truncate":
        return draw(truncated(data))
    if damage == "splice":
        return draw(spliced(data, st.sampled_from([b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\x82", b"\x8e", b"\r\n"])))
    return data


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
