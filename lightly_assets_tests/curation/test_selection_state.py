"""The diverse selection kept between runs: it grows as the engine grows a preselection, its covers are exact."""

from __future__ import annotations

from pathlib import Path

import lightly_mundig
import numpy as np
import pytest

from lightly_assets.curation.coverage import Cover, cover
from lightly_assets.curation.duplicates import unit_rows
from lightly_assets.curation.errors import CurationError
from lightly_assets.curation.selection import candidates, hash_features, select
from lightly_assets.curation.selection_state import STATE_VERSION, Request, SelectionState, choose


def points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 12)) * 3
    return (centres[rng.integers(0, 6, n)] + rng.normal(size=(n, 12))).astype(np.float32)


def run(matrix: np.ndarray, names: list[str], n: int, previous=None, group_of=None, strategy: str = "diverse"):
    group_of = np.full(len(matrix), -1) if group_of is None else group_of
    labels = np.zeros(len(matrix), dtype=np.int64)
    return choose(matrix, labels, group_of, np.array(names), Request(n, strategy), previous)


def engine_with(unit: np.ndarray, preselected: list[int], n: int) -> set[int]:
    """What LightlyStudio's engine selects with `preselected` kept (rows of `unit`)."""
    engine = lightly_mundig.Selection()  # pyright: ignore[reportAttributeAccessIssue]
    engine.add_diversifying_strategy(embeddings=unit, strength=1.0, stopping_condition_minimum_distance=None)
    picked = engine.run_selection(preselected_indices=preselected, n_total_samples=len(unit), n_samples_to_select=n)
    return {int(i) for i in picked}


def assert_exact(state: SelectionState, matrix: np.ndarray) -> None:
    """The carried covers hold what measuring every sample against every pick gives."""
    unit = unit_rows(matrix)
    for picks, carried in ((state.chosen, state.chosen_cover), (state.random, state.random_cover)):
        fresh = cover(unit, picks)
        np.testing.assert_allclose(carried.nearest, fresh.nearest, atol=1e-6)
        assert carried.radius() == pytest.approx(fresh.radius(), abs=1e-6)
        assert np.isin(carried.owner, picks).all()


def test_a_first_run_is_the_engines_selection_and_an_unchanged_rerun_keeps_it() -> None:
    x = points(300, 0)
    names = [f"{i:04d}.jpg" for i in range(300)]
    first, state, radius, baseline = run(x, names, 25)
    assert state is not None and first.kept == 0
    assert first.rows.tolist() == select(x, np.zeros(300), np.full(300, -1), 25).rows.tolist()
    assert set(first.rows.tolist()) == engine_with(unit_rows(x), [], 25)  # LightlyStudio's engine picks the same
    assert radius is not None and baseline is not None and radius < baseline
    again, state2, radius2, baseline2 = run(x, names, 25, state)
    assert again.rows.tolist() == first.rows.tolist() and again.kept == 25
    assert (radius2, baseline2) == (radius, baseline) and state2 is not None
    assert state2.random.tolist() == state.random.tolist()


def test_new_samples_grow_the_selection_as_the_engine_grows_a_preselection() -> None:
    x = points(300, 0)
    names = [f"{i:04d}.jpg" for i in range(300)]
    _, state, _, _ = run(x, names, 25)
    assert state is not None
    new = points(60, 1) * 1.5  # some of them far from everything selected so far
    grown_x = np.concatenate([x[:150], new, x[150:]])  # new names sort in the middle: rows move
    grown_names = names[:150] + [f"0149-new-{i:02d}.jpg" for i in range(60)] + names[150:]
    grown, grown_state, _, _ = run(grown_x, grown_names, 36, state)
    assert grown.kept == 25 and len(grown.rows) == 36 and any("kept 25" in note for note in grown.notes)
    kept = [grown_names.index(names[r]) for r in state.chosen]
    assert set(kept) <= set(grown.rows.tolist())
    assert set(grown.rows.tolist()) == engine_with(unit_rows(grown_x), kept, 36)
    assert any(grown_names[r].startswith("0149-new") for r in grown.rows)
    assert grown_state is not None
    assert_exact(grown_state, grown_x)


def test_removed_or_changed_picks_leave_and_their_samples_are_measured_again() -> None:
    x = points(300, 0)
    names = [f"{i:04d}.jpg" for i in range(300)]
    _, state, _, _ = run(x, names, 30)
    assert state is not None
    gone, changed = int(state.chosen[3]), int(state.chosen[7])
    y = x.copy()
    y[changed] += 5.0
    keep = [i for i in range(300) if i != gone]
    grown, grown_state, _, _ = run(y[keep], [names[i] for i in keep], 29, state)
    assert grown_state is not None and grown.kept == 28 and len(grown.rows) == 29
    picked = {names[keep[r]] for r in grown.rows}
    assert names[gone] not in picked
    assert_exact(grown_state, y[keep])


def test_duplicates_and_fewer_requested_select_anew_or_stay_out() -> None:
    x = points(200, 0)
    names = [f"{i:04d}.jpg" for i in range(200)]
    _, state, _, _ = run(x, names, 20)
    assert state is not None
    fewer, _, _, _ = run(x, names, 10, state)
    assert fewer.kept == 0 and fewer.rows.tolist() == select(x, np.zeros(200), np.full(200, -1), 10).rows.tolist()
    group_of = np.full(200, -1)
    first, second = int(state.chosen[0]), int(state.chosen[1])
    group_of[[first, second]] = 0  # two selected samples are now one duplicate group: only the first stays
    grown, _, _, _ = run(x, names, 20, state, group_of=group_of)
    assert grown.kept == 19 and first in grown.rows and second not in grown.rows
    assert set(grown.rows.tolist()) <= set(candidates(group_of).tolist())


