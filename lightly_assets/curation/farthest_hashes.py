"""Farthest-point sampling on perceptual hashes, in Hamming distances.

A selection made from hashes (random weights) samples `unit_rows(hash_features(codes))`: the bits as +-1/8, whose
cosine similarity is exactly 1 - 2 * Hamming / 64. Sampled as floats, every pick is a product of 64 columns over all
candidates, and on distinct hashes (real photos: distances near 32 of 64) the groups of `farthest` prune nothing:
`choose` on a tenth of a million distinct hashes took 816.7 s. Here a pick is an XOR and a popcount of one 64-bit
word per candidate, fused by faiss (`phash.hamming_table`): 0.54 ms a pick at a million (numpy's XOR and popcount
apart: 0.93 ms). The similarities are exact in both, and ties go to the first row in both, so the picks and the
cover are the float sampling's, bit for bit.
"""

from __future__ import annotations

import numpy as np

from lightly_assets.curation.farthest import Spread
from lightly_assets.curation.phash import BITS, bit_cosine, hamming_table

UNCOVERED, PICKED = BITS + 1, -1  # codes of `_far` beside a distance: no pick yet (farthest), a pick (never again)


def exact_on_hashes(nearest: np.ndarray) -> bool:
    """Whether similarities to earlier picks are all hash similarities (or +-inf): then sampling in distances
    gives the float sampling's picks. A cover measured on vectors (an earlier run with trained weights) is not."""
    finite = nearest[np.isfinite(nearest)].astype(np.float64)
    steps = (1.0 - finite) * (BITS / 2)
    return bool(np.all((steps == np.round(steps)) & (steps >= 0) & (steps <= BITS)))


def farthest_hashes(codes: np.ndarray, pool: np.ndarray, nearest: np.ndarray, count: int) -> Spread:
    """`farthest_points(unit_rows(hash_features(codes)), pool, nearest, count)`, computed on the hashes. `nearest`
    must pass `exact_on_hashes`."""
    pool = np.asarray(pool, dtype=np.int64)
    rows = np.ascontiguousarray(np.asarray(codes, dtype=np.uint8).reshape(-1, BITS // 8)[pool])
    far = _far(np.asarray(nearest, dtype=np.float64))
    owner = np.full(len(pool), -1, dtype=np.int64)
    total = min(count, int((far != PICKED).sum()))
    picked = np.empty(total, dtype=np.int64)
    table, closer = np.empty((1, len(pool)), dtype=np.int32), np.empty(len(pool), dtype=bool)
    distance = table[0]
    for k in range(total):
        at = int(np.argmax(far))  # the first of the farthest, as the float sampling's argmin of similarity
        picked[k] = at
        hamming_table(rows[at : at + 1], rows, table)
        # strictly nearer: an earlier pick at the same distance stays the owner. Later picks move few candidates, so
        # their rows are found once and written alone (a full masked copy of `far` and `owner` cost more)
        moved = np.flatnonzero(np.less(distance, far, out=closer))
        far[moved] = distance[moved]
        owner[moved] = at
        far[at] = PICKED
    return _spread(pool, far, owner, picked)


def _far(nearest: np.ndarray) -> np.ndarray:
    """Similarities to earlier picks as Hamming distances (int32, as `hamming_table` gives them), -inf as UNCOVERED,
    +inf (picked) as PICKED."""
    far = np.full(len(nearest), UNCOVERED, dtype=np.int32)
    finite = np.isfinite(nearest)
    far[finite] = np.round((1.0 - nearest[finite]) * (BITS / 2)).astype(np.int32)
    far[nearest == np.inf] = PICKED
    return far


def _spread(pool: np.ndarray, far: np.ndarray, owner: np.ndarray, picked: np.ndarray) -> Spread:
    """The picks and the pool's cover as `farthest_points` gives them: similarity 1 and owner itself for a pick,
    +inf and -1 for a row picked earlier, -inf and -1 for one no pick covers."""
    near = bit_cosine(far)
    near[far == PICKED] = np.inf
    near[far == UNCOVERED] = -np.inf
    near[picked] = 1.0
    owner[picked] = picked
    return Spread(pool[picked], near, np.where(owner >= 0, pool[np.maximum(owner, 0)], -1))
