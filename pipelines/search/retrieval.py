"""Retrieval: a Japanese question to the best-matching stored passages, by meaning, by words, or both.

Every mode gathers the same two candidate lists, the ``candidates`` nearest chunks by cosine
similarity (dense) and the ``candidates`` best by BM25 over Sudachi words (keyword), and scores every
candidate both ways, so a hit always carries its cosine, its BM25 score and its place in each list.
The modes differ only in the rule that orders them (``rule()`` says it in words, for the page):

- ``dense``: by cosine similarity;
- ``keyword``: by BM25 score, only chunks that share a word with the question;
- ``hybrid``: by a convex combination of the two scores, each on a 0 to 1 scale over the candidates
  (BM25 divided by the best; the cosine from the least similar candidate's, 0, to the most similar's,
  1), half keyword and half meaning as tuned on JSQuAD (docs/evaluation.md; ``RAG_KEYWORD_WEIGHT``).
  The cosines of one question's candidates lie close together, so they are stretched over the pool as
  BM25 spreads from 0 to the best by itself.

An optional cross-encoder then reorders the first ``rerank_candidates`` of that order.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ingest.chunking import sentence_spans
from ingest.document import Place, describe
from ingest.normalize import normalize_text
from pipelines.choices import MODES, Mode
from pipelines.errors import RagError
from pipelines.model.embedder import Progress, TextEmbedder
from pipelines.model.gate import QueryGate
from pipelines.search.sentence_choice import Pending, SentenceRefiner, sentence_scores
from pipelines.store.chroma import ChromaStore
from pipelines.store.keyword import KeywordIndex, KeywordResult, SudachiAnalyzer
from pipelines.store.records import StoredChunk
from pipelines.store.sentences import Sentences, SentenceVectors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """A stored chunk found for a question, with every score that placed it, each named for what it is.

    ``chunk`` is the passage: its text and where it lies (``chunk.location``, ``chunk.place_at``).
    ``cosine`` is the cosine similarity of the question and the passage (always computed, also for a
    passage that only keyword search found). ``keyword_score`` is its BM25 score for the question's
    words (0 when it shares none; None when no keyword index was asked). ``dense_rank`` and
    ``keyword_rank`` are its places in the dense and keyword candidate lists (None: not in that
    list), ``rerank_score`` the cross-encoder's score when reranking is on. ``rank`` is its place in
    the final order; the rule that made that order depends on the retrieval mode.
    """

    chunk: StoredChunk
    rank: int
    cosine: float
    keyword_score: float | None = None
    dense_rank: int | None = None
    keyword_rank: int | None = None
    rerank_score: float | None = None

    @property
    def chunk_id(self) -> str:
        """The chunk's record id (what ordering breaks ties on, as for a ``Candidate``)."""
        return self.chunk.chunk_id

    def to_dict(self) -> dict[str, Any]:
        """The hit for JSON: every score, and its location both as the card's label and field by field."""
        chunk = self.chunk
        first, last = chunk.place, chunk.place_end
        return {
            "rank": self.rank,
            "cosine": self.cosine,
            "text": chunk.text,
            "source": chunk.source,
            "page": chunk.page,
            "page_end": chunk.page_end,
            "chunk_index": chunk.chunk_index,
            "char_start": chunk.char_start,
            "char_end": chunk.char_end,
            "content_hash": chunk.content_hash,
            "version": chunk.version,
            "chunk_id": chunk.chunk_id,
            "keyword_score": self.keyword_score,
            "dense_rank": self.dense_rank,
            "keyword_rank": self.keyword_rank,
            "rerank_score": self.rerank_score,
            "breaks": [list(pair) for pair in chunk.breaks],
            "location": chunk.location,
            "slide": first.slide,
            "slide_end": last.slide,
            "sheet": first.sheet,
            "row": first.row,
            "row_end": last.row,
            "heading": list(first.heading),
            "ocr": chunk.ocr,
        }

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> Hit:
        """``to_dict``'s inverse (fields it does not know are ignored)."""
        heading, ocr = tuple(fields.get("heading") or ()), bool(fields.get("ocr", False))
        page, page_end = fields.get("page"), fields.get("page_end")
        first = Place(page, fields.get("slide"), fields.get("sheet"), fields.get("row"), heading, ocr)
        last = Place(page_end, fields.get("slide_end"), fields.get("sheet"), fields.get("row_end"), heading, ocr)
        chunk = StoredChunk(
            text=fields["text"],
            source=fields["source"],
            chunk_index=fields["chunk_index"],
            char_start=fields["char_start"],
            char_end=fields["char_end"],
            content_hash=fields["content_hash"],
            version=fields["version"],
            chunk_id=fields.get("chunk_id", ""),
            place=first,
            place_end=last,
            breaks=tuple((int(a), int(b)) for a, b in fields.get("breaks") or ()),
        )
        scores = {name: fields[name] for name in _SCORES if name in fields}
        return cls(chunk, fields["rank"], fields["cosine"], **scores)


