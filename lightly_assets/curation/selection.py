"""A subset to label: diverse (k-center), typical, or balanced by weak label, never two duplicates.

`typicality` and `balance` run on LightlyStudio's own sampling engine, `lightly_mundig` (what
`lightly_studio.sampling` calls for typicality weighting and class balancing), on the vectors directly:
LightlyStudio's `sampling` API reads embeddings from its database and writes a tag, which would tie the selection
to the upload target; the engine alone needs neither and is deterministic for the same inputs. `diverse` is the
engine's algorithm, farthest-point sampling from the first candidate, run with numpy (`farthest.py`): 2.8x faster
than the engine on one product per pick, more on large clustered sets where groups spare most products, and it
continues from a kept selection (`selection_state.py`), which the engine can only do by measuring everything again.

Only one member of each duplicate group (its first) is a candidate, so no selection holds two members of a group;
samples with issues that rule them out (by default `broken` and `low_information`) are not candidates either.
With random weights the vectors carry no meaning, so the diversity comes from the perceptual hashes instead
(`hash_features`): a spread over what the pictures look like.
Distances are cosine distances (1 - cosine) on length-1 vectors, like the duplicate threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightly_mundig  # LightlyStudio's sampling engine, compiled without type stubs (see the ignores)
import numpy as np

from lightly_assets.atomic import atomic_output
from lightly_assets.curation.coverage import cover
from lightly_assets.curation.duplicates import unit_rows
from lightly_assets.curation.errors import CurationError
from lightly_assets.curation.farthest import farthest_points
from lightly_assets.curation.phash import BITS

STRATEGIES = ("diverse", "typicality", "balance")
DEFAULT_PROPORTION = 0.1  # without n_samples or proportion: a tenth of the samples, rounded down (at least 1)
# Balance first, diversity within it: at equal strengths the engine let one label take 9 of 25 picks (5 labels
# of 60..300 samples), at 10 it gave 5 each.
BALANCE_STRENGTH = 10.0
TYPICALITY_NEIGHBOURS = 20  # LightlyStudio's DEFAULT_NUM_NEAREST_NEIGHBORS for its typicality metadata
# each byte's 8 bits (most significant first, as np.unpackbits) as +-1: hash_features' lookup table
_BYTE_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32) * 2.0 - 1.0


@dataclass(frozen=True)
class Selection:
    """The selected rows (ascending: `frame_index` order) and what a user should know about them."""

    rows: np.ndarray
    strategy: str
    requested: int
    candidates: int
    notes: tuple[str, ...] = ()
    kept: int = 0  # rows kept from the last run's selection (selection_state.py); 0 when selected anew


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise CurationError(f"selection config: strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


def requested_count(total: int, n_samples: int | None, proportion: float | None) -> int:
    """How many samples the config asks for; a negative count or a proportion outside [0, 1] is an error."""
    if n_samples is not None and proportion is not None:
        raise CurationError("selection config: set n_samples or proportion, not both")
    if n_samples is not None:
        if n_samples < 0:
            raise CurationError(f"selection config: n_samples must be 0 or more, got {n_samples}")
        return int(n_samples)
    share = DEFAULT_PROPORTION if proportion is None else float(proportion)
    if not (0.0 <= share <= 1.0):
        raise CurationError(f"selection config: proportion must be in [0, 1], got {proportion}")
    return max(int(np.floor(total * share + 1e-9)), 1 if total > 0 and share > 0 else 0)  # a share is never 0 of some


def candidates(group_of: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """Rows in no group, and the first row of each group, less the `excluded` rows (samples with an issue that
    rules them out). A group whose first member is excluded is represented by its first member that is not."""
    group_of = np.asarray(group_of)
    keep = np.ones(len(group_of), dtype=bool) if excluded is None else ~np.asarray(excluded, dtype=bool)
    rows = np.arange(len(group_of))[keep]
    groups = group_of[keep]
    first = np.zeros(len(rows), dtype=bool)
    grouped = groups >= 0
    if grouped.any():
        _, heads = np.unique(groups[grouped], return_index=True)
        first[np.flatnonzero(grouped)[heads]] = True
    return rows[~grouped | first]


def select(
    matrix: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    group_of: np.ndarray,
    n: int,
    strategy: str = "diverse",
    excluded: np.ndarray | None = None,
    excluded_why: str = "samples with issues",
) -> Selection:
    """Select `n` rows with the strategy; more than there are candidates selects them all, with a note."""
    check_strategy(strategy)
    group_of = np.asarray(group_of)
    pool = candidates(group_of, excluded)
    notes = left_out(group_of, excluded, excluded_why, pool)
    if n >= len(pool):
        if n > len(pool):
            notes.append(f"n_samples {n} is above the {len(pool)} candidates: all of them are selected")
        return Selection(pool, strategy, n, len(pool), tuple(notes))
    if n == 0:
        return Selection(pool[:0], strategy, n, len(pool), tuple(notes))
    unit = unit_rows(matrix[pool])
    picked = _run(unit, np.asarray(labels)[pool], n, strategy)
    return Selection(np.sort(pool[picked]), strategy, n, len(pool), tuple(notes))


def left_out(group_of: np.ndarray, excluded: np.ndarray | None, why: str, pool: np.ndarray) -> list[str]:
    """Notes on the samples that are not candidates: those with an excluded issue, duplicates past the first."""
    notes: list[str] = []
    left = int(np.asarray(excluded, dtype=bool).sum()) if excluded is not None else 0
    if left:
        notes.append(f"{left} {why} left out")
    grouped_out = len(group_of) - left - len(pool)
    if grouped_out > 0:
        notes.append(f"{grouped_out} duplicates left out (one sample per duplicate group)")
    return notes


def hash_features(hashes: np.ndarray) -> np.ndarray:
    """Perceptual hash bits as +-1 vectors: cosine distance between them is proportional to Hamming distance, so
    farthest-point sampling on them spreads a selection over what pictures look like, with no model."""
    values = np.asarray(hashes, dtype=np.uint8).reshape(-1, BITS // 8)
    return _BYTE_SIGNS[values].reshape(len(values), BITS)  # one gather: a million hashes in ~0.15 s, not ~1 s


def _run(unit: np.ndarray, labels: np.ndarray, n: int, strategy: str) -> np.ndarray:
    if strategy == "diverse":  # farthest-point sampling from the first candidate, as the engine's
        return farthest_points(unit, np.arange(len(unit)), np.full(len(unit), -np.inf, dtype=np.float32), n).picks
    engine = lightly_mundig.Selection()  # pyright: ignore[reportAttributeAccessIssue]
    if strategy == "typicality":
        k = min(TYPICALITY_NEIGHBOURS, len(unit) - 1)
        typicality = lightly_mundig.Typicality(embeddings=unit)  # pyright: ignore[reportAttributeAccessIssue]
        scores = typicality.calculate_typicality(num_nearest_neighbors=k)
        engine.add_weighting_strategy(weights=np.asarray(scores, dtype=np.float32), strength=1.0)
    else:
        if strategy == "balance":
            classes, index = np.unique(labels, return_inverse=True)
            one_hot = np.eye(len(classes), dtype=np.float32)[index]
            target = np.full(len(classes), 1.0 / len(classes), dtype=np.float32)
            engine.add_balancing_strategy(class_distributions=one_hot, target=target, strength=BALANCE_STRENGTH)
        engine.add_diversifying_strategy(embeddings=unit, strength=1.0, stopping_condition_minimum_distance=None)
    picked = engine.run_selection(preselected_indices=[], n_total_samples=len(unit), n_samples_to_select=n)
    return np.asarray(picked, dtype=np.int64)


def coverage_radius(matrix: np.ndarray, selected: np.ndarray) -> float | None:
    """The largest cosine distance from any sample to its nearest selected one (None for an empty selection)."""
    return cover(unit_rows(matrix), selected).radius() if len(matrix) else None


def random_rows(pool: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A seeded random selection of the same size from the same candidates: the baseline for coverage."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False)) if len(pool) else pool


def write_selection(path, names: Sequence[str]) -> None:
    """`selection.txt`: one Lightly filename per line, in `frame_index` order (the caller's row order)."""
    with atomic_output(path) as handle:
        handle.write("".join(f"{name}\n" for name in names).encode("utf-8"))
