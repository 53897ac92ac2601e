"""The embedding cache's checkpoint: saved often enough that a kill loses little, seldom enough to cost little."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_checkpoint_cost_is_bounded(tmp_path: Path, monkeypatch) -> None:
    from lightly_assets.embedding import cache as cache_module
    from lightly_assets.embedding.cache import Checkpoint, EmbeddingCache

    clock = {"t": 0.0}
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: clock["t"])
    keys = [("a.png", 1, 1, "a.png"), ("b.png", 1, 1, "b.png")]
    matrix, done = np.ones((2, 4), dtype=np.float32), np.array([True, False])
    store = EmbeddingCache(tmp_path / "c.npz")
    saves: list[float] = []
    real_save = store.save

    def slow_save(*args) -> None:
        real_save(*args)
        saves.append(clock["t"])
        clock["t"] += 2.0  # a save that takes 2 s: the next one waits 20 s (10 % of the time at most)

    store.save = slow_save  # type: ignore[method-assign]
    point = Checkpoint(store, "fp", keys, matrix, done, interval_s=5.0)
    for step in range(60):
        clock["t"] = float(step)
        point.maybe_save()
    assert saves[0] == 0.0 and all(b - a >= 20.0 for a, b in zip(saves, saves[1:], strict=False)), saves
    assert len(store.load("fp")) == 1
