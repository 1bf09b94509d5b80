"""PDF: the text layer of each page (pypdf), scanned pages read by OCR, running headers and page numbers removed.

A page is read from its text layer. With ``OcrOptions.mode`` ``auto``, a page whose text layer is
unusable is drawn with pdfium and read by Tesseract (``ingest.ocr``) instead: no text at all on a page
that has something drawn on it, fewer than ``_SCANT`` characters under an image covering at least
``_IMAGE_SHARE`` of the page (a scan with a stamp in its text layer), or ``garbled`` text. With
``force`` every page is read by OCR, with ``off`` none. Pages are read by OCR side by side, one
Tesseract process per CPU (at most ``_MAX_WORKERS``). Then the lines that repeat at the top and
bottom of the pages are removed (``strip_running_lines``).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections import Counter, deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING

import pypdf
from pypdf.errors import DependencyError, DeprecationError, PyPdfError

from ingest.document import Place, Reading, Section
from ingest.errors import EmptyDocumentError, MissingToolError, PdfError, ResourceLimitError
from ingest.limits import Limits, check_chars, check_pages, check_pixels
from ingest.ocr import DEFAULT_OCR, OcrOptions, garbled, recognise, tesseract

if TYPE_CHECKING:
    import pypdfium2
    from PIL import Image

# A page with fewer non-space characters than this under a large image has no usable text layer.
_SCANT = 10
# An image covering at least this share of a page makes it a scan (its bounding box, clipped to the page).
_IMAGE_SHARE = 0.25
# A page too large for limits.max_pixels at OcrOptions.dpi is drawn at a lower resolution, down to this;
# below it the text would be too small to read and the file is refused.
_MIN_DPI = 100
# Tesseract processes run side by side; each is one thread (ingest/ocr.py).
_MAX_WORKERS = 4
# A line at the top or bottom of a page that is only a page number: 3, - 3 -, 3/10, 3 / 10, p. 3,
# (3), （３）, 3 ページ, Page 3 of 10. ``\d`` matches full-width digits too.
_PAGE_NUMBER = re.compile(
    r"""^[-‐–—－ー~〜～\s]*
        (?:(?:p|pp|page|P|PP|Page|PAGE|No|no)\.?\s*)?
        [(（\[［]?\s*\d{1,4}\s*[)）\]］]?
        (?:\s*(?:/|／|of)\s*\d{1,4})?
        \s*(?:ページ|頁)?
        [-‐–—－ー~〜～\s]*$""",
    re.VERBOSE,
)
_DIGITS = re.compile(r"\d+")
# How many non-empty lines at each end of a page are looked at for running lines.
_EDGE_LINES = 2


def read_pdf(name: str, data: bytes, limits: Limits, options: OcrOptions = DEFAULT_OCR) -> Reading:
    """A PDF's text, a section per page (``Place(page=n)``, ``ocr=True`` for pages read by OCR), within ``limits``.

    Every section ``flows``: a sentence may go on over a page break. Refuses (``PdfError``) a damaged
    or password-protected file, and (``EmptyDocumentError``) one without any text. When Tesseract is
    missing, a PDF with no text of its own is refused (``MissingToolError``); one with some keeps its
    text pages and says in a note which pages were not read.
    """
    texts = _text_layer(name, data, limits)
    chars = sum(len(text) for text in texts)
    notes: list[str] = []
    read_by_ocr: list[int] = []
    if options.mode != "off":
        with _Pdfium(name, data) as pdfium:
            wanted = _pages_to_read(texts, pdfium, options)
            if wanted:
                try:
                    tesseract(options.langs)
                except MissingToolError as error:
                    if options.mode == "force" or not any(_usable(text) for text in texts):
                        raise MissingToolError(f"{name}: {error}") from None
                    notes.append(f"{_page_list(wanted)} ページは使える文字データがないため読み取っていません: {error}")
                    texts = ["" if number in wanted and garbled(text) else text for number, text in enumerate(texts, 1)]
                    wanted = []
            with closing(_recognised(name, pdfium, wanted, limits, options)) as pages:
                for number, text in pages:
                    chars += len(text) - len(texts[number - 1])
                    check_chars(name, chars, limits, where=f"OCR で {number:,} ページ目までで ")
                    texts[number - 1] = text
                    read_by_ocr.append(number)
    texts = strip_running_lines(texts)
    if not any(text.strip("\x00 \t\r\n\f\u3000") for text in texts):
        raise EmptyDocumentError(_nothing_read(name, options))
    if read_by_ocr:
        notes.insert(0, f"{len(read_by_ocr)} ページを OCR で読み取りました")
    ocr = set(read_by_ocr)
    sections = tuple(
        Section(text, Place(page=number, ocr=number in ocr), flows=True) for number, text in enumerate(texts, 1)
    )
    return Reading(sections, notes=tuple(notes))


def _text_layer(name: str, data: bytes, limits: Limits) -> list[str]:
    """Each page's text layer, read with pypdf; pages are counted first and characters as they are read."""
    # pypdf logs warnings about every odd object in real-world PDFs; what matters reaches us as errors.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfError(
                f"{name}: パスワードで保護された PDF です。パスワードを外して保存した PDF をアップロードしてください。"
            )
        check_pages(name, len(reader.pages), limits)  # walks the page tree; no page is parsed yet
        pages: list[str] = []
        chars = 0
        for number, page in enumerate(reader.pages, 1):
            text = page.extract_text() or ""
            chars += len(text)
            check_chars(name, chars, limits, where=f"{number:,} ページ目までで ")
            pages.append(text)
    except (PdfError, ResourceLimitError):
        raise
    except (
        PyPdfError,
        DependencyError,
        DeprecationError,
        NotImplementedError,
        RecursionError,
        ArithmeticError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
    ) as error:
        # pypdf signals a damaged file with a mix of its own and built-in exceptions. Found by fuzzing
        # (tests/ingest/test_fuzz.py): a damaged filter name raises NotImplementedError, or pypdf's
        # DeprecationError when it reads as a removed alias; arrays nested a thousand deep in a page,
        # RecursionError; a huge character code in a font's widths, OverflowError.
        raise PdfError(
            f"{name}: PDF を読み取れません（{type(error).__name__}: {error}）。"
            "ファイルが壊れているか途中で切れています。元のファイルから PDF を作り直してください。"
        ) from error
    return pages


