"""The Hamming searches against distances compared by hand: the visual pairs (each block of rows searched against
the rows from it on only: no pair lost or found twice across the blocks' edges), the nearest target (faiss' own
search, ties included), and hashes computed together against each picture's own."""

from __future__ import annotations

import faiss
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
    monkeypatch.setattr(phash, "PAIR_QUERIES", 7)  # blocks of 7 asked rows against 3 rows a table
    monkeypatch.setattr(phash, "NEAREST_BLOCK", 21)
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


def test_a_table_of_distances_is_every_pair_s_hamming_distance() -> None:
    a, b = clustered_hashes(50, seed=4)[:9], clustered_hashes(50, seed=5)[:13]
    table = phash.hamming_table(a, b, np.empty((9, 13), dtype=np.int32))
    assert table.tolist() == hamming(a[:, None, :], b[None, :, :]).tolist()
    with pytest.raises(ValueError, match="int32"):  # a wrong buffer is refused, never written past
        phash.hamming_table(a, b, np.empty((9, 12), dtype=np.int32))


@pytest.mark.parametrize("targets", [1, 30, 333])
def test_the_nearest_target_is_faiss_search_s_first_on_a_tie(monkeypatch: pytest.MonkeyPatch, targets: int) -> None:
    monkeypatch.setattr(phash, "NEAREST_TARGETS", 16)  # blocks of targets and of queries, with a short last one
    monkeypatch.setattr(phash, "NEAREST_BLOCK", 16 * 5)
    values = clustered_hashes(400, seed=6)  # few centres: many targets equally near a query
    queries, found = values[:123], np.ascontiguousarray(values[123 : 123 + targets])
    distance, at = phash.nearest_hashes(queries, found)
    index = faiss.IndexBinaryFlat(phash.BITS)
    index.add(found)
    expected_distance, expected_at = index.search(queries, 1)
    assert distance.tolist() == expected_distance[:, 0].tolist()
    assert at.tolist() == expected_at[:, 0].tolist()
    table = hamming(queries[:, None, :], found[None, :, :])
    assert at.tolist() == np.argmin(table, axis=1).tolist()  # the first of the nearest, by hand


def test_no_target_leaves_every_query_without_a_nearest() -> None:
    distance, at = phash.nearest_hashes(clustered_hashes(50)[:3], np.zeros((0, 8), dtype=np.uint8))
    assert at.tolist() == [-1, -1, -1] and (distance > phash.BITS).all()