_SCORES = ("keyword_score", "dense_rank", "keyword_rank", "rerank_score")


class Scored(Protocol):
    """What ordering needs of a candidate: its id, its scores and its place in each list."""

    @property
    def chunk_id(self) -> str: ...

    @property
    def cosine(self) -> float: ...

    @property
    def keyword_score(self) -> float | None: ...

    @property
    def dense_rank(self) -> int | None: ...

    @property
    def keyword_rank(self) -> int | None: ...


S = TypeVar("S", bound=Scored)


@dataclass(frozen=True)
class Candidate:
    """A chunk in a question's candidate pool before its text is read: its id and every score.

    Ordering needs only these; the text and metadata are read for the hits that are shown.
    """

    chunk_id: str
    cosine: float
    keyword_score: float
    dense_rank: int | None
    keyword_rank: int | None


@dataclass(frozen=True)
class Fusion:
    """How hybrid mode combines the two scores: ``w·bm25/max_bm25 + (1 − w)·(cos − min_cos)/(max_cos − min_cos)``.

    The cosines of one question's candidates lie close together, so they are stretched over the pool
    (0 for the least similar candidate, 1 for the most) as BM25 spreads from 0 to its best by itself;
    divided by the best alone, they moved the order less than their weight said.
    """

    # tuned on JSQuAD with a semantic stand-in, on both paths with each chunk's context: the weight and the
    # stretch chosen on the even-numbered questions, checked on the odd ones (bench/quality_paths.py --pools,
    # bench/fusion_rules.py; docs/evaluation.md, "Chunks and fusion tuned again")
    keyword_weight: float = 0.5

    def order(self, candidates: Sequence[S]) -> list[S]:
        """Candidates best first under this rule (ties: higher cosine, then earlier chunk)."""
        if not candidates:
            return []
        top_keyword = max((h.keyword_score or 0.0) for h in candidates) or 1.0
        cosines = [h.cosine for h in candidates]
        low_cosine = min(cosines)
        spread = (max(cosines) - low_cosine) or 1.0
        w = self.keyword_weight

        def fused(hit: S) -> float:
            return w * (hit.keyword_score or 0.0) / top_keyword + (1.0 - w) * (hit.cosine - low_cosine) / spread

        return sorted(candidates, key=lambda h: (-fused(h), -h.cosine, h.chunk_id))


DEFAULT_FUSION = Fusion()
# questions whose vectors are kept (768 floats each, 3 KB)
QUESTION_CACHE = 1024


class Reranker(Protocol):
    """Scores (question, passage) pairs; higher is more relevant."""

    model_name: str

    def scores(self, question: str, passages: Sequence[str]) -> list[float]: ...


