"""Reading speed per file format: one file of a realistic size per format, read in-process by ``load_bytes``.

    .venv/bin/python bench/formats_speed.py [--formats pdf docx ...] [--repeat 3] [--max-tokens 128]
        [--overlap 32] [--no-chunk]

Builds in a temporary folder, from JSQuAD contexts (``bench/data.py``; the test sentences of
``testkit/documents.py`` when JGLUE is not there), each numbered where it repeats so that no two
passages are the same: a PDF of 20 pages of text (``make_pdf``); a Word file of 200 paragraphs under
10 chapters of 4 sections and a table of 100 rows; an Excel sheet of 5,000 rows of 5 columns; a
PowerPoint file of 30 slides (a table on every fifth, notes on each); an HTML page of 200 KB with its
navigation, script and footer; a CSV of 5,000 rows in CP932 as Excel writes it; a text file of 1 MB
and a Markdown file of 200 KB (UTF-8); 3 A4 pages scanned at 300 dpi, 横書き, as an image-only PDF;
one A4 page at 300 dpi, 縦書き, as a PNG (``testkit/scans.py``); and the Word file saved as .doc by
LibreOffice (``testkit/legacy.py``).

Times ``ingest.loaders.load_bytes(name, data)`` on each (reading only, in this process, no isolation
child): the median of ``--repeat`` runs, one run for the files read by OCR or converted by LibreOffice.
Then, unless ``--no-chunk``, the median seconds of normalising and chunking what was read
(``join_sections`` + ``chunk_text``), tokens counted as characters (``len(text) + 2``) so that no model is
needed. Prints per format: file size, characters read, sections, seconds to read, characters per second,
pages (PDF, OCR) or rows (Excel, CSV) per second, then the chunking seconds and chunks.
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ocr_accuracy import A4_300DPI, FONT_PX, paragraphs  # noqa: E402
from ingest.chunking import Chunk, chunk_text  # noqa: E402
from ingest.loaders import LoadedFile, load_bytes  # noqa: E402
from ingest.normalize import join_sections  # noqa: E402
from testkit.documents import make_pdf  # noqa: E402
from testkit.legacy import save_as  # noqa: E402
from testkit.scans import missing_ocr_tools, scan_image, scanned_pdf  # noqa: E402
from testkit.web import make_csv, make_html  # noqa: E402

KB = 1_000
MB = 1_000_000
T = TypeVar("T")
DEPARTMENTS = ("総務部", "経理部", "営業部", "開発部", "人事部", "法務部")


@dataclass(frozen=True)
class Sample:
    """A built file: the name given to ``load_bytes`` (its suffix picks the reader) and its bytes.

    ``unit``/``count``: what it holds to count speed in besides characters ("pages", "rows"; "" for none).
    ``once``: read it one time only (OCR, LibreOffice).
    """

    name: str
    data: bytes
    unit: str = ""
    count: int = 0
    once: bool = False


class Prose:
    """Japanese passages without end: JSQuAD contexts in order, numbered from the first that repeats."""

    def __init__(self) -> None:
        base = paragraphs()
        numbered = len(set(base)) < len(base)  # the test sentences, repeated, when JGLUE is not there
        self._passages = (
            f"（{round_ * len(base) + i + 1}）{p}" if numbered or round_ else p
            for round_ in itertools.count()
            for i, p in enumerate(base)
        )
        self._sentences: Iterator[str] = iter(())

    def paragraph(self) -> str:
        """The next passage."""
        return next(self._passages)

    def sentence(self) -> str:
        """The next sentence (cut at 。) of the passages."""
        for sentence in self._sentences:
            return sentence
        self._sentences = iter(re.findall(r"[^。]+。?", self.paragraph()))
        return self.sentence()

    def passages(self, chars: int) -> list[str]:
        """The next passages, at least ``chars`` characters in all."""
        taken: list[str] = []
        while sum(map(len, taken)) < chars:
            taken.append(self.paragraph())
        return taken


def pdf(prose: Prose, pages: int = 20) -> Sample:
    """A text PDF: full A4 pages of 45 lines of 42 characters."""
    lines_per_page = 45
    text = "".join(prose.passages(pages * lines_per_page * 42))
    lines = [text[i : i + 42] for i in range(0, len(text), 42)]
    data = make_pdf([lines[i * lines_per_page : (i + 1) * lines_per_page] for i in range(pages)])
    return Sample("report.pdf", data, "pages", pages)


def word_document(prose: Prose) -> bytes:
    """A Word document: a title, 10 chapters of 4 sections of 5 paragraphs, and a table of 100 rows."""
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "社内資料"
    document.add_heading("業務資料集", level=0)
    for chapter in range(1, 11):
        document.add_heading(f"第{chapter}章 {prose.sentence()[:15]}", level=1)
        for section in range(1, 5):
            document.add_heading(f"{chapter}.{section} {prose.sentence()[:15]}", level=2)
            for _ in range(5):
                document.add_paragraph(prose.paragraph())
    document.add_heading("付録 一覧表", level=1)
    table = document.add_table(rows=101, cols=4)
    for column, text in enumerate(("番号", "部署", "金額", "内容")):
        table.cell(0, column).text = text
    for row in range(1, 101):
        cells = (str(row), DEPARTMENTS[row % len(DEPARTMENTS)], f"{row * 1_370:,}円", prose.sentence())
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx(prose: Prose, rows: int = 5_000) -> Sample:
    """An Excel sheet: a header and ``rows`` rows of 番号, 日付, 部署, 金額, 内容."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "台帳"
    sheet.append(["番号", "日付", "部署", "金額", "内容"])
    start = datetime.date(2020, 4, 1)
    for row in range(1, rows + 1):
        day = start + datetime.timedelta(days=row % 1_500)
        sheet.append([row, day, DEPARTMENTS[row % len(DEPARTMENTS)], row * 137 % 100_000, prose.sentence()])
    buffer = io.BytesIO()
    book.save(buffer)
    return Sample("ledger.xlsx", buffer.getvalue(), "rows", rows)


