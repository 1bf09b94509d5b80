"""What a reader makes of a file: its text in sections, each knowing its place in the original.

A reader (PDF, Word, Excel, …) turns a file's bytes into ``Section``s in reading order. A section is a
page of a PDF, a slide, a row of a sheet, a block of a Word or HTML document under its headings; its
``Place`` says where it is, so that every chunk cut from the text can say where it came from
(``describe``: 「1–2 ページ」, 「スライド 3」, 「シート 売上 ・ 12–30 行」, 「第2章 申請 > 2.1 手続き」).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Place:
    """Where a piece of text is in the original file; a field that does not apply is None or empty.

    ``page``: PDF page (1-based). ``slide``: PowerPoint slide (1-based). ``sheet``: Excel sheet name.
    ``row``: the row number a spreadsheet program shows (Excel, CSV: the header is row 1).
    ``heading``: the headings above the text, outermost first (Word, HTML, Markdown).
    ``ocr``: the text was recognised from an image (Tesseract), not read from the file.
    """

    page: int | None = None
    slide: int | None = None
    sheet: str | None = None
    row: int | None = None
    heading: tuple[str, ...] = ()
    ocr: bool = False


NOWHERE = Place()


@dataclass(frozen=True)
class Section:
    """A piece of a document's text, before normalisation, and its place.

    ``flows``: a sentence left open at the end of the section before may go on in this one (a PDF page
    that a page break cut mid-sentence). Sections of structured files (rows, slides, paragraphs) do not.
    ``wrapped``: a line break inside the section may be a wrap in the middle of a sentence, to be
    re-joined (PDF pages, OCR, plain text); False where every line break is meant (a table row's
    ``列名: 値`` lines, a slide's lines, line breaks in a Word paragraph or an HTML block).
    """

    text: str
    place: Place = NOWHERE
    flows: bool = False
    wrapped: bool = True


@dataclass(frozen=True)
class Reading:
    """What a reader returns: the sections, the text encoding it detected, and notes for the person."""

    sections: tuple[Section, ...]
    encoding: str | None = None
    notes: tuple[str, ...] = field(default=())


def _span(first: int, last: int | None) -> str:
    return f"{first}" if last is None or last == first else f"{first}–{last}"


def describe(first: Place, last: Place | None = None) -> str:
    """The place of a span from ``first`` to ``last`` as a Japanese label, as cards and JSON show it.

    「2 ページ」「1–2 ページ」「スライド 3」「シート 売上 ・ 12–30 行」「12–30 行」「第2章 申請 > 2.1 手続き」;
    "" for text with no place (a plain text file without headings).
    """
    last = last or first
    if first.page is not None:
        return f"{_span(first.page, last.page)} ページ"
    if first.slide is not None:
        return f"スライド {_span(first.slide, last.slide)}"
    if first.row is not None:
        if first.sheet is not None and last.sheet is not None and last.sheet != first.sheet:
            return f"シート {first.sheet} ・ {first.row} 行 〜 シート {last.sheet} ・ {last.row} 行"
        rows = f"{_span(first.row, last.row)} 行"
        return f"シート {first.sheet} ・ {rows}" if first.sheet is not None else rows
    if first.sheet is not None:
        return f"シート {first.sheet}"
    if first.heading:
        return " > ".join(first.heading)
    return ""
