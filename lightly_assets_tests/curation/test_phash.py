"""The nearest hash against faiss' own search (ties included), tables of distances against distances by hand, and
hashes computed together against each picture's own."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from scipy.fft import dctn

from lightly_assets.curation import phash
from lightly_assets.curation.phash import hamming
from lightly_assets_tests.hashes import clustered_hashes


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
