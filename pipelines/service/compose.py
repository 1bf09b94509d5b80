"""The composition root: every face (the page, each CLI verb, evaluation, the HTTP API) gets its parts from ``build``.

``build(settings)`` wires, for the collection ``settings.collection``, the embedder (in-process or remote), the store (embedded or a server), the
keyword index, the originals (each document's file, pipelines/store/originals.py), the indexer, the searcher,
the query log and, on first use, the answerer and the rewriter of follow-up questions, so a setting means the same
on every face. Building loads no model and reads no document: the model loads on first use (or on
``embedder.load()``), so a command or page that needs none starts at once.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.isolation import IsolatedReader, Reader
from ingest.limits import Limits
from ingest.ocr import OcrOptions
from pipelines.model.embedder import Embedder, TextEmbedder
from pipelines.model.gate import QueryGate
from pipelines.model.profiles import prefixes_for
from pipelines.model.remote import RemoteEmbedder
from pipelines.search.rerank import CrossEncoderReranker
from pipelines.search.retrieval import Fusion, Searcher
from pipelines.service import audit
from pipelines.service.audit import AuditLog
from pipelines.service.querylog import FILE_NAME, QueryLog
from pipelines.settings import LIMITS, Settings, machine_cache_dir
from pipelines.store.chroma import ChromaStore
from pipelines.store.collections import LEGACY, Collections, keyword_path
from pipelines.store.indexing import Indexer
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer
from pipelines.store.originals import Originals
from pipelines.store.sentences import FILE_NAME as SENTENCES_FILE
from pipelines.store.sentences import SentenceVectors

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from pipelines.answers.answer import Answerer
    from pipelines.answers.conversation import Rewriter


def make_embedder(settings: Settings) -> TextEmbedder:
    """The configured embedder, with the model's prefixes unless the settings override them."""
    query, document = prefixes_for(settings.embedding_model)
    query = query if settings.query_prefix is None else settings.query_prefix
    document = document if settings.document_prefix is None else settings.document_prefix
    if settings.embedding_url:
        return RemoteEmbedder(
            settings.embedding_url,
            settings.embedding_model,
            api_key=settings.embedding_api_key,
            batch_size=settings.batch_size,
            query_prefix=query,
            document_prefix=document,
            tokenizer=settings.embedding_tokenizer,
        )
    return Embedder(
        settings.embedding_model,
        device=settings.device,
        batch_size=settings.batch_size,
        query_prefix=query,
        document_prefix=document,
        precision=settings.precision,
        query_precision=settings.query_precision,
        threads=settings.threads,
        cache_dir=settings.cache_dir or machine_cache_dir(),
        background_checks=settings.background_checks,
    )


@dataclass
class Pipelines:
    """The product's objects for one set of settings, shared by whatever face built them."""

    settings: Settings
    embedder: TextEmbedder
    store: ChromaStore
    keyword: KeywordIndex
    indexer: Indexer
    searcher: Searcher
    # each stored document's file as it was given (none for a text that was no file: ``get`` is None)
    originals: Originals
    # the questions asked, what was found and answered, and people's feedback (RAG_QUERY_LOG)
    querylog: QueryLog
    # one writer at a time within this process (the store's file lock orders processes)
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def answerer(self) -> Answerer | None:
        """The chat model for answers, set up on first use; None when ``RAG_LLM_URL`` is unset."""
        return make_answerer(self.settings)

    @functools.cached_property
    def rewriter(self) -> Rewriter | None:
        """Follow-up questions made standalone by the answerer's chat model; None when ``RAG_LLM_URL`` is unset."""
        answerer = self.answerer
        return None if answerer is None else make_rewriter(self.settings, answerer.model)


