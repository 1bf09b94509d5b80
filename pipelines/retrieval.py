"""Retrieval: a Japanese question to the best-matching stored passages, scored by cosine similarity."""

from __future__ import annotations

from collections.abc import Sequence

from ingest.chunking import split_sentences, trim_span
from ingest.normalize import normalize_text
from pipelines.embedder import Progress, TextEmbedder
from pipelines.errors import RagError
from pipelines.store import ChromaStore, Hit


class Searcher:
    """Embeds a question the way documents were embedded and asks the store for the nearest chunks."""

    def __init__(self, embedder: TextEmbedder, store: ChromaStore) -> None:
        self.embedder = embedder
        self.store = store
        self._checked = False

    def search(self, question: str, k: int = 5, sources: Sequence[str] | None = None) -> list[Hit]:
        """The top ``k`` passages for ``question``, best first; ``sources`` limits it to those documents."""
        return self.search_many([question], k, sources)[0]

    def search_many(
        self,
        questions: Sequence[str],
        k: int = 5,
        sources: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> list[list[Hit]]:
        """The top ``k`` passages for each question, embedding the questions in batches."""
        queries = [normalize_text(q) for q in questions]
        if not all(queries):
            raise RagError("質問が空です。検索したい内容を入力してください。")
        if k < 1:
            raise RagError(f"件数 k は 1 以上にしてください（現在 {k}）。")
        if self.store.count() == 0:
            return [[] for _ in queries]
        if not self._checked:
            embedder = self.embedder
            self.store.check_model(embedder.model_name, embedder.dimension, embedder.fingerprint())
            self._checked = True
        return self.store.query_many(self.embedder.embed_queries(queries, progress), k, sources)

    def surroundings(self, hit: Hit) -> tuple[str, str]:
        """The document's text just before and just after a hit: the parts of its neighbouring chunks
        that the hit does not already show (neighbours overlap it by a sentence or two)."""
        neighbours = {
            h.chunk_index: h
            for h in self.store.chunks_at(hit.source, hit.version, [hit.chunk_index - 1, hit.chunk_index + 1])
        }
        before = neighbours.get(hit.chunk_index - 1)
        after = neighbours.get(hit.chunk_index + 1)
        head = before.text[: max(hit.char_start - before.char_start, 0)].rstrip() if before else ""
        tail = after.text[max(hit.char_end - after.char_start, 0) :].lstrip() if after else ""
        return head, tail

    def best_sentences(self, question: str, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        """For each hit, the span (in ``hit.text``) of its sentence most similar to the question."""
        spans = [[(a, b) for a, b in (trim_span(h.text, *s) for s in split_sentences(h.text)) if a < b] for h in hits]
        sentences = [h.text[a:b] for h, row in zip(hits, spans, strict=True) for a, b in row]
        if not sentences:
            return [(0, 0) for _ in hits]
        query = self.embedder.embed_query(normalize_text(question))
        scores = iter(self.embedder.embed_documents(sentences) @ query)
        best = []
        for row in spans:
            scored = [(next(scores), span) for span in row]
            best.append(max(scored)[1] if scored else (0, 0))
        return best
