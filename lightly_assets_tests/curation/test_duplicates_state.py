"""The duplicates state: visual pairs reused for unchanged samples give the groups a full search gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lightly_assets.curation.duplicates import Hashes, find_duplicates, visual_pairs
from lightly_assets.curation.duplicates_state import State
from lightly_assets.curation.phash import hash_pairs, merge_in_order, pair_order


def copies(n: int, seed: int = 0) -> np.ndarray:
    """Random 64-bit hashes with visual copies among them: every fifth row 1..3 bits off an earlier one."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    for row in range(5, n, 5):
        values[row] = values[rng.integers(0, row)]
        values[row, rng.integers(0, 8)] ^= np.uint8(rng.choice([1, 3, 7]))
    return values


def hashes_of(values: np.ndarray, max_distance: int = 4, rows: list[int] | None = None) -> Hashes:
    """`values[rows]` as a run's hashes; some samples (by number) are frames of one video, some have no hash."""
    numbers = np.arange(len(values)) if rows is None else np.asarray(rows)
    videos = ["v.mp4" if i % 7 == 0 else "" for i in numbers]
    return Hashes(values[numbers], numbers % 11 != 3, videos, max_distance)


def test_pairs_of_some_rows_are_the_full_search_pairs_that_hold_them() -> None:
    values = copies(400)
    full, full_distances = hash_pairs(values, 4)
    asked = np.array([5, 17, 40, 41, 399])
    pairs, distances = hash_pairs(values, 4, queries=asked)
    holds = np.isin(full, asked).any(axis=1)
    assert len(pairs) and pairs.tolist() == full[holds].tolist()
    assert distances.tolist() == full_distances[holds].tolist()


def test_an_incremental_run_searches_only_new_or_changed_samples_and_groups_as_a_cold_one(tmp_path: Path) -> None:
    n = 500
    values = copies(n)
    names = [f"{i}.jpg" for i in range(n)]
    vectors = np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)
    kept = [i for i in range(n) if i % 50 != 9]  # the first run lacks ten samples
    first = find_duplicates([names[i] for i in kept], vectors[kept], [names[i] for i in kept], None,
                            hashes=hashes_of(values, rows=kept))  # fmt: skip
    first.state.save(tmp_path / "state.npz")
    state = State.load(tmp_path / "state.npz")
    assert state is not None and len(state.visual.pairs) == len(first.state.visual.pairs) > 0
    assert state.visual.pairs.tolist() == first.state.visual.pairs.tolist() and state.visual.pairs.dtype == np.int64
    assert state.visual.distances.tolist() == first.state.visual.distances.tolist()
    with np.load(tmp_path / "state.npz") as saved:  # row numbers in 32 bits, distances in 8: most of the file
        assert saved["visual_pairs"].dtype == np.uint32 and saved["visual_distances"].dtype == np.uint8
    changed = values.copy()
    changed[100] = changed[4]  # an old sample whose picture changed: now a copy of another
    hashes = hashes_of(changed)
    _, searched = visual_pairs(state, names, hashes)
    assert searched == 11  # ten new, one changed
    again = find_duplicates(names, vectors, names, None, state=state, hashes=hashes)
    cold = find_duplicates(names, vectors, names, None, hashes=hashes)
    pd.testing.assert_frame_equal(again.table, cold.table)
    assert again.state.visual.pairs.tolist() == cold.state.visual.pairs.tolist()
    assert "100.jpg" in again.table["filenames"].tolist()


