"""LangChain faces of the product: the retriever as a BaseRetriever, the embedder as Embeddings, an answer chain,
and a history-aware retriever for follow-up questions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnableParallel, RunnablePassthrough
from pydantic import Field

from ingest.normalize import normalize_text
from pipelines.answers.answer import Answerer, cite
from pipelines.answers.conversation import Rewriter
from pipelines.model.embedder import TextEmbedder
from pipelines.search.retrieval import Hit, Searcher


def hit_document(hit: Hit) -> Document:
    """A hit as a LangChain document: its text, and every other field of the hit in the metadata."""
    metadata = {name: value for name, value in hit.to_dict().items() if name != "text"}
    return Document(page_content=hit.chunk.text, metadata=metadata, id=hit.chunk_id or None)


def document_hit(document: Document) -> Hit:
    """The hit back from a document that ``hit_document`` made."""
    return Hit.from_dict({**document.metadata, "text": document.page_content})


class SearcherRetriever(BaseRetriever):
    """The product's search as a LangChain retriever: the best ``k`` passages as documents.

    Each document's metadata holds the hit's fields: ``cosine`` (the cosine similarity), ``source``,
    ``page``, ``chunk_index``, ``rank`` and the rest. ``sources`` limits the search to those
    documents; ``search_kwargs`` go to ``Searcher.search`` as they are.
    """

    searcher: Searcher
    k: int = 5
    sources: list[str] | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.searcher.search(query, self.k, self.sources, **self.search_kwargs)
        return [hit_document(hit) for hit in hits]


class EmbedderEmbeddings(Embeddings):
    """The product's embedder as LangChain embeddings: unit vectors as lists of floats.

    Texts are normalised as the product normalises documents and questions (NFKC, line ends), and
    the model's passage and query prefixes are added, so the vectors are the ones the store holds.
    """

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.embedder.embed_documents([normalize_text(t) for t in texts])
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.embed_query(normalize_text(text))]


def answer_chain(retriever: BaseRetriever, answerer: Answerer) -> Runnable[str, dict[str, Any]]:
    """A question in, a dict out: ``question``, ``documents`` (retrieved), ``passages`` (given to the
    model), ``answer`` (its text), ``citations`` and ``dropped`` (cited numbers no passage has).

    Streamed, the documents come first and the answer follows in pieces. The retriever must return
    documents made by ``hit_document`` (``SearcherRetriever`` does).
    """

    def fit(inputs: dict[str, Any]) -> Any:
        return answerer.passages([document_hit(d) for d in inputs["documents"]])

    def generate(inputs: dict[str, Any], config: RunnableConfig) -> Iterator[str]:
        yield from answerer.stream(inputs["question"], inputs["passages"], config)

    return (
        RunnableParallel(question=RunnablePassthrough(), documents=retriever)
        .assign(passages=RunnableLambda(fit))
        .assign(answer=RunnableLambda(generate))
        .assign(
            citations=RunnableLambda(lambda x: cite(x["answer"], x["passages"])[0]),
            dropped=RunnableLambda(lambda x: cite(x["answer"], x["passages"])[1]),
        )
    )


def history_aware_retriever(rewriter: Rewriter, retriever: BaseRetriever) -> Runnable[dict[str, Any], list[Document]]:
    """``{"question": str, "turns": [Turn, …]}`` in, the documents for the question made standalone out.

    LangChain's history-aware retriever with the product's rewriting (``Rewriter``: the latest turns
    within its token budget; no model call without an earlier turn).
    """

    def standalone(inputs: dict[str, Any]) -> str:
        return rewriter.standalone(inputs["question"], inputs.get("turns") or [])

    return RunnableLambda(standalone) | retriever
