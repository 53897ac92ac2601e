"""The visual pairs' search against every pair compared by hand: each chunk of rows is searched against the rows
from it on only, and no pair may be lost or found twice across the chunks' edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dctn

from lightly_assets.curation import phash
from lightly_assets.curation.phash import hamming, hash_pairs


def clustered_hashes(n: int, seed: int = 0) -> np.ndarray:
    """Hashes in a few clusters (a few bits flipped per copy) with some equal ones: many pairs across chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (4, 8), dtype=np.uint8)
    values = centres[rng.integers(0, len(centres), n)].copy()
    bits = np.unpackbits(values, axis=1)
    flips = rng.random(bits.shape) < 0.06
    values = np.packbits(bits ^ flips, axis=1)
    values[5] = values[40]
    return values


def pairs_by_hand(values: np.ndarray, max_distance: int, valid: np.ndarray, asked: set[int]) -> list[tuple]:
    found = []
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            if valid[i] and valid[j] and (i in asked or j in asked):
                distance = int(hamming(values[i], values[j]))
                if distance <= max_distance:
                    found.append((i, j, distance))
    return found


@pytest.mark.parametrize("queries", [None, [3, 17, 18, 60, 61, 62]])
def test_every_pair_once_in_order_across_chunks(monkeypatch: pytest.MonkeyPatch, queries: list[int] | None) -> None:
    monkeypatch.setattr(phash, "CHUNK", 7)
    values = clustered_hashes(80)
    valid = np.ones(len(values), dtype=bool)
    valid[[9, 17, 50]] = False
    asked = set(range(len(values))) if queries is None else set(queries)
    pairs, distances = hash_pairs(values, 8, valid=valid, queries=None if queries is None else np.array(queries))
    found = [(int(i), int(j), int(d)) for (i, j), d in zip(pairs.tolist(), distances.tolist(), strict=True)]
    expected = pairs_by_hand(values, 8, valid, asked)
    assert len(expected) > 50  # (the clusters give pairs within and across chunks)
    assert found == expected


def one_hash(grid: np.ndarray) -> np.ndarray:
    """A picture's hash by the definition, alone: its grid's 2-D DCT, the 8x8 low frequencies above their median."""
    low = np.asarray(dctn(grid.astype(np.float64), type=2, norm="ortho"))[:8, :8].reshape(-1)
    above = low > np.median(low[1:])
    above[0] = False
    return np.packbits(above)


def test_hashes_computed_together_are_each_picture_s_own() -> None:
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(48, 64), (192, 256), (7, 300), (32, 32)]]
    pictures += [np.full((40, 40), 77, np.uint8), np.tile(np.arange(64, dtype=np.uint8), (48, 1))]  # ties: flat, ramp
    grids = np.stack([phash.hash_grid(p) for p in pictures])
    assert grids.shape == (len(pictures), phash.SMALL, phash.SMALL) and grids.dtype == np.uint8
    together = phash.dct_hashes(grids)
    assert together.tolist() == [one_hash(g).tolist() for g in grids]
    assert phash.dct_hash(pictures[1]).tolist() == together[1].tolist()
    assert phash.dct_hashes(grids[:0]).shape == (0, 8)