def test_pairs_carried_for_samples_in_another_order_are_sorted_again(tmp_path: Path) -> None:
    """Samples that changed their relative order (renamed folders, a new sort) carry their pairs too: the state
    then holds the pairs a cold run finds, in the same order."""
    n = 300
    values, names = copies(n, seed=2), [f"{i}.jpg" for i in range(n)]
    vectors = np.random.default_rng(3).normal(size=(n, 8)).astype(np.float32)
    first = find_duplicates(names, vectors, names, None, hashes=hashes_of(values))
    order = np.random.default_rng(4).permutation(n)
    moved = [names[i] for i in order]
    hashes = Hashes(values[order], (order % 11 != 3), ["v.mp4" if i % 7 == 0 else "" for i in order], 4)
    again = find_duplicates(moved, vectors[order], moved, None, state=first.state, hashes=hashes)
    cold = find_duplicates(moved, vectors[order], moved, None, hashes=hashes)
    assert visual_pairs(first.state, moved, hashes)[1] == 0  # every pair carried, none searched
    assert again.state.visual.pairs.tolist() == cold.state.visual.pairs.tolist()
    assert again.state.visual.distances.tolist() == cold.state.visual.distances.tolist()
    pd.testing.assert_frame_equal(again.table, cold.table)


def test_new_pairs_merged_into_ordered_ones_are_ordered_as_one_sort_orders_them() -> None:
    rng = np.random.default_rng(5)
    kept = np.sort(rng.integers(0, 2_000, (5_000, 2)), axis=1)
    kept = kept[pair_order(kept)]
    found = np.sort(rng.integers(0, 2_500, (300, 2)), axis=1)
    found = np.concatenate([found, kept[:20]])  # ties with kept pairs: the kept one first
    kept_values, found_values = np.arange(len(kept)), -np.arange(1, len(found) + 1)
    pairs, values = merge_in_order(kept, kept_values, found, found_values)
    together = np.concatenate([kept, found])
    order = pair_order(together)
    assert pairs.tolist() == together[order].tolist()
    assert values.tolist() == np.concatenate([kept_values, found_values])[order].tolist()


def test_a_larger_hash_distance_or_an_older_state_file_searches_everything_again(tmp_path: Path) -> None:
    values = copies(200)
    names = [f"{i}.jpg" for i in range(200)]
    state = find_duplicates(names, np.ones((200, 4), np.float32), names, None, hashes=hashes_of(values)).state
    assert visual_pairs(state, names, hashes_of(values))[1] == 0
    assert visual_pairs(state, names, hashes_of(values, max_distance=2))[1] == 0  # a smaller one filters
    assert visual_pairs(state, names, hashes_of(values, max_distance=6))[1] == 200
    path = tmp_path / "old.npz"
    with np.load(_saved(state, tmp_path), allow_pickle=False) as data:
        np.savez(path, **{k: data[k] for k in data.files if not k.startswith("visual_")})  # an earlier version
    old = State.load(path)
    assert old is not None and old.names == names and visual_pairs(old, names, hashes_of(values))[1] == 200


def _saved(state: State, tmp_path: Path) -> Path:
    state.save(tmp_path / "state.npz")
    return tmp_path / "state.npz"


def test_a_state_file_with_unicode_text_arrays_still_loads(tmp_path: Path) -> None:
    """Files saved before names and file sources were stored NUL-joined (fixed-width unicode arrays)."""
    values = copies(50)
    names = [f"{i}.jpg" for i in range(50)]
    state = find_duplicates(names, np.ones((50, 4), np.float32), names, None, hashes=hashes_of(values)).state
    state.file_hashes = pd.DataFrame(
        {"source": ["a/ü.jpg", "b.jpg"], "size": [3, 4], "mtime_ns": [5, 6], "sha256": ["ab" * 32, "cd" * 32]}
    )
    new = State.load(_saved(state, tmp_path))
    assert new is not None and new.names == names
    pd.testing.assert_frame_equal(new.file_hashes, state.file_hashes, check_dtype=False)
    path = tmp_path / "old.npz"
    with np.load(_saved(state, tmp_path), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k not in ("names_text", "names_count", "hash_sources_text")}
    np.savez(path, names=np.array(names, dtype=np.str_), hash_sources=np.array(["a/ü.jpg", "b.jpg"]), **arrays)
    old = State.load(path)
    assert old is not None and old.names == names and old.digests == state.digests
    pd.testing.assert_frame_equal(old.file_hashes, state.file_hashes, check_dtype=False)
    assert old.visual.pairs.tolist() == state.visual.pairs.tolist()