def test_other_strategies_keep_no_state() -> None:
    x = points(120, 0)
    names = [f"{i:04d}.jpg" for i in range(120)]
    _, state, _, _ = run(x, names, 12)
    chosen, nothing, radius, _ = run(x, names, 12, state, strategy="typicality")
    assert nothing is None and chosen.kept == 0 and radius is not None


def test_the_state_round_trips_and_a_bad_file_is_one_line(tmp_path: Path) -> None:
    x = points(100, 0)
    _, state, _, _ = run(x, [f"{i}.jpg" for i in range(100)], 10)
    assert state is not None
    path = tmp_path / "curation" / "selection_state.npz"
    state.save(path)
    loaded = SelectionState.load(path)
    assert loaded is not None and loaded.names.tolist() == state.names.tolist()
    assert loaded.chosen.tolist() == state.chosen.tolist() and loaded.random.tolist() == state.random.tolist()
    assert np.array_equal(loaded.chosen_cover.nearest, state.chosen_cover.nearest)
    assert SelectionState.load(tmp_path / "missing.npz") is None
    np.savez(tmp_path / "old.npz", version=np.int64(STATE_VERSION + 1))
    assert SelectionState.load(tmp_path / "old.npz") is None
    state.chosen = np.append(state.chosen, 10_000)  # a row that no sample has
    state.save(tmp_path / "cut.npz")
    with pytest.raises(CurationError, match="outside the samples"):
        SelectionState.load(tmp_path / "cut.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a state")
    with pytest.raises(CurationError, match="unreadable selection state") as error:
        SelectionState.load(tmp_path / "bad.npz")
    assert "\n" not in str(error.value)


def test_asking_for_every_candidate_measures_only_the_others_and_a_rerun_only_what_changed(monkeypatch) -> None:
    x = points(400, 0)
    names = [f"{i:04d}.jpg" for i in range(400)]
    group_of = np.full(400, -1)
    group_of[:300] = np.arange(300) // 3  # 100 groups of three: 200 duplicates past the first
    products: list[int] = []
    closer = Cover._closer

    def counted(self, unit, picks, rows) -> None:
        products.append(len(picks) * len(rows))
        closer(self, unit, picks, rows)

    monkeypatch.setattr(Cover, "_closer", counted)
    first, state, radius, baseline = run(x, names, 500, group_of=group_of)
    pool = candidates(group_of)
    assert first.rows.tolist() == pool.tolist() and any("above the 200 candidates" in n for n in first.notes)
    assert sum(products) == 200 * 200  # the 200 duplicates against the 200 picks, once
    assert state is not None and state.random.tolist() == pool.tolist() and radius == baseline
    assert_exact(state, x)
    products.clear()
    new = points(10, 1) * 1.5
    grown_x = np.concatenate([x, new, new[:2] + 1e-3])
    grown_names = names + [f"new-{i:02d}.jpg" for i in range(12)]
    grown_groups = np.concatenate([group_of, np.arange(100, 110), [100, 101]])  # two new duplicates
    grown, grown_state, _, _ = run(grown_x, grown_names, 500, state, group_of=grown_groups)
    assert sum(products) == 2 * 210 + 200 * 10  # the new duplicates against every pick, the old against the new
    assert grown.kept == 200 and len(grown.rows) == 210 and grown_state is not None
    assert_exact(grown_state, grown_x)


def tied_hashes(n: int, seed: int) -> np.ndarray:
    """Hashes around a few centres with few bits flipped: most samples are equally near two or more picks."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (5, 8), dtype=np.uint8)
    bits = np.unpackbits(centres[rng.integers(0, 5, n)], axis=1)
    return np.packbits(bits ^ (rng.random(bits.shape) < 0.04), axis=1)


def same_choice(first: tuple, second: tuple) -> None:
    (one, state_one, *radii_one), (two, state_two, *radii_two) = first, second
    assert one.rows.tolist() == two.rows.tolist() and radii_one == radii_two
    if state_one is not None:
        pairs = (state_one.chosen_cover, state_two.chosen_cover), (state_one.random_cover, state_two.random_cover)
        for a, b in pairs:
            assert a.nearest.tobytes() == b.nearest.tobytes() and a.owner.tolist() == b.owner.tolist()


@pytest.mark.parametrize("n", [30, 520])  # farthest points from scratch; every candidate (500: duplicates out)
@pytest.mark.parametrize("strategy", ["diverse", "typicality"])
def test_covers_on_the_hashes_are_those_of_their_bits_ties_and_reruns_included(n: int, strategy: str) -> None:
    codes = tied_hashes(600, 3)
    matrix, labels = hash_features(codes), np.zeros(600, dtype=np.int64)
    names = np.array([f"{i:04d}.jpg" for i in range(600)])
    group_of = np.where(np.arange(600) % 3 == 0, np.arange(600) // 6, -1)  # pairs of duplicates
    request = Request(n, strategy)
    bits = choose(matrix, labels, group_of, names, request, None)
    hashes = choose(matrix, labels, group_of, names, request, None, codes)
    same_choice(bits, hashes)
    if strategy == "diverse":  # a re-run with 60 samples changed measures them again on each side
        grown = tied_hashes(600, 4)
        grown[60:] = codes[60:]
        again = hash_features(grown)
        same_choice(
            choose(again, labels, group_of, names, request, bits[1]),
            choose(again, labels, group_of, names, request, hashes[1], grown),
        )
