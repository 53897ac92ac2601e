"""The embedding cache: keys kept as columns and matched exactly; its checkpoint saved often enough that a kill
loses little, seldom enough to cost little."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lightly_assets.dataset.keys import KEY_COLUMNS
from lightly_assets.embedding import cache as cache_module
from lightly_assets.embedding.cache import EmbeddingCache


def _keys(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=KEY_COLUMNS)


ROWS = [
    ("a.jpg", 10, 1, "a.jpg"),
    ("b.jpg", 20, 2, "b.jpg"),
    ("v.mp4", 99, 3, "v-000-mp4.png"),
    ("é ü.png", 5, 4, "é ü.png"),
]


def test_vectors_come_back_for_exactly_the_same_keys_in_any_order(tmp_path: Path) -> None:
    store = EmbeddingCache(tmp_path / "c.npz")
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    store.save("fp", _keys(*ROWS), vectors)
    cached = store.load("fp")
    asked = _keys(ROWS[2], ("a.jpg", 11, 1, "a.jpg"), ROWS[3], ("new.jpg", 1, 1, "new.jpg"), ROWS[0],
                  ("b.jpg", 20, 2, "b2.jpg"), ("c.jpg", 20, 2, "b.jpg"), ("b.jpg", 20, 3, "b.jpg"))  # fmt: skip
    assert cached.rows_for(asked).tolist() == [2, -1, 3, -1, 0, -1, -1, -1]
    assert np.array_equal(cached.vectors, vectors)
    assert len(store.load("another model").vectors) == 0


def test_a_cache_of_the_earlier_format_is_still_reused(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    meta = json.dumps({"version": 1, "fingerprint": "fp"}).encode()
    keys = json.dumps([list(r) for r in ROWS], ensure_ascii=False).encode()
    np.savez(path, meta=np.frombuffer(meta, np.uint8), keys=np.frombuffer(keys, np.uint8),
             vectors=np.eye(4, dtype=np.float32))  # fmt: skip
    cached = EmbeddingCache(path).load("fp")
    assert cached.rows_for(_keys(ROWS[3], ROWS[1])).tolist() == [3, 1]


@pytest.mark.parametrize("broken", ["sizes", "vectors"])
def test_a_cache_whose_columns_disagree_is_ignored(tmp_path: Path, broken: str) -> None:
    store = EmbeddingCache(tmp_path / "c.npz")
    store.save("fp", _keys(*ROWS), np.ones((4, 2), dtype=np.float32))
    with np.load(store.path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[broken] = arrays[broken][:2]
    np.savez(store.path, **arrays)
    assert len(store.load("fp").vectors) == 0


def test_checkpoint_cost_is_bounded(tmp_path: Path, monkeypatch) -> None:
    from lightly_assets.embedding.cache import Checkpoint

    clock = {"t": 0.0}
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: clock["t"])
    keys = _keys(("a.png", 1, 1, "a.png"), ("b.png", 1, 1, "b.png"))
    matrix, done = np.ones((2, 4), dtype=np.float32), np.array([False, False])
    store = EmbeddingCache(tmp_path / "c.npz")
    saves: list[float] = []
    real_save = store.save_journal

    def slow_save(*args) -> None:
        real_save(*args)
        saves.append(clock["t"])
        clock["t"] += 2.0  # a save that takes 2 s: the next one waits 20 s (10 % of the time at most)

    store.save_journal = slow_save  # type: ignore[method-assign]
    point = Checkpoint(store, "fp", keys, matrix, done, interval_s=5.0)
    done[0] = True  # the first batch
    for step in range(60):
        clock["t"] = float(step)
        point.maybe_save()
    assert saves[0] == 0.0 and all(b - a >= 20.0 for a, b in zip(saves, saves[1:], strict=False)), saves
    assert len(store.load("fp").vectors) == 1


def test_a_checkpoint_journals_only_the_runs_vectors_and_a_killed_runs_journal_is_folded_in(tmp_path: Path) -> None:
    from lightly_assets.embedding.cache import Checkpoint

    store = EmbeddingCache(tmp_path / "c.npz")
    keys = _keys(*ROWS)
    old = np.arange(16, dtype=np.float32).reshape(4, 4)
    store.save("fp", keys.iloc[:2], old[:2])  # the last run embedded a and b
    matrix, done = np.zeros((4, 4), dtype=np.float32), np.zeros(4, dtype=bool)
    rows = store.load("fp").rows_for(keys)
    done[rows >= 0] = True
    matrix[done] = old[:2]
    point = Checkpoint(store, "fp", keys, matrix, done)
    matrix[2], done[2] = old[2] + 100, True  # this run's first batch
    point.maybe_save()
    with np.load(store.journal) as journal:
        assert journal["vectors"].tolist() == [(old[2] + 100).tolist()]  # not the cached rows again
    # killed here: the next load has all three, and folds the journal into the cache
    again = EmbeddingCache(tmp_path / "c.npz").load("fp")
    assert again.vectors[again.rows_for(keys.iloc[:3])].tolist() == [*old[:2].tolist(), (old[2] + 100).tolist()]
    assert not store.journal.exists() and len(store.load("fp").vectors) == 3
    store.save_journal("fp", keys.iloc[[1]], old[[1]] - 1)  # a journal row newer than the cache's
    assert store.load("fp").vectors[store.load("fp").rows_for(keys.iloc[[1]])].tolist() == [(old[1] - 1).tolist()]
    store.save_journal("other model", keys.iloc[[3]], old[[3]])  # a stale journal adds nothing
    assert len(store.load("fp").vectors) == 3 and not store.journal.exists()