def build(
    settings: Settings,
    *,
    embedder: TextEmbedder | None = None,
    store: ChromaStore | None = None,
    keyword: KeywordIndex | None = None,
    originals: Originals | None = None,
    collections: Collections | None = None,
    querylog: QueryLog | None = None,
    reader: Reader | None = None,
    gate: QueryGate | None = None,
) -> Pipelines:
    """Every part of the collection ``settings.collection``, wired from ``settings``; a part given here (a
    loaded embedder, a scratch store, the collections of a long-running process, their file reader) is used instead.

    A collection other than ``default`` must exist (``collections create``): ``CollectionNotFoundError``.
    A store given here is used as it is, with the keyword index of its Chroma name. ``gate``: the
    model's use at search time, one per process (``Library``) and per embedder.
    """
    embedder = embedder or make_embedder(settings)
    sentences = make_sentences(settings)
    if store is None:
        location = (collections or make_collections(settings)).open(settings.collection)
        store, keyword_file, originals_dir = location.store, location.keyword_path, location.originals_dir
    else:
        keyword_file = keyword_path(settings.data_dir / "keyword", store.name, _keyword_prefix(settings))
        originals_dir = _originals_dir(settings)
    keyword = keyword or KeywordIndex(SudachiAnalyzer(), keyword_file)
    originals = originals or Originals(originals_dir)
    return Pipelines(
        settings,
        embedder,
        store,
        keyword,
        _indexer(settings, embedder, store, keyword, originals, reader or make_reader(settings), sentences),
        _searcher(settings, embedder, store, keyword, gate or QueryGate(embedder), sentences),
        originals,
        querylog or make_querylog(settings),
    )


def make_sentences(settings: Settings) -> SentenceVectors:
    """The stored passages' sentences' vectors, one file in ``RAG_DATA_DIR`` for every collection (a local file,
    also with a Chroma server: another machine's searches embed their hits' sentences once and keep them)."""
    return SentenceVectors(settings.data_dir / SENTENCES_FILE)


def make_querylog(settings: Settings) -> QueryLog:
    """The query and feedback log in ``RAG_DATA_DIR`` (a local file, also with a Chroma server); off: writes nothing."""
    return QueryLog(settings.data_dir / FILE_NAME, enabled=settings.query_log)


def make_auditlog(settings: Settings) -> AuditLog:
    """The audit log in ``RAG_DATA_DIR``, keeping each row ``RAG_AUDIT_DAYS`` (0: forever)."""
    return AuditLog(settings.data_dir / audit.FILE_NAME, days=settings.audit_days)


def make_collections(settings: Settings) -> Collections:
    """The collections in the configured store (embedded in ``RAG_DATA_DIR`` or on ``RAG_CHROMA_HOST``).

    Keyword indexes are saved in ``RAG_DATA_DIR/keyword`` (for a Chroma server too: they are a local
    cache), originals in ``RAG_ORIGINALS_DIR``.
    """
    return Collections(
        _store(settings),
        settings.data_dir / "keyword",
        _originals_dir(settings),
        keyword_prefix=_keyword_prefix(settings),
    )


def _originals_dir(settings: Settings) -> Path:
    return settings.originals_dir or settings.data_dir / "originals"


def _keyword_prefix(settings: Settings) -> str:
    """A server's keyword indexes are told apart from the embedded store's by its host and port."""
    return f"{settings.chroma_host}-{settings.chroma_port}-" if settings.chroma_host else ""


def prefetch_for(embedder: TextEmbedder) -> int:
    """How many files to read and chunk ahead while one is embedded: none where the embedding uses this CPU.

    A model on this machine's CPU keeps every core busy (ONNX Runtime and torch take one thread per
    core); a file read and chunked beside it takes cores from those threads, and each product waits
    for its slowest thread. On a 2-core AVX2 CPU, ingesting 10 articles each in turn took 6 % less
    time than with two read ahead (docs/speed.md). A GPU or an embeddings server leaves the cores
    idle, and reading ahead fills them.
    """
    return 0 if isinstance(embedder, Embedder) and embedder.on_cpu() else 2


def _limits(settings: Settings) -> Limits:
    return Limits(**{name: getattr(settings, name) for name in LIMITS})