def pptx(prose: Prose, slides: int = 30) -> Sample:
    """A presentation: a title and four bullets per slide, a table of 4 rows on every fifth, notes on each."""
    import pptx as python_pptx
    from pptx.util import Inches

    presentation = python_pptx.Presentation()
    for number in range(1, slides + 1):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        assert slide.shapes.title is not None
        slide.shapes.title.text = f"{number}. {prose.sentence()[:20]}"
        body = slide.placeholders[1].text_frame
        body.text = prose.sentence()
        for _ in range(3):
            body.add_paragraph().text = prose.sentence()
        if number % 5 == 0:
            table = slide.shapes.add_table(4, 3, Inches(1), Inches(5), Inches(8), Inches(1.5)).table
            for row in range(4):
                cells = (
                    ("部署", "件数", "備考") if row == 0 else (DEPARTMENTS[row], str(row * number), prose.sentence())
                )
                for column, text in enumerate(cells):
                    table.cell(row, column).text = text
        notes = slide.notes_slide.notes_text_frame
        assert notes is not None
        notes.text = prose.paragraph()
    buffer = io.BytesIO()
    presentation.save(buffer)
    return Sample("slides.pptx", buffer.getvalue(), "slides", slides)


def html(prose: Prose, size: int = 200 * KB) -> Sample:
    """A UTF-8 page of ``size`` bytes: navigation, a script, an article of h2 sections and a footer."""
    head = "<style>body{font-family:sans-serif}</style><script>var page = {id: 1};</script>"
    nav = "<nav><ul>" + "".join(f'<li><a href="/p{i}">{DEPARTMENTS[i]}</a></li>' for i in range(6)) + "</ul></nav>"
    footer = "<footer><p>Copyright 株式会社サンプル</p></footer>"
    parts = [nav, "<main><article><h1>社内報 アーカイブ</h1>"]
    length = sum(len(p.encode()) for p in (head, nav, footer))
    for number in itertools.count(1):
        section = f"<h2>{number}. {prose.sentence()[:20]}</h2>" + "".join(
            f"<p>{prose.paragraph()}</p>" for _ in range(4)
        )
        parts.append(section)
        length += len(section.encode())
        if length >= size:
            break
    parts.append("</article></main>" + footer)
    return Sample("archive.html", make_html("\n".join(parts), title="社内報", head=head))


def csv(prose: Prose, rows: int = 5_000) -> Sample:
    """A CSV of ``rows`` rows of 5 columns in CP932 (sentences CP932 cannot write are passed over)."""

    def cp932_sentence() -> str:
        while True:
            sentence = prose.sentence()
            try:
                sentence.encode("cp932")
            except UnicodeEncodeError:
                continue
            return sentence

    records = [["番号", "日付", "部署", "金額", "内容"]]
    start = datetime.date(2020, 4, 1)
    for row in range(1, rows + 1):
        day = start + datetime.timedelta(days=row % 1_500)
        records.append(
            [str(row), day.isoformat(), DEPARTMENTS[row % len(DEPARTMENTS)], str(row * 137 % 100_000), cp932_sentence()]
        )
    return Sample("ledger.csv", make_csv(records), "rows", rows)


def sized_text(prose: Prose, size: int, heading_every: int = 0) -> str:
    """Passages in paragraphs up to ``size`` bytes of UTF-8 (cut at a character); a ``##`` heading every so many."""
    parts: list[str] = []
    length = 0
    for number in itertools.count():
        if heading_every and number % heading_every == 0:
            parts.append(f"## {number // heading_every + 1}. {prose.sentence()[:20]}")
        parts.append(prose.paragraph())
        length += len(parts[-1].encode()) + 2
        if length >= size:
            break
    return "\n\n".join(parts).encode()[:size].decode(errors="ignore")


def text(prose: Prose) -> Sample:
    """A plain text file of 1 MB."""
    return Sample("notes.txt", sized_text(prose, MB).encode())


