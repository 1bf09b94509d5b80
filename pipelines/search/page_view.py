"""A page of a PDF or an image file drawn as a PNG, a passage marked on it from the PDF's own characters or from OCR."""

from __future__ import annotations

import ctypes
import io
import math
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.errors import FormatError, PdfError
from ingest.limits import DEFAULT_LIMITS, Limits, check_pixels, guard_pillow
from ingest.ocr import DEFAULT_OCR, IMAGE_SUFFIXES, OcrOptions, close_japanese_spaces, garbled, run_tesseract, tesseract
from pipelines.search.spans import compact, marked_owners, passage_spans

if TYPE_CHECKING:
    import pypdfium2
    from PIL import Image

# The marks: semi-transparent yellow over the drawn page, a little larger than the characters.
_MARK = (255, 214, 0, 110)
_PAD = 2
# A page whose text layer has fewer non-space characters than this, or a garbled one, is read by OCR
# here as the PDF reader reads it (ingest/pdf.py).
_SCANT = 10

Box = tuple[float, float, float, float]
"""A rectangle on the drawn page in pixels: left, top, right, bottom."""


@dataclass(frozen=True)
class PageImage:
    """One page of a file drawn as a PNG, the passage marked on it.

    ``page``: its number (1-based) of ``pages``. ``alt``: a Japanese description for screen readers.
    ``boxes``: how many marks were drawn (0 when the passage was not found on the page). ``ocr``: the
    marks come from Tesseract's reading of the image, the page having no usable text of its own.
    """

    png: bytes
    page: int
    pages: int
    alt: str
    boxes: int
    ocr: bool


def _merged(boxes: Sequence[Box]) -> list[Box]:
    """Boxes of characters or words, in reading order, merged into one per run on a line (or 縦書き column):
    a box joins the run when it goes on from the box before it."""
    merged: list[Box] = []
    previous: Box | None = None
    for box in boxes:
        if merged and previous is not None and _goes_on(previous, box):
            last = merged[-1]
            merged[-1] = (min(last[0], box[0]), min(last[1], box[1]), max(last[2], box[2]), max(last[3], box[3]))
        else:
            merged.append(box)
        previous = box
    return merged


def _goes_on(a: Box, b: Box) -> bool:
    """Whether ``b`` follows ``a`` on its line (beside it, overlapping it vertically by half) or in its column."""
    height = max(min(a[3] - a[1], b[3] - b[1]), 1.0)
    width = max(min(a[2] - a[0], b[2] - b[0]), 1.0)
    if min(a[3], b[3]) - max(a[1], b[1]) >= height / 2:
        return -height / 2 <= b[0] - a[2] <= 2 * height
    if min(a[2], b[2]) - max(a[0], b[0]) >= width / 2:
        return -width / 2 <= b[1] - a[3] <= 2 * width
    return False


