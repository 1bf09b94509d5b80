"""OCR with Tesseract: Japanese text, 横書き and 縦書き, recognised from images and scanned PDF pages.

Tesseract runs as its command-line program (``tesseract``, Debian ``tesseract-ocr``), one process per
page. A page that looks 横書き (``_looks_vertical``: blank rows between lines, not blank columns between
columns) is first read with the horizontal languages of ``OcrOptions.langs`` (``jpn+eng``: less than
half the time of all of them); when Tesseract is unsure of what it read (mean confidence below
``_CONFIDENT``), as it is on 縦書き read as 横書き, it is read again with all the languages
(``jpn+jpn_vert+eng``), and the reading Tesseract is surer of is kept. A page that looks 縦書き is read
once with all the languages: Tesseract's layout analysis then finds the vertical columns (and any
horizontal lines beside them); the text is put back in reading order from Tesseract's boxes
(``_columns_text``: columns right to left, even when its layout analysis cut one in two), and when
it left a share of the ink unread (whole columns, ``_unread``) the page is read again as one block of
columns (``--psm 5``) and the surer reading kept. ``bench/ocr_accuracy.py`` measures this.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from ingest.document import Place, Reading, Section
from ingest.encoding import plausibility
from ingest.errors import (
    EmptyDocumentError,
    FileTimeoutError,
    FormatError,
    IngestError,
    MissingToolError,
    UnsupportedFileError,
)
from ingest.limits import Limits, check_chars, check_pages, check_pixels, guard_pillow

if TYPE_CHECKING:
    from PIL import Image

OcrMode = Literal["auto", "off", "force"]
"""When scanned pages are read by OCR: pages without a usable text layer, never, or every PDF page."""
OCR_MODES: tuple[OcrMode, ...] = get_args(OcrMode)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""Image files ``read_image`` reads (every frame of a TIFF is a page)."""

PACKAGES = "tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert"
"""The Debian/Ubuntu packages that OCR of Japanese needs."""

