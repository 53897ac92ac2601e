"""Perceptual hashes made for tests: clusters of near copies, as bench_scale's made JPEGs give them."""

from __future__ import annotations

import numpy as np


def clustered_hashes(n: int, seed: int = 0, centres: int = 4, flip: float = 0.06) -> np.ndarray:
    """Hashes in a few clusters (each bit of a copy flipped with probability `flip`) with two equal ones: many
    pairs across chunks and buckets."""
    rng = np.random.default_rng(seed)
    middles = rng.integers(0, 256, (centres, 8), dtype=np.uint8)
    values = middles[rng.integers(0, len(middles), n)].copy()
    bits = np.unpackbits(values, axis=1)
    values = np.packbits(bits ^ (rng.random(bits.shape) < flip), axis=1)
    values[5] = values[40]
    return values
