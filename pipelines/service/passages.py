"""The service's passages and originals: the text around a hit, a passage in its original file, the file itself."""

from __future__ import annotations

from pathlib import PurePosixPath

from ingest.errors import IngestError
from ingest.loaders import kind_of
from ingest.ocr import OcrOptions
from pipelines.errors import (
    DocumentNotFoundError,
    RagError,
)
from pipelines.search.retrieval import Hit
from pipelines.service import words
from pipelines.service.compose import Pipelines
from pipelines.service.core import VIEW_CONTEXT, ServiceCore
from pipelines.service.results import (
    Caller,
    Original,
    PassageText,
    PassageView,
)
from pipelines.store.records import StoredChunk, StoredDocument


class Passages(ServiceCore):
    """A passage's context, its view in the original, and the original's download."""

    # -- passages and originals -----------------------------------------------------------------------

    def surroundings(self, caller: Caller, collection: str, hit: Hit) -> tuple[str, str]:
        """The document's text just before and just after a hit (shown with every card: not recorded)."""
        return self._parts(caller, collection, "read").searcher.surroundings(hit.chunk)

    def passage_text(self, caller: Caller, collection: str, source: str, chunk_index: int) -> PassageText:
        """A stored passage by its document and chunk number, with the text around it; recorded as viewed.
        A document or chunk that is not stored is refused with the reason."""
        parts = self._parts(caller, collection, "read")
        with self._recorded(caller, "view", parts.settings.collection, source, f"チャンク {chunk_index}", before=False):
            document, chunk = self._stored(parts, source, chunk_index)
            return PassageText(parts.settings.collection, document, chunk, *parts.searcher.surroundings(chunk))

    @staticmethod
    def _stored(parts: Pipelines, source: str, chunk_index: int) -> tuple[StoredDocument, StoredChunk]:
        """A document's live chunk by its number (``DocumentNotFoundError`` with the reason when there is none)."""
        document = parts.store.document(source)
        if document is None:
            raise DocumentNotFoundError(words.DOCUMENT_MISSING.format(source=source))
        found = parts.store.chunks_at(document.source, document.version, [chunk_index]) if chunk_index >= 0 else []
        if chunk_index >= document.chunks or not found:
            raise DocumentNotFoundError(words.CHUNK_MISSING)
        return document, found[0]

    def original_kept(self, caller: Caller, collection: str, content_hash: str) -> bool:
        """Whether the file of a document with this content is kept (and so can be viewed and downloaded)."""
        return self._parts(caller, collection, "read").originals.path(content_hash) is not None

    def original(self, caller: Caller, collection: str, source: str) -> Original:
        """A document's file as it was given (``DocumentNotFoundError``: no such document, or no file kept)."""
        parts = self._parts(caller, collection, "download")
        with self._recorded(caller, "download", parts.settings.collection, source, before=False):
            return self._original(parts, source)

    def _original(self, parts: Pipelines, source: str) -> Original:
        document = parts.store.document(source)
        if document is None:
            raise DocumentNotFoundError(words.DOCUMENT_MISSING.format(source=source))
        data = parts.originals.get(document.content_hash)
        if data is None:
            raise DocumentNotFoundError(words.ORIGINAL_NOT_KEPT)
        return Original(document, PurePosixPath(document.source).name or "document", data)

    def passage(self, caller: Caller, collection: str, source: str, chunk_index: int, page: int | None) -> PassageView:
        """A passage shown in its original file: the PDF page (``page``, or where the passage starts), the rows,
        the slide, or the text around it. A document or chunk that is not stored is refused with the reason."""
        parts = self._parts(caller, collection, "read")
        place = f"チャンク {chunk_index}" + (f"、{page} ページ" if page is not None else "")
        with self._recorded(caller, "view", parts.settings.collection, source, place, before=False):
            return self._view(parts, source, chunk_index, page)

    def _view(self, parts: Pipelines, source: str, chunk_index: int, page: int | None) -> PassageView:
        from pipelines.search.page_view import render_page
        from pipelines.search.text_views import document_view, rows_view, slide_view
        from pipelines.search.viewer import view_for

        document, chunk = self._stored(parts, source, chunk_index)
        data = parts.originals.get(document.content_hash)
        if data is None:
            return PassageView(document, chunk, page, None, words.ORIGINAL_NOT_KEPT)
        limits = parts.indexer.limits
        kind = view_for(document.kind or kind_of(document.source))  # stored before kinds were kept: by name
        span = (chunk.char_start, chunk.char_end)
        try:
            if kind == "page":
                first = chunk.place.page or 1
                number = page if page is not None and page >= 1 else first
                ocr = OcrOptions(mode=self.settings.ocr, langs=self.settings.ocr_langs)
                image = render_page(document.source, data, number, chunk.text, limits=limits, ocr=ocr)
                return PassageView(document, chunk, image.page, image)
            if kind == "rows":
                rows = rows_view(document.source, data, *span, limits=limits, expected=chunk.text)
                return PassageView(document, chunk, page, rows)
            if kind == "slide":
                slide = slide_view(document.source, data, *span, limits=limits, expected=chunk.text, slide=page)
                return PassageView(document, chunk, slide.slide, slide)
            text = document_view(document.source, data, *span, limits=limits, expected=chunk.text, context=VIEW_CONTEXT)
            return PassageView(document, chunk, page, text)
        except (IngestError, RagError, ValueError, OSError) as error:
            return PassageView(document, chunk, page, None, f"{words.VIEW_FAILED}{error}")
