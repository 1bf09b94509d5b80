"""Texts cut into embedding batches: longest first, and on a CPU by length and a budget of tokens."""

from __future__ import annotations

from collections.abc import Sequence

# On a CPU, a batch of passages ends where a text is this much shorter than its first, and before its
# tokens with padding pass BATCH_TOKENS (``cut``). Measured on the JSQuAD articles' chunks with the
# int8 path on an AVX2-only CPU: 0-8 % less embedding time than batches of 16 alone, more where 16-text
# batches leave more padding (bench/cpu_batches.py, docs/speed.md). Read when called, so that a bench
# or a test may set them.
SAME_LENGTH = 0.9
BATCH_TOKENS = 1024


def longest_first(counts: Sequence[int]) -> list[int]:
    """The texts' indexes, longest first: sorting by length keeps padding, which costs as much as real tokens, near zero."""
    return sorted(range(len(counts)), key=lambda i: counts[i], reverse=True)


def cut(batch: list[int], counts: Sequence[int], max_tokens: int) -> list[int]:
    """The start of ``batch`` (longest first) to embed at once on a CPU: fewer tokens and less padding.

    Every text of a batch costs as much as its longest, padding included. On a CPU a batch ends
    where the texts become ``SAME_LENGTH`` shorter than its first, and before it holds more than
    ``BATCH_TOKENS`` tokens with its padding: ONNX Runtime's int8 products run faster on such
    batches, whose activations stay in the CPU's caches, and torch's no slower. (On a GPU, where
    small batches waste the card, a batch stays whole: the caller does not cut it.)
    """
    width = min(counts[batch[0]], max_tokens)
    fits = max(1, BATCH_TOKENS // max(width, 1))
    floor = width * SAME_LENGTH
    return [i for i in batch[:fits] if min(counts[i], max_tokens) >= floor]  # a prefix: longest first