def _usable(text: str) -> bool:
    return bool(text.strip()) and not garbled(text)


def _nothing_read(name: str, options: OcrOptions) -> str:
    """The message for a PDF in which no text was found, saying what was tried."""
    if options.mode == "off":
        return (
            f"{name}: PDF に文字データがありません。スキャンした画像だけの PDF と思われますが、"
            "OCR が無効になっています（RAG_OCR=off）。RAG_OCR=auto にして読み直すか、文字を含む PDF にしてください。"
        )
    return (
        f"{name}: PDF から文字を読み取れません。文字データがなく、OCR（Tesseract）でも文字が見つかりませんでした。"
        "白紙でなければ、文字がはっきり写るよう 300 dpi 程度でスキャンし直してください。"
    )


def _page_list(numbers: list[int]) -> str:
    """Page numbers as a short Japanese list: 2、5、7–9."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return "、".join(f"{run[0]}" if len(run) == 1 else f"{run[0]}–{run[-1]}" for run in runs)


class _Pdfium:
    """The PDF opened with pdfium, for what pypdf cannot do: what is drawn on a page, and drawing it.

    Opened on first use (a PDF whose pages all have text never is); pdfium is not thread-safe, so only
    the thread that opened it uses it.
    """

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        self._document: pypdfium2.PdfDocument | None = None

    def __enter__(self) -> _Pdfium:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._document is not None:
            self._document.close()

    def page(self, number: int) -> pypdfium2.PdfPage:
        import pypdfium2

        try:
            if self._document is None:
                self._document = pypdfium2.PdfDocument(self.data)
            return self._document[number - 1]
        except (pypdfium2.PdfiumError, IndexError) as error:
            raise PdfError(
                f"{self.name}: PDF のページを画像にできません（{type(error).__name__}: {error}）。"
                "ファイルが壊れているおそれがあります。元のファイルから PDF を作り直してください。"
            ) from error

    def inspect(self, number: int) -> tuple[float, bool]:
        """What is drawn on page ``number``: the share of it that images cover, and whether anything is."""
        import pypdfium2.raw as pdfium_c

        page = self.page(number)
        try:
            width, height = page.get_size()
            covered = 0.0
            drawn = False
            for item in page.get_objects(max_depth=4):
                drawn = True
                if item.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                    left, bottom, right, top = item.get_bounds()
                    covered += max(min(right, width) - max(left, 0), 0) * max(min(top, height) - max(bottom, 0), 0)
        finally:
            page.close()
        return min(covered / max(width * height, 1.0), 1.0), drawn

    def draw(self, number: int, dpi: int, limits: Limits) -> Image.Image:
        """Page ``number`` as a greyscale image at ``dpi``, less where it would pass ``limits.max_pixels``."""
        page = self.page(number)
        try:
            width, height = page.get_size()
            pixels = math.ceil(width * dpi / 72) * math.ceil(height * dpi / 72)
            if pixels > limits.max_pixels:
                # a poster or drawing: fewer dots per inch still leave its text as large as on A4
                fitted = math.floor(dpi * math.sqrt(limits.max_pixels / pixels))
                if fitted < _MIN_DPI:
                    check_pixels(self.name, math.ceil(width * dpi / 72), math.ceil(height * dpi / 72), limits)
                dpi = fitted
            bitmap = page.render(scale=dpi / 72, grayscale=True)
            image = bitmap.to_pil().copy()  # the bitmap's memory is pdfium's, freed with it
            bitmap.close()
        finally:
            page.close()
        image.info["dpi"] = (dpi, dpi)
        return image


def _pages_to_read(texts: list[str], pdfium: _Pdfium, options: OcrOptions) -> list[int]:
    """The numbers of the pages to read by OCR: every page with anything drawn on it (force), or (auto)
    those whose text layer is garbled, empty on a page with anything drawn on it (outlined fonts,
    アウトライン化, have no text layer), or scant under a large image."""
    wanted = []
    for number, text in enumerate(texts, 1):
        characters = 0 if options.mode == "force" else len("".join(text.split()))
        if options.mode == "auto" and garbled(text):
            wanted.append(number)
        elif characters < _SCANT:
            image_share, drawn = pdfium.inspect(number)
            if (characters == 0 and drawn) or image_share >= _IMAGE_SHARE:
                wanted.append(number)
    return wanted


def _workers() -> int:
    """Tesseract processes to run side by side: one per CPU this process may use, at most ``_MAX_WORKERS``."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, _MAX_WORKERS))


