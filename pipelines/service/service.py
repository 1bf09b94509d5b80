"""The service layer: every operation a person or a system performs, written once, for every face.

The page, the CLI and the HTTP API parse their input into a ``Caller`` and arguments, call one method
here and render what it returns; none of them reaches the store, the searcher or the query log. Each
method takes the caller and the collection, resolves the collection's name once (NFKC, trimmed), and
checks the caller's right to it in one place (``_parts``) before anything is read or written, so a
rule added here holds on every face.

    collections / create_collection / delete_collection        the collections a caller may see; admin
    documents / delete_document                                the documents of a collection
    upload / ingest_paths                                      files in, one report each
    search                                                     hits, ranked, logged
    ask                                                        a conversation turn, as events
    surroundings / passage / original                          a passage's context, its view, the file
    feedback / log                                             👍/👎 on a logged question; the log
    audit / signed_in / sign_in_refused / policy_reloaded      the audit log: read by an admin of all; acts of the faces

Every act is written to the audit log (pipelines/service/audit.py) with its caller, its collection and
document: a refusal of a right (``_allow``), a search, an answer, a passage viewed, an original
downloaded, an upload, a deletion, a collection made or deleted, feedback. Listing collections and
documents is not recorded. No act goes unrecorded: one that changes something is refused before it
starts when its row cannot be written (``AuditError``) and recorded when it ends, failed ones with
why; one that only reads is recorded before its result is returned, and nothing is returned when its
row cannot be written. A refusal is refused whether or not its row could be written.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ingest.errors import IngestError
from ingest.loaders import kind_of
from ingest.ocr import OcrOptions
from pipelines.errors import (
    AccessError,
    AuditError,
    DocumentNotFoundError,
    GenerationError,
    NoChatModelError,
    PermissionDeniedError,
    RagError,
)
from pipelines.model.embedder import TextEmbedder
from pipelines.search.retrieval import Hit
from pipelines.service import words
from pipelines.service.audit import Action, AuditEntry, Outcome
from pipelines.service.compose import Pipelines
from pipelines.service.library import Library
from pipelines.service.policy import RIGHTS, PolicySource, load_policy
from pipelines.service.querylog import LoggedQuery, Target
from pipelines.service.results import (
    Answered,
    AnswerFailed,
    AskEvent,
    Caller,
    Delta,
    Face,
    Found,
    Ingested,
    Original,
    PassageView,
    Question,
    RewriteFailed,
    Rewritten,
    Right,
    Searched,
)
from pipelines.settings import Settings
from pipelines.store.collections import CollectionInfo, canonical_name
from pipelines.store.indexing import FileProgress, FileReport, mixed_precisions
from pipelines.store.records import StoredDocument

if TYPE_CHECKING:
    from pipelines.answers.conversation import Turn
    from pipelines.service.signin import Person

# characters of text shown either side of a passage in a text view (a screen's worth, without scrolling)
VIEW_CONTEXT = 400
_RIGHT_WORDS: dict[Right, str] = {"read": "読み取り", "download": "ダウンロード", "write": "書き込み", "admin": "管理"}


@dataclass
class _Note:
    """What an audited act's row will say, filled in as the act learns it (an upload's files)."""

    document: str = ""
    detail: str = ""
    outcome: Outcome = "ok"


class Service:
    """The operations on a ``Library``'s collections, each checked against its caller's rights."""

    def __init__(self, library: Library) -> None:
        self.library = library

    @property
    def settings(self) -> Settings:
        return self.library.settings

    @property
    def embedder(self) -> TextEmbedder:
        """The one model every collection shares (its name, precision and how it counts tokens)."""
        return self.library.embedder

    def close(self) -> None:
        """End what the service holds open (a command's last act; a server's at shutdown)."""
        self.library.close()

    # -- rights ---------------------------------------------------------------------------------------

    def _allow(self, caller: Caller, name: str, right: Right) -> str:
        """The collection's name as kept, once ``caller`` may do ``right`` to it; refused otherwise."""
        cleaned = canonical_name(name)
        if not caller.may(cleaned, right):
            message = f"コレクション「{cleaned}」の{_RIGHT_WORDS[right]}の権限がありません。管理者に確かめてください。"
            self._refused(caller, cleaned, message)
            raise PermissionDeniedError(message)
        return cleaned

    def rights(self, caller: Caller, collection: str) -> frozenset[Right]:
        """What the caller may do to a collection: for a face to offer only the buttons that will work."""
        cleaned = canonical_name(collection)
        return frozenset(right for right in RIGHTS if caller.may(cleaned, right))

    def _parts(self, caller: Caller, name: str, right: Right) -> Pipelines:
        """A collection's parts, once ``caller`` may do ``right`` to it."""
        return self.library.pipelines(self._allow(caller, name, right))

    # -- collections ----------------------------------------------------------------------------------

    def collections(self, caller: Caller) -> list[CollectionInfo]:
        """The collections the caller may read, with their counts, the default first."""
        return [info for info in self.library.catalogue() if caller.may(info.name, "read")]

    def collection_names(self, caller: Caller) -> list[str]:
        """The names of the collections the caller may read (no counts: one read of the store)."""
        return [name for name in self.library.names() if caller.may(name, "read")]

    def collection(self, caller: Caller, name: str) -> CollectionInfo:
        """One collection's counts."""
        return self.library.collections.info(self._allow(caller, name, "read"))

    def create_collection(self, caller: Caller, name: str) -> CollectionInfo:
        """Make an empty collection (refused when the name is taken)."""
        cleaned = self._allow(caller, name, "admin")
        with self._recorded(caller, "create_collection", cleaned):
            return self.library.create(cleaned)

    def delete_collection(self, caller: Caller, name: str) -> CollectionInfo:
        """Delete a collection with its documents, keyword index and originals, once its writer is done."""
        cleaned = self._allow(caller, name, "admin")
        with self._recorded(caller, "delete_collection", cleaned):
            return self.library.delete(cleaned)

    # -- documents ------------------------------------------------------------------------------------

    def documents(self, caller: Caller, collection: str) -> list[StoredDocument]:
        """The collection's documents, by name."""
        return self._parts(caller, collection, "read").store.documents()

    def document(self, caller: Caller, collection: str, source: str) -> StoredDocument:
        """One stored document by its name (``DocumentNotFoundError`` when there is none)."""
        document = self._parts(caller, collection, "read").store.document(source)
        if document is None:
            raise DocumentNotFoundError(words.DOCUMENT_MISSING.format(source=source))
        return document

    def require(self, caller: Caller, collection: str, right: Right) -> str:
        """The collection's name as kept, once it exists and the caller may do ``right`` to it.

        For a face that must refuse before it waits or reads (an upload's body, a model still loading).
        """
        return self._parts(caller, collection, right).settings.collection

    def delete_document(self, caller: Caller, collection: str, source: str) -> StoredDocument:
        """Delete one document, its chunks and (unless another document has its content) its original."""
        cleaned = self._allow(caller, collection, "write")
        with self._recorded(caller, "delete_document", cleaned, source), self.library.writing(cleaned) as parts:
            return parts.indexer.delete(source)

    def upload(
        self,
        caller: Caller,
        collection: str,
        files: Sequence[tuple[str, bytes]],
        progress: FileProgress | None = None,
        waiting: Callable[[], None] | None = None,
    ) -> Ingested:
        """Index uploaded files (name, bytes), one report each; a file that cannot be read is reported, the others go on.

        ``progress(name)`` is called as each file starts and may return a chunk counter; ``waiting()``
        when another upload to this collection holds its writer and this one waits for it.
        """
        cleaned = self._allow(caller, collection, "write")

        def run(parts: Pipelines) -> list[FileReport]:
            reports = []
            for name, data in files:
                counter = progress(name) if progress else None
                reports.append(parts.indexer.ingest_bytes(name, data, counter))
            return reports

        with self._recorded(caller, "upload", cleaned, detail="、".join(name for name, _ in files)) as note:
            return self._noted(note, self._ingest(cleaned, run, waiting))

    def ingest_paths(
        self, caller: Caller, collection: str, paths: Sequence[Path], progress: FileProgress | None = None
    ) -> Ingested:
        """Index files and folders on this machine (the CLI), one report each, then the files skipped in folders."""
        cleaned = self._allow(caller, collection, "write")
        with self._recorded(caller, "upload", cleaned, detail="、".join(map(str, paths))) as note:
            return self._noted(
                note, self._ingest(cleaned, lambda parts: parts.indexer.ingest_paths(paths, progress), None)
            )

    def _ingest(
        self, collection: str, run: Callable[[Pipelines], list[FileReport]], waiting: Callable[[], None] | None
    ) -> Ingested:
        embedder = self.embedder
        before = embedder.stats
        texts, tokens, seconds = before.texts, before.tokens, before.seconds
        started = time.perf_counter()
        reports: list[FileReport] = []
        error = ""
        warnings: list[str] = []
        with self.library.writing(collection, waiting) as parts:
            try:
                reports = run(parts)
            except RagError as refused:  # the store or the model refused: no later file can go in
                error = str(refused)
            if any(r.status in ("added", "replaced") for r in reports):
                mixed = mixed_precisions(parts.store.documents())
                warnings = [mixed] if mixed else []
        after = embedder.stats
        return Ingested(
            reports,
            time.perf_counter() - started,
            embedded_texts=after.texts - texts,
            embedded_tokens=after.tokens - tokens,
            embedding_seconds=after.seconds - seconds,
            precision=embedder.precision if embedder.loaded else None,
            token_counting=embedder.counting if embedder.loaded else None,
            warnings=warnings,
            error=error,
        )

    # -- questions ------------------------------------------------------------------------------------

    def search(self, caller: Caller, collection: str, question: Question) -> Found:
        """The passages for a question, ranked, each with its best sentence unless not asked; logged."""
        parts = self._parts(caller, collection, "read")
        with self._recorded(caller, "search", parts.settings.collection, detail=question.text, before=False):
            return self._search(parts, caller, question, question.text)

    def _search(
        self, parts: Pipelines, caller: Caller, question: Question, searched: str, conversation: str = "", turn: int = 0
    ) -> Found:
        settings = self.settings
        k = question.k or settings.top_k
        mode = question.mode or settings.retrieval_mode
        searcher = parts.searcher
        hits = searcher.search(searched, k, list(question.sources) or None, mode=mode)
        stored = bool(searcher.keyword.versions)  # the live documents, as the search just read them
        spans = searcher.best_sentences(searched, hits) if question.best_sentences and hits else None
        query_id, log_error = None, ""
        if stored:
            logged = LoggedQuery(
                question=question.text,
                standalone_question=searched,
                hits=hits,
                mode=mode,
                k=k,
                face=caller.face,
                conversation=conversation,
                turn=turn,
                sources=question.sources,
                embedding_model=settings.embedding_model,
                collection=parts.settings.collection,
                who=_who(caller),
            )
            try:
                query_id = parts.querylog.record(logged)
            except RagError as error:  # the search stands; the face says the log could not be written
                log_error = f"{words.LOG_FAILED}{error}"
        return Found(
            question.text,
            searched,
            parts.settings.collection,
            hits,
            mode,
            k,
            searcher.rule(mode),
            stored,
            spans if spans is not None else ([(0, 0)] * len(hits) if question.best_sentences else None),
            query_id,
            log_error,
        )

    def ask(
        self, caller: Caller, collection: str, question: Question, history: Sequence[Turn] = (), conversation: str = ""
    ) -> Iterator[AskEvent]:
        """A conversation turn: the follow-up made standalone, searched, logged, answered as it streams, recorded.

        Refused at once (before the first event) without a chat model or the right to read. A search
        that fails raises from the iteration; a chat model that fails gives ``AnswerFailed``.
        """
        parts = self._parts(caller, collection, "read")
        if parts.answerer is None:
            raise NoChatModelError(words.NO_CHAT_MODEL)
        self._audit(caller, "ask", parts.settings.collection, detail=question.text)  # before the first event
        return self._turn(parts, caller, question, list(history), conversation)

    def _turn(
        self, parts: Pipelines, caller: Caller, question: Question, history: list[Turn], conversation: str
    ) -> Iterator[AskEvent]:
        from pipelines.answers.conversation import Turn  # LangChain: only where a chat model answers

        answerer, rewriter = parts.answerer, parts.rewriter
        assert answerer is not None  # checked by ask
        assert rewriter is not None  # made with the answerer
        searched = question.text
        if history:
            try:
                searched = rewriter.standalone(question.text, history)
            except GenerationError as error:
                yield RewriteFailed(f"{words.REWRITE_FAILED}{error}")
            else:
                if searched != question.text:
                    yield Rewritten(searched)
        found = self._search(parts, caller, question, searched, conversation, len(history))
        yield Searched(found)
        shown: dict[str, Any] = {"query_id": found.query_id, "emphases": tuple(found.spans or ())}
        text = ""
        try:
            passages = answerer.passages(found.hits)
            for piece in answerer.stream(searched, passages):
                text += piece
                yield Delta(piece)
        except GenerationError as error:
            message = str(error)
            yield AnswerFailed(message, Turn.answering(question.text, searched, message, found.hits, **shown))
            return
        answer = answerer.finish(searched, passages, text)
        # the answer stands when the log cannot take it: the question's row (or its failure) came with the hits
        with contextlib.suppress(RagError):
            parts.querylog.record_answer(found.query_id, answer.text, [c.to_dict() for c in answer.citations])
        yield Answered(answer, Turn.answering(question.text, searched, answer, found.hits, **shown))

    # -- passages and originals -----------------------------------------------------------------------

    def surroundings(self, caller: Caller, collection: str, hit: Hit) -> tuple[str, str]:
        """The document's text just before and just after a hit."""
        return self._parts(caller, collection, "read").searcher.surroundings(hit)

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

        document = parts.store.document(source)
        if document is None:
            raise DocumentNotFoundError(words.DOCUMENT_MISSING.format(source=source))
        found = parts.store.chunks_at(document.source, document.version, [chunk_index]) if chunk_index >= 0 else []
        if chunk_index >= document.chunks or not found:
            raise DocumentNotFoundError(words.CHUNK_MISSING)
        chunk = found[0]
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

    # -- the query log --------------------------------------------------------------------------------

    def feedback(
        self,
        caller: Caller,
        query_id: int,
        target: Target,
        rating: int | None,
        comment: str | None = None,
        rank: int = 0,
    ) -> None:
        """👍 (1), 👎 (-1) or neither (None), and a comment, on a logged question's answer or card."""
        judged = f"質問 {query_id}、{'回答' if target == 'answer' else f'{rank} 位'}、{rating}"
        with self._recorded(caller, "feedback", detail=judged):
            self.library.querylog.feedback(query_id, target, rating, comment, rank, who=_who(caller))

    def log(self, caller: Caller) -> list[dict[str, Any]]:
        """Every logged question with its hits, answer and feedback, oldest first."""
        return self.library.querylog.export()

    @property
    def logging(self) -> bool:
        """Whether questions are logged (``RAG_QUERY_LOG``)."""
        return self.library.querylog.enabled

    # -- the audit log --------------------------------------------------------------------------------

    def audit(self, caller: Caller, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        """The audit log's rows at or after ``since``, oldest first (``limit``: the latest that many).

        Only for a caller who administers every collection (``reads_audit``).
        """
        if not self.reads_audit(caller):
            message = (
                "監査ログを読む権限がありません（すべてのコレクションの管理権限が要ります）。管理者に確かめてください。"
            )
            self._refused(caller, "*", message)
            raise PermissionDeniedError(message)
        return self.library.audit.entries(since, limit)

    def reads_audit(self, caller: Caller) -> bool:
        """Whether the caller may read the audit log: every right, or ``admin`` of every collection (``*``)."""
        return caller.may("*", "admin")

    @functools.cached_property
    def policy(self) -> PolicySource:
        """``RAG_POLICY_FILE``'s rights for signed-in people, reread as it changes, each reading audited."""
        return load_policy(self.settings.policy_file, on_change=self._policy_changed)

    def _policy_changed(self, detail: str) -> None:
        with contextlib.suppress(AuditError):  # the policy in force does not wait on the log
            self.policy_reloaded(Caller("cli", "system"), detail)

    def sign_in(self, face: Face, user: str, password: str, address: str = "") -> Caller:
        """A person signed in with their directory's user name and password (LDAP / Active Directory).

        Refused with the same words for an unknown user and a wrong password; both ways audited.
        """
        from pipelines.service.signin import LdapDirectory

        try:
            person = LdapDirectory.from_settings(self.settings).authenticate(user, password)
        except AccessError as error:
            self.sign_in_refused(Caller(face, user, address), str(error))
            raise
        caller = self.person(face, person, address)
        self.signed_in(caller)
        return caller

    def person(self, face: Face, person: Person, address: str = "") -> Caller:
        """The caller of a person someone else signed in (an OpenID Connect provider), with the policy's rights."""
        return Caller(face, person.user, address, self.policy, user=person.user, groups=person.groups)

    def signed_in(self, caller: Caller) -> None:
        """Record a sign-in (a face that signs people in calls this once it knows who they are)."""
        self._audit(caller, "sign_in")

    def sign_in_refused(self, caller: Caller, reason: str) -> None:
        """Record a refused sign-in (an unknown API key); the face refuses it whether or not the row is written."""
        with contextlib.suppress(AuditError):
            self._audit(caller, "sign_in_failed", detail=reason, outcome="refused")

    def policy_reloaded(self, caller: Caller, detail: str = "") -> None:
        """Record that the rights were read again (what changed in ``detail``)."""
        self._audit(caller, "policy_reloaded", detail=detail)

    def _audit(
        self,
        caller: Caller,
        action: Action,
        collection: str = "",
        document: str = "",
        detail: str = "",
        outcome: Outcome = "ok",
    ) -> None:
        self.library.audit.write(
            _who(caller),
            caller.face,
            action,
            address=caller.address,
            collection=collection,
            document=document,
            detail=detail,
            outcome=outcome,
        )

    def _refused(self, caller: Caller, collection: str, reason: str) -> None:
        # the refusal stands whether or not its row can be written: nothing was done
        with contextlib.suppress(AuditError):
            self._audit(caller, "refused", collection, detail=reason, outcome="refused")

    @contextlib.contextmanager
    def _recorded(
        self,
        caller: Caller,
        action: Action,
        collection: str = "",
        document: str = "",
        detail: str = "",
        *,
        before: bool = True,
    ) -> Iterator[_Note]:
        """An audited act: its row written when it ends (failed: with why); ``before``: refused unless the log can take it.

        An act that changes something checks first, since it cannot be undone; one that only reads
        writes its row before its result is returned, so nothing is shown that was not recorded.
        """
        if before:
            self.library.audit.ready()
        note = _Note(document, detail)
        try:
            yield note
        except (RagError, IngestError) as error:
            self._audit(caller, action, collection, note.document, f"{note.detail}（{error}）", "failed")
            raise
        self._audit(caller, action, collection, note.document, note.detail, note.outcome)

    @staticmethod
    def _noted(note: _Note, result: Ingested) -> Ingested:
        """An ingest's files and what became of each, in its row; its document when there was one file."""
        note.detail = "、".join(f"{r.source}（{words.STATUS_LABELS[r.status]}）" for r in result.reports) or note.detail
        note.document = result.reports[0].source if len(result.reports) == 1 else ""
        if result.error:  # the store or the model refused: the files before it went in
            note.detail += f"（{result.error}）"
            note.outcome = "failed"
        return result


def _who(caller: Caller) -> str:
    """The caller's name in the logs: a user, an API key's digest, the machine's user; else the face."""
    return caller.name or caller.face
