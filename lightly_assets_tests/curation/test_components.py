"""Components of the duplicate pairs: a star per component stands in for its pairs."""

from __future__ import annotations

import numpy as np

from lightly_assets.curation.components import carried_labels, components, star


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labellings group the samples alike (labels themselves may differ)."""
    return len(a) == len(b) and len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(set(a.tolist()))


def test_a_star_per_component_makes_the_same_components() -> None:
    rng = np.random.default_rng(0)
    pairs = np.sort(rng.integers(0, 500, (400, 2)), axis=1)
    labels = components(500, pairs)
    edges = star(labels)
    assert same_partition(components(500, edges), labels)
    assert len(edges) == 500 - len(set(labels.tolist()))  # a spanning forest: one link per member but the first
    assert (edges[:, 0] < edges[:, 1]).all()  # each member linked to the first (lowest) of its component


def test_carried_labels_follow_the_samples_and_give_new_ones_their_own() -> None:
    old = np.array([0, 0, 1, 2, 1])
    before = np.array([4, -1, 2, 0, 1, -1])  # this run's rows: old 4, new, old 2, old 0, old 1, new
    labels = carried_labels(old, before)
    assert labels[[0, 2]].tolist() == [1, 1] and labels[3] == labels[4] == 0
    assert len({labels[1], labels[5], 0, 1, 2}) == 5  # the two new samples: labels no old sample has


def test_no_samples_no_components() -> None:
    assert components(0, np.zeros((0, 2), np.int64)).tolist() == []
    assert star(np.zeros(0, np.int64)).shape == (0, 2)
