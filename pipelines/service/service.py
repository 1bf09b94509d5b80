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
    surroundings / passage_text / passage / original           a passage's context, its text by id, its view, the file
    feedback / log                                             👍/👎 on a logged question; the log
    audit / signed_in / sign_in_refused / policy_reloaded      the audit log: read by an admin of all; acts of the faces
    add_source / sources / remove_source / sync / origins      folders and SMB shares kept in sync (sources.py)

Every act is written to the audit log (pipelines/service/audit.py) with its caller, its collection and
document: a refusal of a right (``_allow``), a search, an answer, a passage viewed, an original
downloaded, an upload, a deletion, a collection made or deleted, feedback. Listing collections and
documents is recorded only where the face asks (``recorded``: MCP, where every call is a row). No
act goes unrecorded: one that changes something is refused before it starts when its row cannot be
written (``AuditError``) and recorded when it ends, failed ones with why; one that only reads is
recorded before its result is returned, and nothing is returned when its row cannot be written. A refusal is refused whether or not its row could be written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import (
    DocumentNotFoundError,
    GenerationError,
    NoChatModelError,
    RagError,
)
from pipelines.search.retrieval import Searcher
from pipelines.search.sentence_choice import RefineReport, refine_all
from pipelines.service import words
from pipelines.service.compose import Pipelines
from pipelines.service.querylog import LoggedQuery, Target
from pipelines.service.results import (
    Answered,
    AnswerFailed,
    AskEvent,
    Caller,
    Delta,
    Found,
    Ingested,
    Question,
    RewriteFailed,
    Rewritten,
    Right,
    Searched,
)
from pipelines.store.collections import CollectionInfo
from pipelines.store.indexing import FileProgress, FileReport, mixed_precisions
from pipelines.store.records import StoredDocument

if TYPE_CHECKING:
    from pipelines.answers.conversation import Turn

from pipelines.service.core import ServiceCore, who
from pipelines.service.passages import Passages
from pipelines.service.people import People
from pipelines.service.sources import Sources


class Service(Passages, People, Sources, ServiceCore):
    """The operations on a ``Library``'s collections, each checked against its caller's rights.

    Its parts: ``ServiceCore`` (the rights check, the audit row), ``Passages`` (context, views, originals),
    ``People`` (sign-in, the policy, the audit log's reading); here, the collections, documents and questions.
    """

    # -- collections ----------------------------------------------------------------------------------

    def collections(self, caller: Caller, *, recorded: bool = False) -> list[CollectionInfo]:
        """The collections the caller may read, with their counts, the default first.

        ``recorded``: the listing is an audit row too (an assistant's call over MCP, where every call is
        one; the page lists on every redraw, and does not).
        """
        if not recorded:
            return [info for info in self.library.catalogue() if caller.may(info.name, "read")]
        with self._recorded(caller, "list", before=False) as note:
            listed = [info for info in self.library.catalogue() if caller.may(info.name, "read")]
            note.detail = f"{len(listed)} コレクション"
            return listed

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
            deleted = self.library.delete(cleaned)
            self.sync_state.remove_collection(cleaned)  # its sources go with it
            return deleted

    # -- documents ------------------------------------------------------------------------------------

    def documents(self, caller: Caller, collection: str, *, recorded: bool = False) -> list[StoredDocument]:
        """The collection's documents, by name (``recorded``: an audit row too, as for ``collections``)."""
        parts = self._parts(caller, collection, "read")
        if not recorded:
            return parts.store.documents()
        with self._recorded(caller, "list", parts.settings.collection, before=False) as note:
            documents = parts.store.documents()
            note.detail = f"{len(documents)} 文書"
            return documents

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

    def refine_sentences(
        self, caller: Caller, collection: str, progress: Callable[[int, int], None] | None = None
    ) -> RefineReport:
        """Embed alone the sentences of every stored passage of the collection whose best sentence is not yet
        exact, and keep them (sentence_choice.py): an admin's act, audited, for a night's timer."""
        parts = self._parts(caller, collection, "admin")
        searcher = parts.searcher
        if searcher.sentences is None:
            return RefineReport(0, 0, 0)
        with self._recorded(caller, "refine_sentences", parts.settings.collection, before=False) as note:
            store = parts.store
            documents = store.documents()
            chunks = (  # read a document at a time
                (Searcher.sentence_key_of(chunk), chunk.text)
                for document in documents
                for chunk in store.reader.document_chunks(document.source, document.version)
            )
            report = refine_all(
                chunks,
                searcher.sentences,
                searcher.embedder.model_name,
                searcher.gate.documents,
                total=sum(d.chunks for d in documents),
                progress=progress,
            )
            note.detail = words.REFINED.format(**report.to_dict())
            return report

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
                who=who(caller),
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
            self.library.querylog.feedback(query_id, target, rating, comment, rank, who=who(caller))

    def log(self, caller: Caller) -> list[dict[str, Any]]:
        """Every logged question with its hits, answer and feedback, oldest first."""
        return self.library.querylog.export()

    @property
    def logging(self) -> bool:
        """Whether questions are logged (``RAG_QUERY_LOG``)."""
        return self.library.querylog.enabled
