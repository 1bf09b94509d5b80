"""The product's parts built from settings: the embedder (in-process or remote) and the store (embedded or server)."""

from __future__ import annotations

from pipelines.embedder import Embedder, TextEmbedder
from pipelines.indexing import Indexer
from pipelines.profiles import prefixes_for
from pipelines.remote import RemoteEmbedder
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
    )


def make_indexer(settings: Settings, embedder: TextEmbedder, store: ChromaStore) -> Indexer:
    """The indexer with the configured chunking and upload limit."""
    return Indexer(
        embedder, store, settings.chunk_tokens, settings.chunk_overlap, max_bytes=settings.max_upload_mb * 1024 * 1024
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
