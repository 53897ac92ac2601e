"""Farthest-point sampling on perceptual hashes: the float sampling's picks and cover, bit for bit, ties included,
and a selection made from hashes goes through it."""

from __future__ import annotations

import numpy as np
import pytest

from lightly_assets.curation import farthest, selection_state
from lightly_assets.curation.duplicates import unit_rows
from lightly_assets.curation.farthest import Spread, farthest_points
from lightly_assets.curation.farthest_hashes import exact_on_hashes, farthest_hashes
from lightly_assets.curation.selection import hash_features
from lightly_assets.curation.selection_state import Request, choose


def clustered_hashes(n: int, seed: int) -> np.ndarray:
    """Hashes around a few centres, a few bits flipped each, some repeated: many rows equally far from a pick."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (12, 8), dtype=np.uint8)
    bits = np.unpackbits(centres[rng.integers(0, len(centres), n)], axis=1)
    values = np.packbits(bits ^ (rng.random(bits.shape) < 0.05), axis=1)
    values[rng.integers(0, n, n // 10)] = values[0]
    return values


def assert_same(ours: Spread, theirs: Spread) -> None:
    assert ours.picks.tolist() == theirs.picks.tolist()
    assert ours.nearest.dtype == theirs.nearest.dtype and ours.nearest.tobytes() == theirs.nearest.tobytes()
    assert ours.owner.tolist() == theirs.owner.tolist()


@pytest.mark.parametrize("kind", ["distinct", "clustered"])
def test_picks_and_cover_are_the_float_sampling_s(kind: str) -> None:
    n = 3_000
    codes = np.random.default_rng(0).integers(0, 256, (n, 8), dtype=np.uint8) if kind == "distinct" else None
    codes = clustered_hashes(n, 1) if codes is None else codes
    unit, pool, start = unit_rows(hash_features(codes)), np.arange(n), np.full(n, -np.inf, dtype=np.float32)
    assert_same(farthest_hashes(codes, pool, start, 300), farthest_points(unit, pool, start, 300))
    assert_same(farthest_hashes(codes, pool, start, n + 5), farthest_points(unit, pool, start, n + 5))  # all


def test_grown_from_an_earlier_cover_with_kept_picks_it_is_the_float_sampling_s(monkeypatch) -> None:
    monkeypatch.setattr(farthest, "GROUPED_FROM", 2_000)  # the float side in groups, as at scale
    monkeypatch.setattr(farthest, "CALL_NS", 0.0)
    codes = clustered_hashes(6_000, 2)
    unit, rng = unit_rows(hash_features(codes)), np.random.default_rng(3)
    first = farthest_hashes(codes, np.arange(6_000), np.full(6_000, -np.inf, dtype=np.float32), 200)
    pool = np.sort(rng.choice(6_000, 4_500, replace=False))
    nearest = first.nearest[pool].copy()
    nearest[np.isin(pool, first.picks)] = np.inf  # picks kept from the earlier run: never picked again
    assert exact_on_hashes(nearest)
    assert_same(farthest_hashes(codes, pool, nearest, 400), farthest_points(unit, pool, nearest, 400))


def test_a_cover_measured_on_vectors_is_not_taken_for_hashes() -> None:
    assert exact_on_hashes(np.array([-np.inf, np.inf, 1.0, 0.5, -0.03125], dtype=np.float32))
    assert not exact_on_hashes(np.array([0.731, 1.0], dtype=np.float32))


def test_a_selection_from_hashes_samples_on_them_with_the_same_result(monkeypatch) -> None:
    codes = clustered_hashes(2_500, 4)
    args = hash_features(codes), np.zeros(2_500, dtype=np.int64), np.full(2_500, -1), np.arange(2_500).astype(str)
    calls = []
    monkeypatch.setattr(selection_state, "farthest_hashes", lambda *a: calls.append(1) or farthest_hashes(*a))
    on_hashes = choose(*args, Request(250), None, codes)
    on_vectors = choose(*args, Request(250), None)
    assert calls and on_hashes[0].rows.tolist() == on_vectors[0].rows.tolist()
    assert on_hashes[2] == on_vectors[2] and on_hashes[3] == on_vectors[3]  # the coverage radii