def _draw_marks(image: Image.Image, boxes: Sequence[Box]) -> bytes:
    """``image`` with semi-transparent yellow over ``boxes``, as PNG bytes."""
    from PIL import Image, ImageDraw

    page = image.convert("RGBA")
    if boxes:
        overlay = Image.new("RGBA", page.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for left, top, right, bottom in boxes:
            draw.rectangle((left - _PAD, top - _PAD, right + _PAD, bottom + _PAD), fill=_MARK)
        page = Image.alpha_composite(page, overlay)
    buffer = io.BytesIO()
    page.convert("RGB").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _alt(name: str, page: int, pages: int, boxes: int) -> str:
    return f"{name} の {page} ページ（全 {pages} ページ）" + ("、該当箇所に印" if boxes else "")


def _check_page(name: str, page: int, pages: int) -> None:
    if not 1 <= page <= pages:
        raise ValueError(f"{name}: {page} ページはありません（全 {pages} ページ）。")


def render_page(
    name: str,
    data: bytes,
    page: int,
    passage: str,
    *,
    dpi: int = 150,
    limits: Limits = DEFAULT_LIMITS,
    ocr: OcrOptions = DEFAULT_OCR,
) -> PageImage:
    """Page ``page`` (1-based) of a PDF or an image file, drawn at ``dpi``, with ``passage`` marked on it.

    Only that page is drawn, after its size is checked against ``limits.max_pixels``. The marks come
    from the PDF's own characters (pdfium's text page); a page without usable text (a scan), every
    page with ``ocr.mode`` "force", and image files are read by Tesseract in ``ocr.langs`` and the
    words of the passage marked (``ocr=True``); with ``ocr.mode`` "off" a scan is drawn unmarked.
    ``passage``: a chunk's text, as stored (normalised); how it is found: ``passage_spans``.

    Raises ``ValueError`` for a page out of range, ``PdfError`` for a PDF pdfium cannot open,
    ``ResourceLimitError`` for a page too large to draw, ``MissingToolError`` when OCR is needed and
    Tesseract is missing.
    """
    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
        return _render_image(name, data, page, passage, limits, ocr)
    import pypdfium2

    guard_pillow(limits)  # Pillow's guard is process-wide: the page is drawn within these limits, checked below

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as error:
        raise PdfError(
            f"{name}: PDF を開けません（{error}）。ファイルが壊れているか、パスワードで保護されています。"
        ) from error
    try:
        pages = len(document)
        _check_page(name, page, pages)
        pdf_page = document[page - 1]
        try:
            width, height = pdf_page.get_size()
            check_pixels(name, math.ceil(width * dpi / 72), math.ceil(height * dpi / 72), limits)
            bitmap = pdf_page.render(scale=dpi / 72)
            image = bitmap.to_pil().copy()  # the bitmap's memory is pdfium's, freed with it
            bitmap.close()
            text, boxes = _text_layer_marks(pdf_page, image.size, passage)
            read_by_ocr = ocr.mode == "force" or (ocr.mode == "auto" and not boxes and _unusable(text))
            if read_by_ocr:
                boxes = _ocr_marks(name, image, passage, ocr, dpi)
        finally:
            pdf_page.close()
    finally:
        document.close()
    return PageImage(
        _draw_marks(image, boxes), page, pages, _alt(name, page, pages, len(boxes)), len(boxes), read_by_ocr
    )


def _unusable(text: str) -> bool:
    """Whether a page's text layer is too little or too garbled to be what the index holds."""
    return len(compact(text)) < _SCANT or garbled(text)


def _text_layer_marks(page: pypdfium2.PdfPage, size: tuple[int, int], passage: str) -> tuple[str, list[Box]]:
    """The page's text layer, and the boxes (in pixels of a drawing of ``size``) of the passage's characters in it."""
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        text = textpage.get_text_range(0, count) if count else ""
        chars: list[str] = []
        owners: list[int] = []
        for index in range(count):
            code = pdfium_c.FPDFText_GetUnicode(textpage.raw, index)
            for char in unicodedata.normalize("NFKC", chr(code)) if 0 < code < 0x110000 else "":
                if not char.isspace():
                    chars.append(char)
                    owners.append(index)
        spans = passage_spans("".join(chars), passage)
        boxes = []
        for index in marked_owners(owners, spans):
            left, bottom, right, top = textpage.get_charbox(index, loose=True)
            if right > left and top > bottom:
                boxes.append(_to_device(page, size, left, bottom, right, top))
    finally:
        textpage.close()
    return text, _merged(boxes)


def _to_device(
    page: pypdfium2.PdfPage, size: tuple[int, int], left: float, bottom: float, right: float, top: float
) -> Box:
    """A rectangle in PDF page space in pixels of the page drawn at ``size``, as pdfium draws it (crop box, rotation)."""
    import pypdfium2.raw as pdfium_c

    corners = []
    for x, y in ((left, bottom), (right, top)):
        device_x, device_y = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, size[0], size[1], 0, x, y, device_x, device_y)
        corners.append((device_x.value, device_y.value))
    (x0, y0), (x1, y1) = corners
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _render_image(name: str, data: bytes, page: int, passage: str, limits: Limits, ocr: OcrOptions) -> PageImage:
    """Frame ``page`` of an image file, its passage marked from Tesseract's words."""
    from PIL import Image, UnidentifiedImageError

    guard_pillow(limits)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            pages = getattr(opened, "n_frames", 1)
            _check_page(name, page, pages)
            opened.seek(page - 1)
            check_pixels(name, opened.width, opened.height, limits)
            image = opened.copy()
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError) as error:
        raise FormatError(
            f"{name}: 画像として読めません（{type(error).__name__}）。PNG か JPEG で保存し直してください。"
        ) from error
    boxes = _ocr_marks(name, image, passage, ocr, None) if ocr.mode != "off" else []
    return PageImage(
        _draw_marks(image, boxes), page, pages, _alt(name, page, pages, len(boxes)), len(boxes), ocr.mode != "off"
    )


def _ocr_marks(name: str, image: Image.Image, passage: str, ocr: OcrOptions, dpi: int | None) -> list[Box]:
    """The boxes of the words of ``passage`` that Tesseract reads in ``image``: horizontal languages first,
    then every language in ``ocr.langs`` (縦書き) when those find none of the passage."""
    program = tesseract(ocr.langs, name)
    every = ocr.langs.split("+")
    horizontal = "+".join(lang for lang in every if not lang.endswith("_vert"))
    tries = [horizontal, ocr.langs] if horizontal and horizontal != ocr.langs else [ocr.langs]
    with tempfile.TemporaryDirectory(prefix="rag-view-") as folder:
        png = Path(folder) / "page.png"
        image.convert("L").save(png, format="PNG", compress_level=1, **({"dpi": (dpi, dpi)} if dpi else {}))
        for langs in tries:
            words = _ocr_words(program, name, png, langs)
            chars: list[str] = []
            owners: list[int] = []
            for index, (word, _) in enumerate(words):
                for char in compact(close_japanese_spaces(word)):
                    chars.append(char)
                    owners.append(index)
            marked = marked_owners(owners, passage_spans("".join(chars), passage))
            if marked:
                return _merged([words[index][1] for index in marked])
    return []


def _ocr_words(program: str, name: str, png: Path, langs: str) -> list[tuple[str, Box]]:
    """The words Tesseract reads in ``png`` (its ``tsv`` output, level 5), with their boxes, in reading order."""
    out = png.with_name(f"words-{langs.replace('+', '_')}")
    run_tesseract(program, name, png, out, langs, ("tsv",))
    words = []
    for row in out.with_suffix(".tsv").read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = row.split("\t", 11)
        if len(fields) == 12 and fields[0] == "5" and fields[11].strip():
            left, top, width, height = (float(value) for value in fields[6:10])
            words.append((fields[11].strip(), (left, top, left + width, top + height)))
    return words