class Searcher:
    """Finds the passages for a question: the question embedded the way documents were, plus keyword search."""

    def __init__(
        self,
        embedder: TextEmbedder,
        store: ChromaStore,
        keyword: KeywordIndex | None = None,
        *,
        candidates: int = 50,
        fusion: Fusion = DEFAULT_FUSION,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
        gate: QueryGate | None = None,
        sentences: SentenceVectors | None = None,
        sentence_check: int = 0,
        refine: bool = False,
    ) -> None:
        self.embedder = embedder
        # the model at search time: shared by every searcher of a process (compose), capped and single-flight
        self.gate = gate if gate is not None else QueryGate(embedder)
        # each stored passage's sentences' vectors; None: each hit's sentences embedded alone, every time
        self.sentences = sentences
        # how many of a hit's sentences, closest by their pooled vectors, are embedded alone to choose among
        self.sentence_check = sentence_check
        # shown hits' pooled sentences embedded alone when the model is idle, and kept (sentence_choice.py)
        self.refiner = (
            SentenceRefiner(self.gate, sentences, embedder.model_name) if refine and sentences is not None else None
        )
        self.store = store
        # without a saved index, one in memory, filled from the store on first search
        self.keyword = keyword if keyword is not None else KeywordIndex(SudachiAnalyzer())
        self.candidates = candidates
        self.fusion = fusion
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self._checked = False
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def search(
        self, question: str, k: int = 5, sources: Sequence[str] | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        """The top ``k`` passages for ``question``, best first; ``sources`` limits it to those documents."""
        return self.search_many([question], k, sources, mode=mode)[0]

    def search_many(
        self,
        questions: Sequence[str],
        k: int = 5,
        sources: Sequence[str] | None = None,
        progress: Progress | None = None,
        mode: Mode = "hybrid",
    ) -> list[list[Hit]]:
        """The top ``k`` passages for each question, embedding the questions in batches."""
        if mode not in MODES:
            raise RagError(f"検索方式は {'・'.join(MODES)} のどれかにしてください（現在 {mode!r}）。")
        if k < 1:
            raise RagError(f"件数 k は 1 以上にしてください（現在 {k}）。")
        pools, live = self._pools(questions, max(k, self.candidates), sources, progress)
        # only the hits that are shown (or reranked) are read from the store: texts and metadata
        # of 100 candidates cost more than the vector search itself
        shown = max(k, self.rerank_candidates) if self.reranker is not None else k
        heads = self._read([self._order(pool, mode) for pool in pools], shown, live)
        results = []
        for question, ordered in zip(questions, heads, strict=True):
            if self.reranker is not None and ordered:
                ordered = self._rerank(question, ordered)
            results.append([dataclasses.replace(h, rank=rank) for rank, h in enumerate(ordered[:k], 1)])
        return results

    def _order(self, pool: Sequence[S], mode: Mode) -> list[S]:
        if mode == "dense":
            return sorted(pool, key=lambda h: (h.dense_rank is None, h.dense_rank or 0, h.chunk_id))
        if mode == "keyword":
            matched = [h for h in pool if h.keyword_rank is not None]
            return sorted(matched, key=lambda h: h.keyword_rank or 0)
        return self.fusion.order(pool)

    def _rerank(self, question: str, ordered: list[Hit]) -> list[Hit]:
        assert self.reranker is not None
        head, tail = ordered[: self.rerank_candidates], ordered[self.rerank_candidates :]
        scores = self.reranker.scores(normalize_text(question), [h.chunk.text for h in head])
        scored = [dataclasses.replace(h, rerank_score=float(s)) for h, s in zip(head, scores, strict=True)]
        return sorted(scored, key=lambda h: -(h.rerank_score or 0.0)) + tail

    def candidates_many(
        self,
        questions: Sequence[str],
        n: int,
        sources: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> list[list[Hit]]:
        """For each question, the union of its dense and keyword candidate lists (``n`` each), unordered,
        every chunk with its cosine, its BM25 score and its rank in each list (None: not in that list)."""
        pools, live = self._pools(questions, n, sources, progress)
        return self._read(pools, 2 * n, live)

    def _pools(
        self,
        questions: Sequence[str],
        n: int,
        sources: Sequence[str] | None,
        progress: Progress | None,
    ) -> tuple[list[list[Candidate]], dict[str, str]]:
        """Each question's candidates, scored both ways; and the live versions they were drawn from."""
        queries = [normalize_text(q) for q in questions]
        if not all(queries):
            raise RagError("質問が空です。検索したい内容を入力してください。")
        if n < 1:
            raise RagError(f"候補の数は 1 以上にしてください（現在 {n}）。")
        self.keyword.sync(self.store.reader)
        live = self.keyword.versions  # just matched to the registry: the store need not look again
        if not live:
            return [[] for _ in queries], live
        if not self._checked:
            embedder = self.embedder
            self.store.reader.check_model(embedder.model_name, embedder.dimension, embedder.fingerprint())
            self._checked = True
        vectors = self._query_vectors(queries, progress)
        dense_lists = self.store.nearest_many(vectors, n, live, sources)
        pools = []
        for query, vector, dense in zip(queries, vectors, dense_lists, strict=True):
            found = self.keyword.search(query, n, sources)
            pools.append(self._pool(vector, dense, found, live))
        return pools, live

    def _query_vectors(self, queries: Sequence[str], progress: Progress | None) -> np.ndarray:
        """Question vectors, each question embedded once: the page asks again on every interaction."""
        with self._cache_lock:
            found = {q: self._cache[q] for q in queries if q in self._cache}
        missing = [q for q in dict.fromkeys(queries) if q not in found]
        if missing:
            found.update(zip(missing, self.gate.queries(missing, progress), strict=True))
        elif progress is not None:
            progress(len(queries), len(queries))
        with self._cache_lock:
            for query in dict.fromkeys(queries):
                self._cache[query] = found[query]
                self._cache.move_to_end(query)
            while len(self._cache) > QUESTION_CACHE:
                self._cache.popitem(last=False)
        return np.stack([found[q] for q in queries])

    def _pool(
        self, vector: np.ndarray, dense: Sequence[tuple[str, float]], found: KeywordResult, live: Mapping[str, str]
    ) -> list[Candidate]:
        keyword_rank = {h.chunk_id: h.rank for h in found.hits}
        pool = {
            chunk_id: Candidate(chunk_id, cosine, found.score(chunk_id), rank, keyword_rank.get(chunk_id))
            for rank, (chunk_id, cosine) in enumerate(dense, 1)
        }
        only_keyword = [h for h in found.hits if h.chunk_id not in pool]
        stored = self.store.reader.vectors_by_id([h.chunk_id for h in only_keyword], live)
        length = float(np.linalg.norm(vector))
        for hit in only_keyword:
            if hit.chunk_id in stored:  # absent: replaced or deleted by another process a moment ago
                chunk = stored[hit.chunk_id]
                cosine = float(chunk @ vector) / (float(np.linalg.norm(chunk)) * length or 1.0)
                pool[hit.chunk_id] = Candidate(hit.chunk_id, cosine, hit.score, None, hit.rank)
        return list(pool.values())

    def _read(self, ordered: Sequence[Sequence[Candidate]], take: int, live: Mapping[str, str]) -> list[list[Hit]]:
        """The first ``take`` candidates of each list as hits with their text and metadata, in the
        same order; one that vanished since (another process replaced its document) gives way to the next."""
        results: list[list[Hit]] = [[] for _ in ordered]
        position = [0] * len(ordered)
        while True:
            # each list's next candidates, as many as it still lacks
            batches = [list(c[position[i] : position[i] + take - len(results[i])]) for i, c in enumerate(ordered)]
            if not any(batches):
                return results
            found = self.store.chunks_by_id([c.chunk_id for batch in batches for c in batch], live)
            for i, batch in enumerate(batches):
                position[i] += len(batch)
                for candidate in batch:
                    chunk = found.get(candidate.chunk_id)
                    if chunk is not None:
                        results[i].append(_hit(chunk, candidate))

    def rule(self, mode: Mode) -> str:
        """The ranking rule of ``mode`` in words, shown next to the results."""
        n = self.candidates
        rules: dict[Mode, str] = {
            "dense": "コサイン類似度（質問と文章の意味の近さ）の高い順。",
            "keyword": "BM25（質問の単語を Sudachi で切り出し、助詞・助動詞・記号を除いて数えたキーワードの一致度）の高い順。"
            "質問と共通の単語がない文章は出ません。",
            "hybrid": f"意味検索とキーワード検索の上位 {n} 件ずつを合わせ、"
            f"BM25 は候補中の最高値で割り、コサイン類似度は候補中の最低値を 0・最高値を 1 に広げて "
            f"{self.fusion.keyword_weight:g} : {1 - self.fusion.keyword_weight:g} で足した値の高い順。",
        }
        text = rules[mode]
        if self.reranker is not None:
            text += f" その上位 {self.rerank_candidates} 件を再ランキングモデル「{self.reranker.model_name}」の点数で並べ替え。"
        return text

    def surroundings(self, chunk: StoredChunk) -> tuple[str, str]:
        """The document's text just before and just after a passage (a hit's chunk): the parts of its
        neighbouring chunks that the passage does not already show (neighbours overlap it by a sentence or two)."""
        neighbours = {
            c.chunk_index: c
            for c in self.store.chunks_at(chunk.source, chunk.version, [chunk.chunk_index - 1, chunk.chunk_index + 1])
        }
        before = neighbours.get(chunk.chunk_index - 1)
        after = neighbours.get(chunk.chunk_index + 1)
        head = before.text[: max(chunk.char_start - before.char_start, 0)].rstrip() if before else ""
        tail = after.text[max(chunk.char_end - after.char_start, 0) :].lstrip() if after else ""
        return head, tail

    def best_sentences(self, question: str, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        """For each hit, the span (in ``hit.chunk.text``) of its sentence most similar to the question.

        The sentences' vectors were pooled when the passage was stored (pipelines/store/sentences.py), so
        this is a few dot products; with ``sentence_check`` n, the n sentences they put first are embedded
        alone and the best of those is taken. A hit stored without them (before they were kept, or by a
        path that gives no token states) has its sentences embedded alone now, and kept for the next time.
        """
        spans = [tuple(sentence_spans(h.chunk.text)) for h in hits]
        if not any(spans):
            return [(0, 0) for _ in hits]
        query = self._query_vectors([normalize_text(question)], None)[0]  # the search embedded it already
        found = self._sentence_vectors(hits, spans)
        texts = [tuple(h.chunk.text[a:b] for a, b in row) for h, row in zip(hits, spans, strict=True)]
        scores = [sentence_scores(question, query, f, t) for f, t in zip(found, texts, strict=True)]
        chosen = [int(np.argmax(row)) if len(row) else -1 for row in scores]
        pooled = [f.pooled for f in found]
        checked = self._checked_choices(hits, spans, scores, pooled, query)
        if self.refiner is not None:
            self.refiner.offer(
                [
                    Pending(self.sentence_key_of(h.chunk), t, row)
                    for h, t, row, p in zip(hits, texts, spans, pooled, strict=True)
                    if p and len(row) > 1
                ]
            )
        return [spans[i][checked.get(i, c)] if c >= 0 else (0, 0) for i, c in enumerate(chosen)]

    @staticmethod
    def sentence_key_of(chunk: StoredChunk) -> str:
        """A passage's key in the sentences file: the digest of the text that was embedded."""
        return chunk.text_hash or f"chunk:{chunk.chunk_id}"

    def _checked_choices(
        self,
        hits: Sequence[Hit],
        spans: Sequence[tuple[tuple[int, int], ...]],
        scores: Sequence[np.ndarray],
        pooled: Sequence[bool],
        query: np.ndarray,
    ) -> dict[int, int]:
        """With ``sentence_check``: for each hit whose pooled scores chose, the best of its first sentences
        by those scores, each embedded alone (one batch for all the hits)."""
        if self.sentence_check < 1:
            return {}
        shortlists = {
            i: [int(j) for j in np.argsort(-row, kind="stable")[: self.sentence_check]]
            for i, row in enumerate(scores)
            if len(row) > 1 and pooled[i]
        }
        texts = [hits[i].chunk.text[slice(*spans[i][j])] for i, row in shortlists.items() for j in row]
        if not texts:
            return {}
        alone = iter(self.gate.documents(texts) @ query)
        checked = {}
        for i, row in shortlists.items():
            values = [next(alone) for _ in row]
            checked[i] = row[int(np.argmax(values))]
        return checked

    def _sentence_vectors(self, hits: Sequence[Hit], spans: Sequence[tuple[tuple[int, int], ...]]) -> list[Sentences]:
        """Each hit's sentences (``spans``): the kept ones where they match, the others embedded alone now."""
        model = self.embedder.model_name
        keys = [self.sentence_key_of(h.chunk) for h in hits]
        kept = self.sentences.get(model, keys) if self.sentences is not None else {}
        found: list[Sentences | None] = [
            kept[key] if key in kept and kept[key].spans == row else None for key, row in zip(keys, spans, strict=True)
        ]
        lazy = [i for i, f in enumerate(found) if f is None and spans[i]]
        if lazy:
            sentences = [hits[i].chunk.text[a:b] for i in lazy for a, b in spans[i]]
            embedded = iter(self.gate.documents(sentences))
            fresh = {}
            for i in lazy:
                fresh[keys[i]] = found[i] = Sentences(spans[i], np.stack([next(embedded) for _ in spans[i]]), False)
            self._keep(fresh)
        return [f if f is not None else Sentences((), np.zeros((0, 1), dtype=np.float32), False) for f in found]

    def _keep(self, fresh: Mapping[str, Sentences]) -> None:
        """Keep sentences embedded at search time for the next search; one that cannot be kept is embedded again then."""
        if self.sentences is None:
            return
        try:
            self.sentences.put(self.embedder.model_name, fresh)
        except RagError as error:  # a cache: the search stands without it
            logger.warning("%s", error)


def hit_json(hit: Hit, span: tuple[int, int] | None) -> dict[str, Any]:
    """A hit as JSON (``search --json``, the HTTP API), with its sentence closest to the question and where
    that sentence is (the page a viewer opens: of a chunk over 1–2 ページ, the page the sentence is on);
    those fields are None when the sentence was not asked for (``span`` None)."""
    if span is None:
        return hit.to_dict() | dict.fromkeys(("best_sentence", "best_location", "best_page", "best_slide", "best_row"))
    place = hit.chunk.place_at(span[0])
    return hit.to_dict() | {
        "best_sentence": list(span),
        "best_location": describe(place),
        "best_page": place.page,
        "best_slide": place.slide,
        "best_row": place.row,
    }


def _hit(chunk: StoredChunk, candidate: Candidate) -> Hit:
    """A stored chunk as a hit with the scores that made it a candidate (its rank is set once ordered)."""
    return Hit(chunk, 0, candidate.cosine, candidate.keyword_score, candidate.dense_rank, candidate.keyword_rank)
