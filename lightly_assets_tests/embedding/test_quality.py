"""The kNN quality figure: right on data whose answer is known, chance beside it, sampled when large."""

from __future__ import annotations

import numpy as np

from lightly_assets.defs import checks
from lightly_assets.embedding.quality import Quality, applicable, knn_agreement, measure, neighbours


def _clusters(n_per: int, labels: int, dim: int = 8, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(labels), n_per)


def test_separable_labels_agree_fully_and_noise_is_at_chance() -> None:
    x, y = _clusters(20, 3)
    knn = knn_agreement(x, y)
    assert knn.agreement == 1.0 and knn.k == 5 and knn.samples == 60 and knn.labels == 3
    assert 0.15 < knn.chance < 0.5 and knn.better_than_chance
    noise = knn_agreement(np.random.default_rng(1).normal(size=(60, 8)), y)
    assert abs(noise.agreement - noise.chance) < 0.2 and not noise.better_than_chance


def test_chance_accounts_for_imbalance() -> None:
    """With 90% of one label, always voting the majority agrees 90% of the time: chance says so."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 90 + [1] * 10)
    knn = knn_agreement(rng.normal(size=(100, 4)), y)
    assert knn.chance > 0.8 and not knn.better_than_chance


def test_leave_one_out_and_cosine() -> None:
    x = np.array([[1, 0], [2, 0.01], [0, 1], [0, 3]], dtype=np.float32)  # scale does not matter, direction does
    assert neighbours(x, k=1).ravel().tolist() == [1, 0, 3, 2]
    assert neighbours(x, k=5).shape == (4, 3)  # never itself, k capped at n-1


def test_not_applicable_and_sampling() -> None:
    assert "two weak labels" in applicable(np.zeros(10))
    q = measure(np.ones((10, 4)), np.zeros(10), np.arange(10))
    assert q.knn is None and "two weak labels" in q.metadata()["knn_agreement"]
    result = checks.knn_better_than_chance(q)  # passes, and says first that nothing was judged
    assert result.passed and result.metadata["applicable"].value is False
    assert result.description == (
        "Passed with nothing to judge: the kNN agreement was not measured (needs at least two weak labels "
        "(sub-folders))."
    )

    x, y = _clusters(100, 2)
    seen: list[np.ndarray] = []

    def random_vectors(rows: np.ndarray):
        seen.append(rows)
        return np.random.default_rng(0).normal(size=(len(rows), 8)), np.arange(len(rows))

    q = measure(x, y, np.arange(1000, 1200), random_vectors, max_samples=50)
    assert q.knn.samples == 50 and q.random.samples == 50
    assert len(seen) == 1 and len(seen[0]) == 50 and seen[0].min() >= 1000  # the caller's own row ids
    assert q.knn.agreement == 1.0 and q.random.agreement < 0.9
    good = checks.knn_better_than_chance(q)
    assert good.passed and good.metadata["knn_agreement_random_network"].value == round(q.random.agreement, 4)
    bad = checks.knn_better_than_chance(Quality(q.random, None))
    assert not bad.passed and "no better than chance" in bad.description


def test_frames_of_one_video_are_not_each_others_neighbours() -> None:
    """Two videos per label whose frames sit in tight per-video clusters: with the same video's frames as
    neighbours the figure is trivially 1.0; with them excluded it is what other videos say."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))  # four videos, two per label, unrelated directions
    x = np.concatenate([c + 0.01 * rng.normal(size=(10, 8)) for c in centres]).astype(np.float32)
    labels = np.repeat([0, 0, 1, 1], 10)
    sources = np.repeat(["a.mp4", "b.mp4", "c.mp4", "d.mp4"], 10)
    assert knn_agreement(x, labels).agreement == 1.0  # the trivial figure
    knn = knn_agreement(x, labels, groups=sources)
    neigh = neighbours(x, 5, sources)
    assert not (sources[neigh] == sources[:, None]).any()  # no neighbour from the same video
    assert knn.agreement < 1.0 and knn.rule and knn.samples == 40
    q = measure(x, labels, np.arange(40), groups=sources)
    assert "same video" in q.metadata()["knn_rule"] and "knn_agreement_random_network" not in q.metadata()


def test_a_label_per_video_is_not_applicable_once_the_same_video_is_excluded() -> None:
    x = np.random.default_rng(0).normal(size=(30, 4))
    sources = np.repeat(["a.mp4", "b.mp4", "c.mp4"], 10)
    reason = applicable(np.repeat([0, 1, 2], 10), groups=sources)
    assert reason and "single video" in reason
    assert measure(x, np.repeat([0, 1, 2], 10), np.arange(30), groups=sources).knn is None
    images = np.array([f"{i}.jpg" for i in range(30)])  # images are their own source: measured as before
    assert knn_agreement(x, np.repeat([0, 1, 2], 10), groups=images).rule == ""
