"""The duplicates state: visual pairs reused for unchanged samples give the groups a full search gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lightly_assets.curation import duplicates as duplicates_module
from lightly_assets.curation.duplicates import Hashes, find_duplicates, visual_pairs
from lightly_assets.curation.duplicates_state import State
from lightly_assets.curation.pair_search import hash_pairs, merge_in_order, pair_order


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
    assert state.visual.pairs.tolist() == first.state.visual.pairs.tolist() and state.visual.pairs.dtype == np.int32
    assert state.visual.distances.tolist() == first.state.visual.distances.tolist()
    with np.load(tmp_path / "state.npz") as saved:  # row numbers in 32 bits, distances in 8: most of the file
        assert saved["visual_pairs"].itemsize == 4 and saved["visual_distances"].dtype == np.uint8
    changed = values.copy()
    changed[100] = changed[4]  # an old sample whose picture changed: now a copy of another
    hashes = hashes_of(changed)
    _, searched = visual_pairs(state, names, hashes)
    assert searched == 11  # ten new, one changed
    again = find_duplicates(names, vectors, names, None, state=state, hashes=hashes)
    assert again.searched == 11  # visual copies searched, near-duplicates not (None)
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


def test_pairs_in_32_bits_merge_as_in_64_where_their_order_keys_do_not_fit_in_32() -> None:
    rng = np.random.default_rng(6)
    kept = np.sort(rng.integers(0, 200_000, (5_000, 2)), axis=1)  # i * n + j reaches 4e10
    kept = kept[pair_order(kept)]
    found = np.sort(rng.integers(0, 200_000, (300, 2)), axis=1)
    values = np.arange(len(kept), dtype=np.uint8), np.ones(len(found), dtype=np.int64)
    wide = merge_in_order(kept, values[0], found, values[1])
    narrow = merge_in_order(kept.astype(np.int32), values[0], found, values[1])
    assert narrow[0].dtype == np.int32 and narrow[0].tolist() == wide[0].tolist()
    assert narrow[1].tolist() == wide[1].tolist()


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


def planted(n: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Names, vectors with near copies (every 13th row close to an earlier one) and content keys with exact copies
    (every 17th row shares an earlier one's)."""
    rng = np.random.default_rng(6)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(n)]
    for row in range(13, n, 13):
        vectors[row] = vectors[rng.integers(0, row)] + rng.normal(scale=1e-3, size=8).astype(np.float32)
    for row in range(17, n, 17):
        keys[row] = keys[int(rng.integers(0, row))]
    return [f"{i:04d}.jpg" for i in range(n)], vectors, keys


def test_a_run_that_carries_every_pair_groups_from_the_old_components_as_a_cold_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 600
    names, vectors, keys = planted(n)
    values = copies(n, seed=7)
    values[:200] = values[np.arange(200) // 20 * 20]  # ten groups of 20 alike: 190 pairs each, 19 links in a star
    first_rows = [i for i in range(n) if i % 40 != 11]  # fifteen samples are new in the second run
    first = find_duplicates([names[i] for i in first_rows], vectors[first_rows], [keys[i] for i in first_rows],
                            0.99, model="m", hashes=hashes_of(values, rows=first_rows))  # fmt: skip
    state = State.load(_saved(first.state, tmp_path))
    assert state is not None and state.linked is not None and state.linked.tolist() == first.state.linked.tolist()
    in_pairs = np.zeros(len(first_rows), dtype=bool)
    in_pairs[np.concatenate([state.pairs, state.visual.pairs]).reshape(-1)] = True
    gone = {first_rows[i] for i in np.flatnonzero(~in_pairs)[:5]}  # removed samples that were in no pair
    rows = [i for i in range(n) if i not in gone]
    run = ([names[i] for i in rows], vectors[rows], [keys[i] for i in rows])
    sizes: list[int] = []
    real = duplicates_module.components
    monkeypatch.setattr(duplicates_module, "components", lambda k, p: sizes.append(len(p)) or real(k, p))
    again = find_duplicates(*run, 0.99, model="m", state=state, hashes=hashes_of(values, rows=rows))
    carried_pairs = len(state.pairs) + len(state.visual.pairs)
    assert sizes and sizes[0] < carried_pairs / 4  # the old components stood in for the carried pairs
    assert again.searched == 15
    cold = find_duplicates(*run, 0.99, model="m", hashes=hashes_of(values, rows=rows))
    pd.testing.assert_frame_equal(again.table, cold.table)
    assert again.counts()["near"] > 0 and again.counts()["exact"] > 0 and again.counts()["visual"] > 0
    assert again.state.pairs.tolist() == cold.state.pairs.tolist()
    assert again.state.visual.pairs.tolist() == cold.state.visual.pairs.tolist()


def test_a_removed_sample_that_joined_others_or_an_older_file_groups_from_all_pairs(tmp_path: Path) -> None:
    n = 400
    names, vectors, keys = planted(n)
    values = copies(n, seed=8)
    first = find_duplicates(names, vectors, keys, 0.99, model="m", hashes=hashes_of(values))
    joined = int(first.state.visual.pairs[0, 0])  # in a pair: removing it may split its group
    rows = [i for i in range(n) if i != joined]
    run = ([names[i] for i in rows], vectors[rows], [keys[i] for i in rows])
    cold = find_duplicates(*run, 0.99, model="m", hashes=hashes_of(values, rows=rows))
    again = find_duplicates(*run, 0.99, model="m", state=first.state, hashes=hashes_of(values, rows=rows))
    pd.testing.assert_frame_equal(again.table, cold.table)
    path = tmp_path / "older.npz"
    with np.load(_saved(first.state, tmp_path), allow_pickle=False) as data:
        np.savez(path, **{k: data[k] for k in data.files if k != "linked"})  # saved before components were kept
    older = State.load(path)
    assert older is not None and older.linked is None
    all_rows = find_duplicates(names, vectors, keys, 0.99, model="m", state=older, hashes=hashes_of(values))
    pd.testing.assert_frame_equal(all_rows.table, first.table)
    assert all_rows.searched == 0 and all_rows.state.linked is not None
