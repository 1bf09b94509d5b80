"""A passage's sentences as vectors pooled from the token states of the pass that embedded the passage.

The forward pass that embeds a chunk computes a state for each of its tokens, which mean pooling
averages into the chunk's vector. Averaged over the tokens of one sentence instead, and normalised,
they give that sentence's vector at no extra cost: what finding a hit's best sentence needs at
search time, where embedding each sentence alone again cost ten times the search (docs/speed.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Span = tuple[int, int]
"""Where a sentence is in a text: (start, end) in characters."""


def pool_spans(states: np.ndarray, offsets: Sequence[Span], spans: Sequence[Span]) -> np.ndarray | None:
    """One unit vector per span: the mean state of the tokens that overlap it (a token across a
    sentence boundary counts for both); None when a span has no token, as past the model's limit.

    ``states`` holds a row per token as fed (special tokens included), ``offsets`` each token's
    characters ((-1, -1) for a special token).
    """
    if len(offsets) != len(states):
        return None
    starts = np.array([a for a, _ in offsets])
    ends = np.array([b for _, b in offsets])
    real = (starts >= 0) & (ends > starts)
    vectors = np.zeros((len(spans), states.shape[1]), dtype=np.float32)
    for row, (a, b) in enumerate(spans):
        inside = real & (starts < b) & (ends > a)
        if not inside.any():
            return None
        vectors[row] = states[inside].astype(np.float32).mean(axis=0)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