# A reading whose mean word confidence (0-100, weighted by characters) is below this is tried again
# with every language. Measured on drawn pages: right orientation 87-93, 縦書き read as 横書き 19-34.
_CONFIDENT = 75.0
# A text layer with at least this share of characters that stand for no text (private use, U+FFFD,
# (cid:NN), control characters) is garbled: a font without a usable map to Unicode.
_MAX_UNMAPPED = 0.1
# Below this plausibility (ingest.encoding.plausibility) a text layer is garbled. Japanese prose scores
# 1.0, a table of figures or an English page 1.0, a Japanese page with a fifth of it in rare symbols 0.8.
_MIN_PLAUSIBLE = 0.5
# When more than this share of a 縦書き page's ink is outside the lines Tesseract found, it is read
# again as one block of columns. Measured on drawn A4 pages: all read 0.1-0.2 %, three of 18 columns left
# out 12 %, a large heading across a 縦書き page left out 6 %.
_MAX_UNREAD = 0.05
_PAD = 4  # pixels around a line that still count as in it: strokes Tesseract's box cuts close
_CID = re.compile(r"\(cid:\d+\)")
_UNMAPPED = re.compile(r"[\ue000-\uf8ff\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Full-width characters and punctuation: Tesseract may put a space between two of them, Japanese has none.
_CJK = (
    "\u3000-\u303f"  # CJK punctuation: 、。「」々〆
    "\u3040-\u30ff"  # hiragana, katakana
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # katakana extensions, kanji
    "\uff00-\uffef"  # full-width forms
)
_SPACE_IN_JAPANESE = re.compile(
    rf"(?<=[{_CJK}])[ \t]+(?=[{_CJK}!-/:-@\[-`{{-~])|(?<=[!-/:-@\[-`{{-~])[ \t]+(?=[{_CJK}])"
)


@dataclass(frozen=True)
class OcrOptions:
    """When and how scanned pages and images are recognised.

    ``mode``: ``auto`` reads by OCR the PDF pages without a usable text layer (none, almost none under
    a page-sized image, or ``garbled``); ``force`` every PDF page; ``off`` none, and then a scanned PDF
    or an image file is refused with a message naming ``RAG_OCR=off``. Image files are read by OCR
    unless ``off``. ``langs``: Tesseract's languages as its ``-l`` option takes them; ``jpn_vert``
    reads 縦書き. ``dpi``: the resolution PDF pages are drawn at for OCR.
    """

    mode: OcrMode = "auto"
    langs: str = "jpn+jpn_vert+eng"
    dpi: int = 300

    def __post_init__(self) -> None:
        if self.mode not in OCR_MODES:
            raise ValueError(f"OcrOptions.mode must be one of {OCR_MODES}, got {self.mode!r}")
        if not re.fullmatch(r"[A-Za-z0-9_]+(?:\+[A-Za-z0-9_]+)*", self.langs):
            raise ValueError(f"OcrOptions.langs must be Tesseract languages joined by +, got {self.langs!r}")
        if not 72 <= self.dpi <= 1200:
            raise ValueError(f"OcrOptions.dpi must be 72 to 1200, got {self.dpi}")


DEFAULT_OCR = OcrOptions()
"""What a reader does with scanned pages when it is told nothing: OCR where there is no usable text."""


@functools.cache
def _installed_languages(program: str) -> frozenset[str]:
    """The language data ``tesseract --list-langs`` names, asked once per program path."""
    try:
        listed = subprocess.run([program, "--list-langs"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    # the first line says where the data is ("List of available languages in ...")
    return frozenset(line.strip() for line in listed.stdout.splitlines()[1:] if line.strip())


def tesseract(langs: str, name: str = "") -> str:
    """The path of the ``tesseract`` program, checked to have the language data ``langs`` names.

    Raises ``MissingToolError`` naming the Debian packages to install (and the missing languages);
    ``name``, the file that needs OCR, begins the message.
    """
    prefix = f"{name}: " if name else ""
    program = shutil.which("tesseract")
    if program is None:
        raise MissingToolError(
            f"{prefix}スキャンした画像の文字を読み取る (OCR) には Tesseract が必要ですが、見つかりません。"
            f"サーバーに `apt-get install {PACKAGES}` で入れるか、文字を含む PDF かテキストファイルにしてください。"
        )
    installed = _installed_languages(program)
    missing = [lang for lang in langs.split("+") if lang not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang.lower().replace('_', '-')}" for lang in missing)
        raise MissingToolError(
            f"{prefix}Tesseract に言語データ {', '.join(missing)} がありません"
            f"（入っているもの: {', '.join(sorted(installed)) or 'なし'}）。"
            f"`apt-get install {packages}` で入れるか、使う言語を RAG_OCR_LANGS で変えてください。"
        )
    return program


@dataclass(frozen=True)
class _Recognised:
    text: str
    confidence: float  # mean word confidence, 0-100, weighted by characters; 0 when nothing was read
    chars: int
    lines: tuple[_Box, ...] = ()  # where Tesseract found lines of text

    @property
    def sure(self) -> float:
        """How many characters Tesseract read, each counted by how sure it was of it."""
        return self.chars * self.confidence / 100


# The most one Tesseract run on one page may take (a dense A4 page at 300 dpi takes 3-12 s here).
_PAGE_SECONDS = 120


def run_tesseract(
    program: str, name: str, png: Path, out: Path, langs: str, outputs: Sequence[str], psm: int = 3
) -> None:
    """Run Tesseract on ``png`` (``psm``: 3 page layout analysis, 5 one block of vertical text; ``langs``),
    writing ``out`` with each suffix of ``outputs`` (``txt``, ``tsv``); a failure, or a page past
    ``_PAGE_SECONDS``, is an ``IngestError``."""
    # OpenMP threads inside one Tesseract run make it slower on a small machine (measured: 2 cores,
    # 0.6 s a page with one thread, 1.2 s with two); pages run side by side instead (ingest/pdf.py).
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    command = [program, str(png), str(out), "--psm", str(psm), "-l", langs, *outputs]
    # A page that takes minutes is refused; coreutils' timeout also ends Tesseract when the process that
    # started it is killed first (ingest/isolation.py stops a file that runs out of time), not only here.
    guard = shutil.which("timeout")
    if guard:
        command = [guard, "--signal=KILL", str(_PAGE_SECONDS + 5), *command]
    try:
        done = subprocess.run(command, capture_output=True, env=env, check=False, timeout=_PAGE_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise FileTimeoutError(
            f"{name}: 1 ページの文字の読み取りが {_PAGE_SECONDS} 秒で終わらなかったため、中止しました。"
            "画像の解像度を下げるか、ページを分けてください。"
        ) from error
    except OSError as error:
        raise MissingToolError(
            f"{name}: Tesseract を起動できません（{error}）。`apt-get install {PACKAGES}` で入れ直してください。"
        ) from error
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise IngestError(
            f"{name}: Tesseract が文字の読み取りに失敗しました（終了コード {done.returncode}: {detail[0]}）。"
            "画像の解像度を下げるか、別の形式で保存し直してください。"
        )


def _run(program: str, name: str, png: Path, langs: str, psm: int = 3) -> _Recognised:
    """One Tesseract run on ``png``: its text and how sure it was, from the ``txt`` and ``tsv`` outputs.

    On a page whose lines are mostly columns (縦書き) the text is rebuilt from the ``tsv`` in reading
    order (``_columns_text``); otherwise it is Tesseract's ``txt`` as it is.
    """
    out = png.with_name(f"{png.stem}-{langs.replace('+', '_')}-{psm}")
    run_tesseract(program, name, png, out, langs, ("txt", "tsv"), psm)
    lines = _tsv_lines(out.with_suffix(".tsv").read_text(encoding="utf-8", errors="replace"))
    text = _columns_text(lines)
    if text is None:
        text = out.with_suffix(".txt").read_text(encoding="utf-8", errors="replace")
    weighted = sum(word.confidence * len(word.text) for line in lines for word in line.words)
    chars = sum(len(word.text) for line in lines for word in line.words)
    return _Recognised(
        close_japanese_spaces(text).strip(),
        weighted / chars if chars else 0.0,
        chars,
        tuple(line.box for line in lines),
    )


@dataclass(frozen=True)
class _Box:
    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height


@dataclass(frozen=True)
class _Word:
    box: _Box
    text: str
    confidence: float


@dataclass(frozen=True)
class _Line:
    box: _Box
    paragraph: tuple[int, int]  # Tesseract's block and paragraph numbers
    words: tuple[_Word, ...]

    @property
    def chars(self) -> int:
        return sum(len(word.text) for word in self.words)

    @property
    def vertical(self) -> bool:
        """Whether the line is a column: taller than wide, with more than one character to tell."""
        return self.chars > 1 and self.box.height > self.box.width

    def text(self) -> str:
        """The words top to bottom in a column, left to right in a line, a space between them
        (``close_japanese_spaces`` takes out the ones between Japanese characters)."""
        key = (lambda word: word.box.top) if self.vertical else (lambda word: word.box.left)
        return " ".join(word.text for word in sorted(self.words, key=key))


def _tsv_lines(tsv: str) -> list[_Line]:
    """The lines (level 4) of Tesseract's ``tsv`` output that hold words, each with its words (level 5)."""
    boxes: dict[tuple[str, ...], _Box] = {}
    words: dict[tuple[str, ...], list[_Word]] = {}
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t", 11)
        if len(fields) != 12 or fields[0] not in ("4", "5"):
            continue
        key = tuple(fields[1:5])  # page, block, paragraph, line
        box = _Box(*(int(value) for value in fields[6:10]))
        # words Tesseract found nothing in have confidence -1
        if fields[0] == "4":
            boxes[key] = box
        elif fields[11].strip() and float(fields[10]) >= 0:
            words.setdefault(key, []).append(_Word(box, fields[11].strip(), float(fields[10])))
    return [_Line(boxes[key], (int(key[1]), int(key[2])), tuple(found)) for key, found in words.items() if key in boxes]


def _columns_text(lines: Sequence[_Line]) -> str | None:
    """The text of a 縦書き page in reading order, or None when most of its characters are in horizontal lines.

    Tesseract's layout analysis may cut one column into two blocks and read the lower halves after
    everything else. Here the lines that continue one another down the page (overlapping across,
    less than two characters apart) are chained into a column; columns whose heights overlap make a
    band (one tier of a 段組 page, a heading set across it); bands are read top to bottom, the columns
    of a band right to left, each top to bottom. Columns of one paragraph join without a break,
    paragraphs on new lines. A line set across the page stays a column of its own.
    """
    if sum(line.chars for line in lines if line.vertical) <= sum(line.chars for line in lines if not line.vertical):
        return None
    columns: list[list[_Line]] = []
    for line in sorted(lines, key=lambda line: line.box.top):
        for column in columns:
            last = column[-1]
            if line.vertical and last.vertical and _continues(last.box, line.box):
                column.append(line)
                break
        else:
            columns.append([line])
    bands: list[list[list[_Line]]] = []
    for column in sorted(columns, key=lambda column: column[0].box.top):
        top, bottom = column[0].box.top, column[-1].box.bottom
        for band in bands:
            if top < max(other[-1].box.bottom for other in band) and bottom > min(other[0].box.top for other in band):
                band.append(column)
                break
        else:
            bands.append([column])
    text: list[str] = []
    seen: set[tuple[int, int]] = set()
    for band in bands:
        for column in sorted(band, key=lambda column: -max(line.box.right for line in column)):
            if text and column[0].paragraph not in seen:
                text.append("\n")
            seen = {line.paragraph for line in column}
            text.extend(line.text() for line in column)
    return "".join(text)


def _continues(above: _Box, below: _Box) -> bool:
    """Whether the column line ``below`` carries on the column line ``above``: overlapping across by
    more than half the narrower one, starting under it less than two of its widths further down."""
    overlap = min(above.right, below.right) - max(above.left, below.left)
    gap = below.top - above.bottom
    return overlap * 2 > min(above.width, below.width) and -above.width < gap < 2 * above.width


def close_japanese_spaces(text: str) -> str:
    """``text`` without the spaces Tesseract puts between Japanese characters (and between them and punctuation).

    「コーヒー (珈琲) を 飲んだ、 と」 becomes 「コーヒー(珈琲)を飲んだ、と」; spaces between Latin words and
    numbers, and between them and Japanese (「Windows 11 の設定」), stay.
    """
    return _SPACE_IN_JAPANESE.sub("", text)


def recognise(name: str, image: Image.Image, options: OcrOptions) -> str:
    """The text Tesseract reads in ``image`` (横書き or 縦書き), with the spaces it puts between Japanese characters removed.

    The image's ``dpi`` (``image.info``) is passed on; without it Tesseract estimates the resolution.
    Raises ``MissingToolError`` when Tesseract or a language in ``options.langs`` is not installed.
    """
    program = tesseract(options.langs, name)
    horizontal = "+".join(lang for lang in options.langs.split("+") if not lang.endswith("_vert"))
    page = _flattened(image)
    with tempfile.TemporaryDirectory(prefix="rag-ocr-") as folder:
        png = Path(folder) / "page.png"
        dpi = image.info.get("dpi")
        page.save(png, format="PNG", compress_level=1, **({"dpi": dpi} if dpi else {}))
        vertical = _looks_vertical(page)
        if not horizontal or horizontal == options.langs or vertical:
            reading = _run(program, name, png, options.langs)
            if vertical and _unread(page, reading.lines) > _MAX_UNREAD:
                # Tesseract's layout analysis sometimes leaves whole columns of a 縦書き page out; read
                # as one block of columns they are there, though a heading set across the page is not
                uniform = _run(program, name, png, options.langs, psm=5)
                reading = max(reading, uniform, key=lambda candidate: candidate.sure)
            return reading.text
        first = _run(program, name, png, horizontal)
        if first.confidence >= _CONFIDENT or first.chars == 0:
            return first.text
        second = _run(program, name, png, options.langs)
        return max(first, second, key=lambda reading: reading.confidence).text


def _looks_vertical(page: Image.Image) -> bool:
    """Whether the text on a greyscale page seems to run in columns (縦書き) rather than in lines.

    Between lines of text there are wide blank rows; between the characters of a line only narrow
    blank columns. Each blank run, between the first and last inked row (column), counts its length
    squared, so that wide gaps count most: the page is vertical when its columns score higher than its
    rows. Measured on drawn pages: 横書き rows 4.5-8.0 against columns 0.0-1.1, 縦書き the other way.
    """
    import numpy as np

    ink = np.asarray(page.convert("L").reduce(2)) < 128

    def gaps(profile: np.ndarray) -> float:
        inked = np.flatnonzero(profile)
        if inked.size == 0:
            return 0.0
        blank = (profile[inked[0] : inked[-1] + 1] == 0).astype(np.int8)
        edges = np.diff(np.concatenate(([0], blank, [0])))
        lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        return float((lengths.astype(np.float64) ** 2).sum() / blank.size)

    return gaps(ink.sum(axis=0)) > gaps(ink.sum(axis=1))


def _unread(page: Image.Image, lines: Sequence[_Box]) -> float:
    """The share of the ink on a greyscale page that lies outside every line Tesseract found (0 to 1)."""
    import numpy as np

    ink = np.asarray(page.convert("L")) < 128
    total = int(ink.sum())
    if not total:
        return 0.0
    found = np.zeros_like(ink)
    for box in lines:
        found[max(box.top - _PAD, 0) : box.bottom + _PAD, max(box.left - _PAD, 0) : box.right + _PAD] = True
    return float((ink & ~found).sum()) / total


def _flattened(image: Image.Image) -> Image.Image:
    """The image in greyscale on white: transparency would otherwise turn black, and so would the page."""
    from PIL import Image

    if image.mode in ("1", "L"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return image.convert("L")


def garbled(text: str) -> bool:
    """Whether a PDF page's text layer is unusable, so that the page is better read by OCR.

    Garbled: at least a tenth of its characters stand for no text (private-use characters
    U+E000–U+F8FF, U+FFFD, ``(cid:NN)``, control characters), as a font without a map to Unicode
    extracts; or its plausibility (``ingest.encoding.plausibility``, spaces left out) is below 0.5,
    as codes read as the wrong characters are. Empty text is not garbled (it is no text layer).
    """
    compact = "".join(text.split())
    if not compact:
        return False
    compact = _CID.sub("\ue000", compact)
    if len(_UNMAPPED.findall(compact)) >= _MAX_UNMAPPED * len(compact):
        return True
    return plausibility(compact) < _MIN_PLAUSIBLE


def _frames(name: str, data: bytes, limits: Limits) -> Iterator[Image.Image]:
    """Each frame of an image file, decoded one at a time within ``limits``; Pillow's errors become ``FormatError``."""
    from PIL import Image, UnidentifiedImageError

    guard_pillow(limits)
    try:
        with warnings.catch_warnings():
            # Pillow warns above the limit and refuses above twice it; check_pixels refuses at the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as image:
            frames = getattr(image, "n_frames", 1)
            check_pages(name, frames, limits)
            for number in range(frames):
                image.seek(number)
                check_pixels(name, image.width, image.height, limits)  # before the frame is decoded
                frame = image.copy()
                frame.load()
                yield frame
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, EOFError, SyntaxError) as error:
        # Pillow reports a damaged or truncated image as OSError ("image file is truncated"), a bad
        # header as SyntaxError or ValueError, a file that is no image as UnidentifiedImageError.
        # an unidentified image's message is the repr of the buffer it was given: not for a person
        reason = (
            "画像の形式を判別できません"
            if isinstance(error, UnidentifiedImageError)
            else f"{type(error).__name__}: {error}"
        )
        raise FormatError(
            f"{name}: 画像として読めません（{reason}）。"
            "ファイルが壊れているか、拡張子と中身が合っていません。PNG か JPEG で保存し直してください。"
        ) from error


def read_image(name: str, data: bytes, limits: Limits, options: OcrOptions) -> Reading:
    """The text of an image file (PNG, JPEG, TIFF), read by OCR: a section per frame, ``Place(page=n, ocr=True)``.

    Refused when ``options.mode`` is ``off`` (``UnsupportedFileError``), when Tesseract is missing
    (``MissingToolError``), when Pillow cannot read it (``FormatError``), when a frame is over
    ``limits.max_pixels`` or the text over ``limits.max_chars``, and when no text is found.
    """
    if options.mode == "off":
        raise UnsupportedFileError(
            f"{name}: 画像ファイルの文字は OCR で読み取りますが、OCR が無効になっています（RAG_OCR=off）。"
            "RAG_OCR=auto にするか、文字を含む PDF かテキストファイルにしてください。"
        )
    tesseract(options.langs, name)  # refused before any decoding
    sections: list[Section] = []
    chars = 0
    for number, frame in enumerate(_frames(name, data, limits), 1):
        text = recognise(name, frame, options)
        chars += len(text)
        check_chars(name, chars, limits, where=f"{number:,} ページ目までで ")
        sections.append(Section(text, Place(page=number, ocr=True), flows=True))
    if not any(section.text.strip() for section in sections):
        raise EmptyDocumentError(
            f"{name}: 画像から OCR で文字を読み取れませんでした。"
            "文字がはっきり写るよう解像度を上げて（300 dpi 程度）スキャンし直してください。"
        )
    pages = f"{len(sections)} ページを" if len(sections) > 1 else "画像を"
    return Reading(tuple(sections), notes=(f"{pages} OCR で読み取りました",))
