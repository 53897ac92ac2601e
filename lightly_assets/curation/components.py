"""Connected components of the duplicate pairs, carried over from the last run where nothing joined has changed.

A run keeps its pairs (near and visual) for the next one, and with them the components those pairs make
(`linked`, one label per sample). At a million samples with many visual copies that is some 23 M pairs, and
finding their components took ~3 s of every run. When the next run carries every kept pair over (only samples
without pairs were removed or changed), the old components are still components of the carried pairs: each is
written as a star (every member linked to its first), and only the new pairs are added to those ~1 M links.
"""

from __future__ import annotations

import numpy as np


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """A component label per sample (0..n-1) of the undirected graph of `pairs`."""
    if not n:
        return np.zeros(0, dtype=np.int64)
    # scipy (~0.2 s) only when computing this: the definitions load and runs start without it
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def star(labels: np.ndarray) -> np.ndarray:
    """Pairs that make the same components as `labels`: each sample linked to its component's first sample."""
    rows, _, heads = members(labels)
    linked = rows != heads
    return np.stack([heads[linked], rows[linked]], axis=1)


def members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows in components of two or more (ascending), their group (numbered in the order of first members)
    and their group's first member."""
    labels = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    rows = np.flatnonzero(sizes[labels] >= 2) if len(labels) else np.zeros(0, np.int64)
    components = labels[rows]
    _, first = np.unique(components, return_index=True)
    first.sort()  # positions in `rows` of each component's first member, in row order
    group = np.full(len(sizes), -1, dtype=np.int64)
    group[components[first]] = np.arange(len(first))
    head = np.full(len(sizes), -1, dtype=np.int64)
    head[components[first]] = rows[first]
    return rows.astype(np.int64), group[components], head[components]


def carried_labels(old: np.ndarray, before: np.ndarray) -> np.ndarray:
    """The last run's labels in this run's rows (`before`: each row's position then, -1 for a new sample), with a
    label of its own for each new sample."""
    old = np.asarray(old, dtype=np.int64)
    before = np.asarray(before, dtype=np.int64)
    fresh = int(old.max(initial=-1)) + 1
    return np.where(before >= 0, old[np.maximum(before, 0)], fresh + np.arange(len(before)))
