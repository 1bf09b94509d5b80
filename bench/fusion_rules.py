"""Fusion rules tried on saved candidate pools, without ingesting again.

    .venv/bin/python bench/quality_paths.py --paths in-process --configs 168/42/on 210/0/on --pools bench-out/pools
    .venv/bin/python bench/fusion_rules.py bench-out/pools/pools-*.json [--rules by-best stretched keep] [--show 'by-best w=0.2']

Each pools file holds, per JSQuAD question, every candidate of the product's pool (the best 50 by cosine
and the best 50 by BM25) with its cosine, BM25 score, places in the two lists, length and whether it
holds an answer (bench/quality_paths.py ``--pools``). Every rule below orders them; a rule's parameters
are chosen on the tuning half (the even-numbered questions) by top-1, then top-5, then MRR, and the
chosen one is reported on the other half too. The product's own rule is ``Fusion.order``, run here
on the same numbers, so what is chosen is what a search does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.search.retrieval import Fusion  # noqa: E402

KS = (1, 5, 10, 50)


@dataclass(frozen=True)
class Row:
    """One candidate of a saved pool, shaped as ``Fusion.order`` reads a hit."""

    chunk_id: str
    cosine: float
    keyword_score: float
    dense_rank: int | None
    keyword_rank: int | None
    answer: bool


def load(path: Path) -> tuple[dict[str, Any], list[list[Row]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    pools = [
        [
            Row(f"{i:03d}", cos, bm25, int(dr) or None, int(kr) or None, bool(ans))
            for i, (cos, bm25, dr, kr, _chars, ans) in enumerate(pool)
        ]
        for pool in data.pop("pools")
    ]
    return data, pools


def scores(ranks: Sequence[int | None]) -> tuple[float, ...]:
    found = [r for r in ranks if r is not None]
    n = len(ranks) or 1
    return (*(100.0 * sum(1 for r in found if r <= k) / n for k in KS), sum(1.0 / r for r in found) / n)


def first_answer(ordered: Sequence[Row]) -> int | None:
    return next((rank for rank, row in enumerate(ordered, 1) if row.answer), None)


Order = Callable[[Sequence[Row]], list[Row]]


def dense(pool: Sequence[Row]) -> list[Row]:
    return sorted([r for r in pool if r.dense_rank], key=lambda r: r.dense_rank or 0)


def keyword(pool: Sequence[Row]) -> list[Row]:
    return sorted([r for r in pool if r.keyword_rank], key=lambda r: r.keyword_rank or 0)


def rrf(weight: float, c: int = 60) -> Order:
    def order(pool: Sequence[Row]) -> list[Row]:
        def fused(r: Row) -> float:
            k = weight / (c + r.keyword_rank) if r.keyword_rank else 0.0
            d = (1 - weight) / (c + r.dense_rank) if r.dense_rank else 0.0
            return k + d

        return sorted(pool, key=lambda r: (-fused(r), -r.cosine, r.chunk_id))

    return order


def by_best(weight: float) -> Order:
    """The rule before 2026-12-07: both scores divided by the pool's best (``w·bm25/max + (1 − w)·cos/max``)."""

    def order(pool: Sequence[Row]) -> list[Row]:
        if not pool:
            return []
        hi_k = max(r.keyword_score for r in pool) or 1.0
        hi_c = max(max(r.cosine for r in pool), 1e-6)

        def fused(r: Row) -> float:
            return weight * r.keyword_score / hi_k + (1 - weight) * r.cosine / hi_c

        return sorted(pool, key=lambda r: (-fused(r), -r.cosine, r.chunk_id))

    return order


def keep(weight: float, kept: int, within: int) -> Order:
    """The rule before (each score divided by its best), then keyword search's best ``kept`` moved up to place ``within`` where
    that order put them lower (so that BM25's strong hits are shown in the first five)."""
    before = by_best(weight)

    def order(pool: Sequence[Row]) -> list[Row]:
        ordered = before(pool)
        head = ordered[:within]
        missing = [r for r in keyword(pool)[:kept] if r not in head]
        if not missing:
            return ordered
        head = head[: within - len(missing)] + missing
        return head + [r for r in ordered if r not in head]

    return order


def first_bonus(weight: float, bonus: float) -> Order:
    """The rule before (each score divided by its best), plus ``bonus`` for keyword search's first hit."""

    def order(pool: Sequence[Row]) -> list[Row]:
        if not pool:
            return []
        hi_k = max(r.keyword_score for r in pool) or 1.0
        hi_c = max(max(r.cosine for r in pool), 1e-6)

        def fused(r: Row) -> float:
            extra = bonus if r.keyword_rank == 1 else 0.0
            return weight * r.keyword_score / hi_k + (1 - weight) * r.cosine / hi_c + extra

        return sorted(pool, key=lambda r: (-fused(r), -r.cosine, r.chunk_id))

    return order


def candidates(names: Sequence[str]) -> dict[str, dict[str, Order]]:
    weights = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
    rules: dict[str, dict[str, Order]] = {
        "dense": {"": dense},
        "keyword": {"": keyword},
        "by-best": {f"w={w}": by_best(w) for w in weights},
        # the product's: the cosine stretched from the pool's least (0) to its best (1)
        "stretched": {f"w={w}": Fusion(w).order for w in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)},
        "rrf": {f"w={w}": rrf(w) for w in (0.5, 0.6, 0.7, 0.8)},
        "bonus": {f"w={w} bonus={b}": first_bonus(w, b) for w in weights for b in (0.01, 0.02, 0.05)},
        "keep": {
            f"w={w} kept={t} within={n}": keep(w, t, n)
            for w, t, n in itertools.product(weights, (1, 2, 3), (3, 4, 5))
            if t < n
        },
    }
    return {name: rules[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pools", type=Path, nargs="+")
    parser.add_argument(
        "--rules", nargs="+", default=["dense", "keyword", "by-best", "stretched", "rrf", "bonus", "keep"]
    )
    parser.add_argument("--show", nargs="*", default=[], help="also print these variants (e.g. 'convex w=0.2')")
    args = parser.parse_args()
    for path in args.pools:
        meta, pools = load(path)
        print(f"\n## {meta['path']} ({len(pools)} questions)\n")
        print(
            "| rule | chosen on even | even top-1 / 5 / MRR | odd top-1 / 5 / 10 / MRR | all top-1 / 5 / 10 / 50 / MRR |"
        )
        print("| --- | --- | --- | --- | --- |")
        for name, variants in candidates(args.rules).items():
            measured = {}
            for label, order in variants.items():
                ranks = [first_answer(order(p)) for p in pools]
                measured[label] = {"even": scores(ranks[0::2]), "odd": scores(ranks[1::2]), "all": scores(ranks)}
            best = max(
                measured,
                key=lambda label: (measured[label]["even"][0], measured[label]["even"][1], measured[label]["even"][-1]),
            )
            shown = [best] + [s.split(" ", 1)[1] for s in args.show if s.split(" ", 1)[0] == name and " " in s]
            for label in dict.fromkeys(shown):
                e, o, a = measured[label]["even"], measured[label]["odd"], measured[label]["all"]
                print(
                    f"| {name} | {label}{' (chosen)' if label == best else ''} | {e[0]:.2f} / {e[1]:.2f} / {e[-1]:.4f} | "
                    f"{o[0]:.2f} / {o[1]:.2f} / {o[2]:.2f} / {o[-1]:.4f} | "
                    f"{a[0]:.2f} / {a[1]:.2f} / {a[2]:.2f} / {a[3]:.2f} / {a[-1]:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
