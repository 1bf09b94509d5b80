"""What the store holds: documents, chunks written and read back, and a chunk's places as Chroma metadata."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.document import NOWHERE, Place, describe


@dataclass(frozen=True)
class StoredDocument:
    """A document as the registry knows it."""

    source: str
    version: str
    content_hash: str
    pages: int
    chunks: int
    tokens: int
    added_at: str
    embedding_model: str
    kind: str = ""
    """The format it was read as (``pdf``, ``docx``, …; "" for documents stored before formats were kept)."""
    precision: str = ""
    """What its passages were computed in (``int8``, ``bfloat16``, ``float32``, ``server``…; "" before it was kept)."""


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk ready to store: its id, text, unit vector and metadata."""

    id: str
    text: str
    embedding: np.ndarray
    metadata: dict[str, str | int | float | bool]


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the store: its text and where it lies in its document's version.

    ``place`` and ``place_end`` say where the chunk starts and ends in the original (page, slide,
    sheet and row, headings); ``breaks`` where in ``text`` a new page, slide or row starts;
    ``char_start`` and ``char_end`` locate the text in the document's normalised text.
    """

    text: str
    source: str
    chunk_index: int
    char_start: int
    char_end: int
    content_hash: str
    version: str
    chunk_id: str
    place: Place = NOWHERE
    place_end: Place = NOWHERE
    breaks: tuple[tuple[int, int], ...] = ()
    """Where in ``text`` a new page, slide or row starts: (offset, its number)."""
    text_hash: str = dataclasses.field(default="", compare=False)
    """The digest of the text that was embedded (its context and text): the key of its sentences' vectors
    (pipelines/store/sentences.py); "" for chunks stored before it was kept. Not part of a chunk's identity
    (what it is and where), so a chunk rebuilt from JSON or a LangChain document, without it, is equal."""

    @property
    def page(self) -> int | None:
        """The page the chunk starts on (None: a document without pages)."""
        return self.place.page

    @property
    def page_end(self) -> int | None:
        """The page the chunk ends on (None: a document without pages)."""
        return self.place_end.page

    def place_at(self, offset: int) -> Place:
        """The place of the character at ``offset`` in ``text``: its own page, slide or row (the heading
        path stays the chunk's)."""
        place = self.place
        for start, number in self.breaks:
            if start > offset:
                break
            if place.page is not None:
                place = dataclasses.replace(place, page=number)
            elif place.slide is not None:
                place = dataclasses.replace(place, slide=number)
            elif place.row is not None:
                place = dataclasses.replace(place, row=number)
        return place

    @property
    def ocr(self) -> bool:
        """Whether any of the chunk was recognised from an image (its characters may be misread)."""
        return self.place.ocr or self.place_end.ocr

    @property
    def location(self) -> str:
        """Where the chunk is in the original, as a card shows it (「1–2 ページ」「スライド 3」…; "" for none)."""
        return describe(self.place, self.place_end)


def chunk_id(version: str, index: int) -> str:
    """The record id of a chunk: its document version and its position."""
    return f"{version}-{index:05d}"


def version_of(record_id: str) -> str:
    """The document version in a chunk's record id (``chunk_id``'s inverse, for the version)."""
    return record_id.rsplit("-", 1)[0]


def with_context(context: str, text: str) -> str:
    """A chunk's text as it is embedded and keyword-indexed: its context (metadata ``context``) on the line before it."""
    return f"{context}\n{text}" if context else text


def _page(value: Any) -> int | None:
    return int(value) or None if value is not None else None


def _number(place: Place) -> int | None:
    """The number that tells a place from its neighbours: its page, slide or row."""
    return place.page or place.slide or place.row


def place_metadata(first: Place, last: Place, breaks: Sequence[tuple[int, Place]] = ()) -> dict[str, str | int | bool]:
    """A chunk's places as Chroma metadata (scalars only): ``page``/``page_end`` always (0: none), the
    slide, sheet, rows, headings (a JSON list) and whether it came from OCR only when they apply, and
    ``breaks``, where in its text a new page, slide or row starts (a JSON list of [offset, number])."""
    meta: dict[str, str | int | bool] = {"page": first.page or 0, "page_end": last.page or 0}
    numbered = [[offset, _number(place)] for offset, place in breaks if _number(place) is not None]
    if numbered and _number(first) is not None:
        meta["breaks"] = json.dumps(numbered)
    if first.slide is not None:
        meta |= {"slide": first.slide, "slide_end": last.slide or first.slide}
    if first.sheet is not None:
        meta["sheet"] = first.sheet
    if last.sheet is not None and last.sheet != first.sheet:
        meta["sheet_end"] = last.sheet
    if first.row is not None:
        meta |= {"row": first.row, "row_end": last.row or first.row}
    if first.heading:
        meta["heading"] = json.dumps(first.heading, ensure_ascii=False)
    if first.ocr or last.ocr:
        meta["ocr"] = True
    return meta


def breaks_from_metadata(meta: Mapping[str, Any]) -> tuple[tuple[int, int], ...]:
    """``place_metadata``'s ``breaks``: (offset in the chunk's text, page, slide or row number) pairs."""
    return tuple((int(offset), int(number)) for offset, number in json.loads(meta.get("breaks") or "[]"))


def places_from_metadata(meta: dict[str, Any]) -> tuple[Place, Place]:
    """``place_metadata``'s inverse; chunks stored before places were kept come back with their pages only."""
    heading = tuple(json.loads(meta["heading"])) if meta.get("heading") else ()
    ocr = bool(meta.get("ocr", False))
    sheet = meta.get("sheet")
    first = Place(
        page=_page(meta.get("page")),
        slide=_page(meta.get("slide")),
        sheet=sheet,
        row=_page(meta.get("row")),
        heading=heading,
        ocr=ocr,
    )
    last = Place(
        page=_page(meta.get("page_end")),
        slide=_page(meta.get("slide_end")),
        sheet=meta.get("sheet_end", sheet),
        row=_page(meta.get("row_end")),
        heading=heading,
        ocr=ocr,
    )
    return first, last


def stored_chunk(text: str, meta: dict[str, Any]) -> StoredChunk:
    """A chunk record's text and metadata as read back from Chroma."""
    place, place_end = places_from_metadata(meta)
    return StoredChunk(
        text=text,
        source=meta["source"],
        chunk_index=int(meta["chunk_index"]),
        char_start=int(meta["char_start"]),
        char_end=int(meta["char_end"]),
        content_hash=str(meta["content_hash"]),
        version=str(meta["version"]),
        chunk_id=chunk_id(str(meta["version"]), int(meta["chunk_index"])),
        place=place,
        place_end=place_end,
        breaks=breaks_from_metadata(meta),
        text_hash=str(meta.get("text_hash") or ""),
    )
