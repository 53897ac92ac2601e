"""Farthest-point sampling in groups: every pick is the candidate farthest from the picks before it, as plain
sampling's, while the groups spare most products on clustered vectors."""

from __future__ import annotations

import numpy as np
import pytest

from lightly_assets.curation import farthest
from lightly_assets.curation.coverage import cover
from lightly_assets.curation.duplicates import unit_rows
from lightly_assets.curation.farthest import farthest_points, seed_count

ROWS = 22_000


@pytest.fixture(autouse=True)
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Group from this module's sizes, with calls counted free: the grouped path runs on small data here."""
    monkeypatch.setattr(farthest, "GROUPED_FROM", 20_000)
    monkeypatch.setattr(farthest, "CALL_NS", 0.0)


def clustered(n: int, seed: int, centres: int = 40, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim)) * 4
    return unit_rows((middle[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32))


def assert_farthest(unit: np.ndarray, pool: np.ndarray, nearest: np.ndarray, picks: np.ndarray) -> None:
    """In float64: each pick is covered no better than any candidate left, up to float32 rounding."""
    near = np.asarray(nearest, dtype=np.float64).copy()
    at = {int(row): i for i, row in enumerate(pool)}
    rows = unit[pool].astype(np.float64)
    for k, pick in enumerate(picks):
        i = at[int(pick)]
        assert near[i] < np.inf, f"pick {k} was picked before"
        assert near[i] <= near.min() + 1e-5, f"pick {k} is not the farthest: {near[i]} against {near.min()}"
        near = np.maximum(near, rows @ unit[pick].astype(np.float64))
        near[i] = np.inf


def test_grouped_sampling_is_farthest_point_sampling_and_agrees_with_plain() -> None:
    unit = clustered(ROWS, 0)
    pool = np.arange(ROWS)
    start = np.full(ROWS, -np.inf, dtype=np.float32)
    count = seed_count(ROWS) + 600
    spread = farthest_points(unit, pool, start, count)
    picks = spread.picks
    assert len(picks) == len(set(picks.tolist())) == count
    assert picks[0] == 0  # a fresh start takes the first candidate
    assert_farthest(unit, pool, start, picks)
    plain = farthest._Plain(np.ascontiguousarray(unit), start.copy()).take(count)
    assert (picks[:200] == plain[:200]).all()
    assert_cover(unit, pool, spread, picks)


def assert_cover(unit: np.ndarray, pool: np.ndarray, spread: farthest.Spread, picks: np.ndarray) -> None:
    """The cover the sampling leaves on the pool is each row's nearest of `picks`, as measuring gives."""
    fresh = cover(unit, picks)
    moved = spread.owner >= 0
    np.testing.assert_allclose(spread.nearest[moved], fresh.nearest[pool[moved]], atol=1e-6)
    assert np.isin(spread.owner[moved], spread.picks).all()
    owned = fresh.nearest[pool[moved]]
    by_owner = np.einsum("ij,ij->i", unit[pool[moved]], unit[spread.owner[moved]])
    np.testing.assert_allclose(by_owner, owned, atol=1e-6)  # the owner is a nearest pick (ties allowed)


def test_groups_spare_most_products_on_clustered_vectors() -> None:
    unit = clustered(ROWS, 1)
    plain = farthest._Plain(np.ascontiguousarray(unit), np.full(ROWS, -np.inf, dtype=np.float32))
    seeds = plain.take(seed_count(ROWS), track=True)
    grouped = farthest._Grouped.from_seeds(plain, seeds)
    grouped.take(500)
    assert grouped.cost < 0.5 * 500 * ROWS


def test_continuing_from_earlier_picks_on_a_subset() -> None:
    unit = clustered(ROWS + 500, 2)
    pool = np.arange(500, ROWS + 500)  # the first 500 rows are not candidates
    earlier = np.array([600, 9_000, 17_000])
    nearest = (unit[pool] @ unit[earlier].T).max(axis=1)
    nearest[np.isin(pool, earlier)] = np.inf
    spread = farthest_points(unit, pool, nearest, seed_count(ROWS) + 300)
    picks = spread.picks
    assert not np.isin(picks, earlier).any() and (picks >= 500).all()
    assert_farthest(unit, pool, nearest, picks)
    assert_cover(unit, pool, spread, np.concatenate([earlier, picks]))
    assert (spread.owner[np.isin(pool, earlier)] == -1).all()  # an earlier pick is nearest to itself still


def test_vectors_the_groups_cannot_prune_and_repeated_vectors() -> None:
    rng = np.random.default_rng(3)
    unit = unit_rows(rng.normal(size=(ROWS, 48)).astype(np.float32))
    unit[1::2] = unit[::2][: len(unit[1::2])]  # every vector twice: ties everywhere
    pool = np.arange(ROWS)
    start = np.full(ROWS, -np.inf, dtype=np.float32)
    picks = farthest_points(unit, pool, start, seed_count(ROWS) + 400).picks
    assert_farthest(unit, pool, start, picks)


def test_fewer_picks_than_candidates_left() -> None:
    unit = clustered(ROWS, 4)
    nearest = np.full(ROWS, np.inf, dtype=np.float32)
    nearest[:5] = -np.inf
    assert sorted(farthest_points(unit, np.arange(ROWS), nearest, 50).picks.tolist()) == [0, 1, 2, 3, 4]
