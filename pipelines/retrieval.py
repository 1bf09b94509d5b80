"""Retrieval: a Japanese question to the best-matching stored passages, scored by cosine similarity."""

from __future__ import annotations

from collections.abc import Sequence

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

    def search(self, question: str, k: int = 5) -> list[Hit]:
        """The top ``k`` passages for ``question``, best first."""
        return self.search_many([question], k)[0]

    def search_many(self, questions: Sequence[str], k: int = 5, progress: Progress | None = None) -> list[list[Hit]]:
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
        return self.store.query_many(self.embedder.embed_queries(queries, progress), k)