def make_reader(settings: Settings) -> IsolatedReader:
    """How files are read: in a child process (``IsolatedReader``), so that a file that hangs the parser,
    balloons or crashes it is refused alone and the page's process goes on. A process needs one, for
    every collection (``Library``); its child starts at the first file and ends with ``close``."""
    limits = _limits(settings)
    return IsolatedReader(
        seconds=limits.seconds_per_file,
        memory_mb=limits.reader_memory_mb,
        ocr=OcrOptions(mode=settings.ocr, langs=settings.ocr_langs),
    )


def _indexer(
    settings: Settings,
    embedder: TextEmbedder,
    store: ChromaStore,
    keyword: KeywordIndex,
    originals: Originals,
    reader: Reader,
    sentences: SentenceVectors,
) -> Indexer:
    """The indexer with the configured chunking, upload and file limits, keeping the keyword index and originals in step."""
    limits = _limits(settings)
    return Indexer(
        embedder,
        store,
        settings.chunk_tokens,
        settings.chunk_overlap,
        max_bytes=settings.max_upload_mb * 1024 * 1024,
        keyword=keyword,
        prefetch=prefetch_for(embedder),
        limits=limits,
        originals=originals,
        context=settings.chunk_context,
        reader=reader,
        sentences=sentences,
    )


def _searcher(
    settings: Settings,
    embedder: TextEmbedder,
    store: ChromaStore,
    keyword: KeywordIndex,
    gate: QueryGate,
    sentences: SentenceVectors,
) -> Searcher:
    """The searcher with the configured candidate count and, when ``RAG_RERANKER`` is set, the reranker."""
    reranker = (
        CrossEncoderReranker(settings.reranker, device=settings.device, batch_size=settings.batch_size)
        if settings.reranker
        else None
    )
    return Searcher(
        embedder,
        store,
        keyword,
        candidates=settings.candidates,
        fusion=Fusion(settings.keyword_weight),
        reranker=reranker,
        rerank_candidates=settings.rerank_candidates,
        gate=gate,
        sentences=sentences,
        sentence_check=settings.sentence_check,
        refine=settings.sentence_refine,
    )


def _store(settings: Settings) -> ChromaStore:
    """The default collection's store: on a Chroma server when ``RAG_CHROMA_HOST`` is set, else embedded in ``RAG_DATA_DIR``."""
    if settings.chroma_host:
        return ChromaStore.http(
            settings.chroma_host,
            settings.chroma_port,
            LEGACY,
            ssl=settings.chroma_ssl,
            token=settings.chroma_token,
        )
    return ChromaStore.persistent(settings.data_dir, LEGACY)


def make_chat_model(settings: Settings) -> BaseChatModel | None:
    """The chat model at ``RAG_LLM_URL`` through LangChain's ``ChatOpenAI``; None when unset."""
    if not settings.llm_url:
        return None
    from langchain_openai import ChatOpenAI  # over a second to import: only when answers are on
    from pydantic import SecretStr

    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_url,
        # never OPENAI_API_KEY from the environment: it is not meant for this server; local servers want none
        api_key=SecretStr(settings.llm_api_key or "none"),
        timeout=settings.llm_timeout,
        max_retries=1,  # one retry for a dropped connection or a 5xx; a person is waiting
    )


def _model_description(settings: Settings, role: str) -> str:
    return f"{role}の言語モデル（{settings.llm_model}、{settings.llm_url}）"


def make_answerer(settings: Settings) -> Answerer | None:
    """Answers from the chat model at ``RAG_LLM_URL``; None when unset."""
    model = make_chat_model(settings)
    if model is None:
        return None
    from pipelines.answers.answer import Answerer  # LangChain: a second to import, for a command that answers

    return Answerer(
        model,
        context_tokens=settings.llm_context_tokens,
        model_description=_model_description(settings, "回答用"),
    )


def make_rewriter(settings: Settings, model: BaseChatModel) -> Rewriter:
    """Follow-ups made standalone by ``model``, from the earlier turns within ``RAG_LLM_HISTORY_TOKENS``."""
    from pipelines.answers.conversation import Rewriter

    return Rewriter(
        model,
        history_tokens=settings.llm_history_tokens,
        model_description=_model_description(settings, "質問の書き換えに使う"),
    )
