"""The product's parts built from settings: embedder (in-process or remote), store (embedded or server), answerer."""

from __future__ import annotations

from pipelines.answer import Answerer
from pipelines.embedder import Embedder, TextEmbedder
from pipelines.indexing import Indexer
from pipelines.keyword import KeywordIndex, SudachiAnalyzer
from pipelines.profiles import prefixes_for
from pipelines.remote import RemoteEmbedder
from pipelines.rerank import CrossEncoderReranker
from pipelines.retrieval import Searcher
from pipelines.settings import Settings
from pipelines.store import ChromaStore


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
        )
    return Embedder(
        settings.embedding_model,
        device=settings.device,
        batch_size=settings.batch_size,
        query_prefix=query,
        document_prefix=document,
        precision=settings.precision,
        query_precision=settings.query_precision,
    )


def make_indexer(
    settings: Settings, embedder: TextEmbedder, store: ChromaStore, keyword: KeywordIndex | None = None
) -> Indexer:
    """The indexer with the configured chunking and upload limit, keeping the keyword index in step."""
    return Indexer(
        embedder,
        store,
        settings.chunk_tokens,
        settings.chunk_overlap,
        max_bytes=settings.max_upload_mb * 1024 * 1024,
        keyword=keyword,
    )


def make_keyword_index(settings: Settings) -> KeywordIndex:
    """The keyword index, saved in ``RAG_DATA_DIR/keyword`` (for a Chroma server too: it is a local cache)."""
    name = settings.collection
    if settings.chroma_host:
        name = f"{settings.chroma_host}-{settings.chroma_port}-{name}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return KeywordIndex(SudachiAnalyzer(), settings.data_dir / "keyword" / f"{safe}.npz")


def make_searcher(settings: Settings, embedder: TextEmbedder, store: ChromaStore, keyword: KeywordIndex) -> Searcher:
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
        reranker=reranker,
        rerank_candidates=settings.rerank_candidates,
    )


def make_store(settings: Settings) -> ChromaStore:
    """A Chroma server when ``RAG_CHROMA_HOST`` is set, else the embedded store in ``RAG_DATA_DIR``."""
    if settings.chroma_host:
        return ChromaStore.http(
            settings.chroma_host,
            settings.chroma_port,
            settings.collection,
            ssl=settings.chroma_ssl,
            token=settings.chroma_token,
        )
    return ChromaStore.persistent(settings.data_dir, settings.collection)


def make_answerer(settings: Settings) -> Answerer | None:
    """Answers from the chat model at ``RAG_LLM_URL`` through LangChain's ``ChatOpenAI``; None when unset."""
    if not settings.llm_url:
        return None
    from langchain_openai import ChatOpenAI  # over a second to import: only when answers are on
    from pydantic import SecretStr

    model = ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_url,
        # never OPENAI_API_KEY from the environment: it is not meant for this server; local servers want none
        api_key=SecretStr(settings.llm_api_key or "none"),
        timeout=settings.llm_timeout,
        max_retries=1,  # one retry for a dropped connection or a 5xx; a person is waiting
    )
    return Answerer(
        model,
        context_tokens=settings.llm_context_tokens,
        where=f"回答用の言語モデル（{settings.llm_model}、{settings.llm_url}）",
    )