def markdown(prose: Prose) -> Sample:
    """A Markdown file of 200 KB, a heading every five paragraphs."""
    return Sample("guide.md", ("# 手引き\n\n" + sized_text(prose, 200 * KB, heading_every=5)).encode())


def scanned(prose: Prose, pages: int = 3) -> Sample:
    """An image-only PDF of ``pages`` A4 pages at 300 dpi, about 1,200 characters each, 横書き."""
    images = [scan_image(prose.passages(1_200), size=A4_300DPI, font_px=FONT_PX) for _ in range(pages)]
    return Sample("scan.pdf", scanned_pdf(images, dpi=300), "pages", pages, once=True)


def vertical_scan(prose: Prose) -> Sample:
    """One A4 page at 300 dpi, about 1,200 characters, 縦書き, as a PNG."""
    image = scan_image(prose.passages(1_200), vertical=True, size=A4_300DPI, font_px=FONT_PX)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(300, 300))
    return Sample("scan-vertical.png", buffer.getvalue(), "pages", 1, once=True)


def docx(prose: Prose) -> Sample:
    """The Word document."""
    return Sample("handbook.docx", word_document(prose))


def doc(prose: Prose) -> Sample:
    """The Word document saved as .doc (Word 97–2003) by LibreOffice."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise LookupError("LibreOffice is not installed")
    return Sample("handbook.doc", save_as(word_document(prose), ".docx", "doc", soffice), once=True)


BUILDERS: dict[str, Callable[[Prose], Sample]] = {
    "pdf": pdf,
    "docx": docx,
    "xlsx": xlsx,
    "pptx": pptx,
    "html": html,
    "csv": csv,
    "txt": text,
    "md": markdown,
    "scan-pdf": scanned,
    "scan-png": vertical_scan,
    "doc": doc,
}
NEEDS_OCR = frozenset(("scan-pdf", "scan-png"))


def timed(work: Callable[[], T], runs: int) -> tuple[float, T]:
    """The median wall seconds of ``runs`` calls of ``work`` (at least one), and what the last returned."""
    seconds: list[float] = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def characters(piece: str) -> int:
    """A token counter without a model: a token a character, plus the two special tokens."""
    return len(piece) + 2


def chunked(loaded: LoadedFile, max_tokens: int, overlap: int) -> list[Chunk]:
    """What was read, normalised and joined, in chunks of at most ``max_tokens`` characters + 2."""
    return chunk_text(join_sections(loaded.sections), characters, max_tokens, overlap)


def size_label(size: int) -> str:
    """Bytes as KB or MB."""
    return f"{size / MB:.2f} MB" if size >= MB else f"{size / KB:.0f} KB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per file, median kept (OCR, .doc: one)")
    parser.add_argument("--max-tokens", type=int, default=128, help="chunk budget, in characters + 2")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--no-chunk", action="store_true", help="skip timing normalising and chunking")
    args = parser.parse_args()

    missing = missing_ocr_tools()
    samples: dict[str, Sample] = {}
    with tempfile.TemporaryDirectory(prefix="formats-speed-") as scratch:
        for key in args.formats:
            if key in NEEDS_OCR and missing:
                print(f"{key}: skipped ({missing})")
                continue
            try:
                sample = BUILDERS[key](Prose())
            except LookupError as error:
                print(f"{key}: skipped ({error})")
                continue
            # written out as a person would have it on disk; read back from there
            path = Path(scratch) / sample.name
            path.write_bytes(sample.data)
            samples[key] = Sample(sample.name, path.read_bytes(), sample.unit, sample.count, sample.once)

    print(
        f"load_bytes in-process, median of {args.repeat} (OCR and .doc: 1 run); chunks of ≤ {args.max_tokens} "
        f"characters + 2, overlap {args.overlap}; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    header = (
        f"{'format':<9} {'file':>9} {'chars read':>11} {'sections':>8} {'read s':>8} {'chars/s':>11} "
        f"{'units/s':>16} {'chunk s':>8} {'chunks':>7}"
    )
    print(header)
    print("-" * len(header))
    for key, sample in samples.items():
        seconds, result = timed(partial(load_bytes, sample.name, sample.data), 1 if sample.once else args.repeat)
        chars = sum(len(section.text) for section in result.sections)
        units = ""
        if sample.unit:
            rate = sample.count / seconds
            units = f"{rate:,.1f} {sample.unit}/s" if rate >= 10 else f"{rate:.3f} {sample.unit}/s"
        chunking, chunks = "", ""
        if not args.no_chunk:
            chunk_seconds, made = timed(partial(chunked, result, args.max_tokens, args.overlap), args.repeat)
            chunking, chunks = f"{chunk_seconds:.3f}", f"{len(made):,}"
        print(
            f"{key:<9} {size_label(len(sample.data)):>9} {chars:>11,} {len(result.sections):>8,} {seconds:>8.3f} "
            f"{chars / seconds:>11,.0f} {units:>16} {chunking:>8} {chunks:>7}",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