def _recognised(
    name: str, pdfium: _Pdfium, numbers: list[int], limits: Limits, options: OcrOptions
) -> Generator[tuple[int, str], None, None]:
    """``(page number, text)`` for each page in ``numbers``, in order, read by OCR side by side.

    Pages are drawn here (pdfium is not thread-safe) a few ahead of the Tesseract processes, so that
    no more than twice as many page images as workers are held at once.
    """
    if not numbers:
        return
    workers = _workers()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr") as pool:
        pending: deque[tuple[int, Future[str]]] = deque()
        try:
            for number in numbers:
                pending.append(
                    (number, pool.submit(recognise, name, pdfium.draw(number, options.dpi, limits), options))
                )
                while len(pending) > workers * 2 - 1:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _key(line: str) -> str:
    """What a running line keeps from page to page: its characters without spaces, numbers as #."""
    return _DIGITS.sub("#", "".join(line.split()))


def filled_lines(lines: list[str]) -> list[int]:
    """The indices of the lines that are not blank."""
    return [index for index, line in enumerate(lines) if line.strip()]


def strip_running_lines(pages: list[str]) -> list[str]:
    """The pages without the running headers, footers and page numbers that repeat at their tops and bottoms.

    The first and last two non-empty lines of each page are looked at. A line is running when its
    characters, spaces left out and every number made the same, are among those lines on at least half
    of the pages and on at least 3 (「社外秘」, 「2024年度 事業報告 3」). A line that is only a page
    number (3, - 3 -, 3/10, p. 3, （３）, 3 ページ) is running at the top (bottom) when more than half of
    the pages, and at least 2, have one among their top (bottom) lines. Running lines are removed from
    each end of a page inward, while the line at that end is one; the rest of the page, line breaks
    included, is left as it was. A page that would have no line left keeps all of its lines: a line
    that is all there is on its page is the page's content (a document of one short line a page), not
    a header.
    """
    split = [page.splitlines(keepends=True) for page in pages]
    filled = [filled_lines(lines) for lines in split]
    # each page's top lines and bottom lines, as indices from the edge inward
    ends = [(indices[:_EDGE_LINES], indices[::-1][:_EDGE_LINES]) for indices in filled]
    counts = Counter(
        key for lines, (top, bottom) in zip(split, ends, strict=True) for key in {_key(lines[i]) for i in top + bottom}
    )
    running = {key for key, count in counts.items() if count >= 3 and count * 2 >= len(pages)}
    numbered = [
        sum(1 for lines, edge in zip(split, ends, strict=True) if any(_PAGE_NUMBER.match(lines[i]) for i in edge[end]))
        for end in (0, 1)
    ]
    numbers_run = [count >= 2 and count * 2 > len(pages) for count in numbered]
    stripped: list[str] = []
    for page, lines, page_ends in zip(pages, split, ends, strict=True):
        drop: set[int] = set()
        for end, indices in enumerate(page_ends):
            for index in indices:
                if _key(lines[index]) not in running and not (numbers_run[end] and _PAGE_NUMBER.match(lines[index])):
                    break
                drop.add(index)
        if drop.issuperset(filled_lines(lines)):
            drop = set()
        stripped.append("".join(line for index, line in enumerate(lines) if index not in drop) if drop else page)
    return stripped
