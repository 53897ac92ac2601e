"""What a diverse selection leaves for the next run, and how the next run keeps it and grows it.

A re-run keeps the samples selected before that are still candidates with unchanged vectors and adds the candidates
farthest from them (farthest-point sampling continued: what LightlyStudio's engine picks with them preselected), so a
selection already sent to labelling stays put and grows with the data, as Lightly's datapool keeps earlier
selections. Each sample's nearest pick is kept too, so a re-run measures only new or changed samples and those whose
nearest pick left: 100 new samples among 100,000 cost milliseconds where the engine takes a minute to select anew.
Asking for fewer samples than are kept selects anew; so do the other strategies, which keep no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lightly_assets.curation.coverage import Cover, HashRows, Points, cover
from lightly_assets.curation.duplicates import unit_rows, vector_digests
from lightly_assets.curation.farthest import Spread, farthest_points
from lightly_assets.curation.farthest_hashes import exact_on_hashes, farthest_hashes
from lightly_assets.curation.selection import Selection, candidates, left_out, random_rows, select
from lightly_assets.curation.state_file import save_state, state_arrays

STATE_VERSION = 1


@dataclass
class SelectionState:
    """The samples one run saw (names, vector digests), its selection and random baseline, and their covers."""

    names: np.ndarray  # (N,) str
    digests: np.ndarray  # (N,) bytes
    chosen: np.ndarray  # rows selected
    chosen_cover: Cover
    random: np.ndarray  # rows of the random baseline
    random_cover: Cover

    def save(self, path: Path) -> None:
        save_state(
            path,
            STATE_VERSION,
            names=np.asarray(self.names, dtype=np.str_),
            digests=np.asarray(self.digests, dtype=np.bytes_),
            chosen=self.chosen.astype(np.int64),
            chosen_nearest=self.chosen_cover.nearest.astype(np.float32),
            chosen_owner=self.chosen_cover.owner.astype(np.int64),
            random=self.random.astype(np.int64),
            random_nearest=self.random_cover.nearest.astype(np.float32),
            random_owner=self.random_cover.owner.astype(np.int64),
        )

    def check(self) -> None:
        """Raise ValueError when the arrays do not fit together (a file written by hand or cut short)."""
        size = len(self.names)
        covers = (self.chosen_cover, self.random_cover)
        if len(self.digests) != size or any(len(c.nearest) != size or len(c.owner) != size for c in covers):
            raise ValueError(f"{size} names, but other lengths for their digests or covers")
        for rows in (self.chosen, self.random, *(c.owner for c in covers)):
            if len(rows) and (rows.min() < -1 or rows.max() >= size):
                raise ValueError("a row number outside the samples")

    @classmethod
    def load(cls, path: Path) -> SelectionState | None:
        """The saved state, or None when there is none or it is from another version (then it selects anew)."""
        with state_arrays(path, STATE_VERSION, "selection state") as data:
            if data is None:
                return None
            state = cls(
                names=data["names"],
                digests=data["digests"],
                chosen=data["chosen"].astype(np.int64),
                chosen_cover=Cover(data["chosen_nearest"].astype(np.float32), data["chosen_owner"]),
                random=data["random"].astype(np.int64),
                random_cover=Cover(data["random_nearest"].astype(np.float32), data["random_owner"]),
            )
            state.check()
            return state


@dataclass(frozen=True)
class Samples:
    """This run's samples: unit vectors (rows), names and vector digests, the candidates, the requested count."""

    matrix: np.ndarray  # as given: the engine selects from these
    unit: np.ndarray
    names: np.ndarray
    digests: np.ndarray
    pool: np.ndarray
    n: int
    codes: np.ndarray | None = None  # the perceptual hashes `matrix` was made from (hash_features), if it was

    @property
    def points(self) -> Points:
        return points_of(self.unit, self.codes)


def points_of(unit: np.ndarray, codes: np.ndarray | None) -> Points:
    """What covers measure: the hashes where the vectors are their bits (the same cover, faster), else `unit`."""
    return unit if codes is None else HashRows(codes)


@dataclass(frozen=True)
class Request:
    """What the config asks: how many, how, and which samples an issue rules out (with the notes' word for them)."""

    n: int
    strategy: str = "diverse"
    excluded: np.ndarray | None = None
    why: str = "samples with issues"


def choose(
    matrix: np.ndarray,
    labels: np.ndarray,
    group_of: np.ndarray,
    names: np.ndarray,
    request: Request,
    previous: SelectionState | None,
    codes: np.ndarray | None = None,
) -> tuple[Selection, SelectionState | None, float | None, float | None]:
    """The selection, the state to save (None for strategies that keep none), its coverage radius and the random
    baseline's. `previous` is the last run's state, or None to select anew. `codes`: the perceptual hashes when
    `matrix` is `hash_features(codes)` (the covers are then measured on the hashes)."""
    unit = unit_rows(matrix)
    group_of = np.asarray(group_of)
    pool = candidates(group_of, request.excluded)
    if request.strategy != "diverse":
        selection = select(matrix, labels, group_of, request.n, request.strategy, request.excluded, request.why)
        random = random_rows(pool, len(selection.rows))
        points = points_of(unit, codes)
        return selection, None, cover(points, selection.rows).radius(), cover(points, random).radius()
    digests = np.asarray(vector_digests(unit), dtype=np.bytes_)
    samples = Samples(matrix, unit, np.asarray(names, dtype=np.str_), digests, pool, request.n, codes)
    selection, state = diverse(samples, labels, group_of, request, previous)
    return selection, state, state.chosen_cover.radius(), state.random_cover.radius()


def selected_anew(samples: Samples, selection: Selection) -> SelectionState:
    """The state of a selection made from scratch, with a seeded random baseline of the same size."""
    random = random_rows(samples.pool, len(selection.rows))
    return SelectionState(
        samples.names,
        samples.digests,
        selection.rows,
        cover(samples.points, selection.rows),
        random,
        cover(samples.points, random),
    )


def diverse(
    samples: Samples, labels: np.ndarray, group_of: np.ndarray, request: Request, previous: SelectionState | None
) -> tuple[Selection, SelectionState]:
    """The diverse selection, kept from `previous` and grown when it can be, else selected anew; and its state."""
    if 0 < len(samples.pool) <= samples.n:
        return _everything(samples, group_of, request, previous)
    if previous is not None:
        now = _now(samples, previous)
        kept, chosen_cover = _carry(samples, now, previous.chosen, previous.chosen_cover)
        if 0 < len(kept) <= samples.n:
            nearest = chosen_cover.nearest[samples.pool]
            nearest[np.isin(samples.pool, kept)] = np.inf
            spread = _farthest(samples, nearest, samples.n - len(kept))
            added = spread.picks
            chosen_cover.follow(samples.pool, spread)
            chosen_cover.add(samples.points, added, _outside(samples))
            rows = np.sort(np.concatenate([kept, added]))
            notes = left_out(group_of, request.excluded, request.why, samples.pool)
            notes.append(f"kept {len(kept)} selected by the last run")
            selection = Selection(rows, "diverse", samples.n, len(samples.pool), tuple(notes), kept=len(kept))
            random, random_cover = _grow_random(samples, now, previous, len(rows))
            state = SelectionState(samples.names, samples.digests, rows, chosen_cover, random, random_cover)
            return selection, state
    return _anew(samples, labels, group_of, request)


def _farthest(samples: Samples, nearest: np.ndarray, count: int) -> Spread:
    """Farthest-point sampling of the pool: on the hashes when the vectors are made from them (the same picks,
    ~8x faster at a million: bench_selection --kinds hashes), else on the unit vectors."""
    if samples.codes is not None and exact_on_hashes(nearest):
        return farthest_hashes(samples.codes, samples.pool, nearest, count)
    return farthest_points(samples.unit, samples.pool, nearest, count)


def _anew(
    samples: Samples, labels: np.ndarray, group_of: np.ndarray, request: Request
) -> tuple[Selection, SelectionState]:
    """A diverse selection from scratch; its cover on the candidates is what the sampling left, not measured again."""
    if not 0 < samples.n < len(samples.pool):
        selection = select(samples.matrix, labels, group_of, samples.n, "diverse", request.excluded, request.why)
        return selection, selected_anew(samples, selection)
    start = np.full(len(samples.pool), -np.inf, dtype=np.float32)
    spread = _farthest(samples, start, samples.n)
    chosen_cover = Cover.empty(len(samples.unit))
    chosen_cover.follow(samples.pool, spread)
    chosen_cover.add(samples.points, spread.picks, _outside(samples))
    notes = left_out(group_of, request.excluded, request.why, samples.pool)
    selection = Selection(np.sort(spread.picks), "diverse", samples.n, len(samples.pool), tuple(notes))
    random = random_rows(samples.pool, len(selection.rows))
    state = SelectionState(
        samples.names, samples.digests, selection.rows, chosen_cover, random, cover(samples.points, random)
    )
    return selection, state


def _outside(samples: Samples) -> np.ndarray:
    """The rows that are not candidates (duplicates past the first, samples with excluding issues)."""
    outside = np.ones(len(samples.unit), dtype=bool)
    outside[samples.pool] = False
    return np.flatnonzero(outside)  # as setdiff1d with every row, without sorting a million rows twice


def _now(samples: Samples, previous: SelectionState) -> np.ndarray:
    """For each of the last run's rows, its row now: -1 when it left or its vector changed."""
    at = pd.Index(previous.names).get_indexer(samples.names)
    same = np.flatnonzero(at >= 0)
    same = same[previous.digests[at[same]] == samples.digests[same]]
    now = np.full(len(previous.names), -1, dtype=np.int64)
    now[at[same]] = same
    return now


def _carry(samples: Samples, now: np.ndarray, picks: np.ndarray, old: Cover) -> tuple[np.ndarray, Cover]:
    """The last run's picks that are still candidates, and the cover carried over: samples whose nearest pick
    stayed keep it, the others (new, changed, or their pick gone) are measured against the picks kept."""
    kept = _still_candidates(samples, now, picks)
    carried = _carried(samples, now, old, kept)
    carried.measure(samples.points, kept, np.flatnonzero(carried.owner < 0))
    return kept, carried


def _still_candidates(samples: Samples, now: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The last run's `picks` (its rows) that are still candidates, as rows now, ascending."""
    rows = now[picks]
    rows = rows[rows >= 0]
    in_pool = np.zeros(len(samples.unit), dtype=bool)
    in_pool[samples.pool] = True
    return np.sort(rows[in_pool[rows]])


def _carried(samples: Samples, now: np.ndarray, old: Cover, kept: np.ndarray) -> Cover:
    """The old cover of the samples whose nearest pick is among `kept`; the others are left uncovered."""
    is_kept = np.zeros(len(samples.unit), dtype=bool)
    is_kept[kept] = True
    before = np.flatnonzero(now >= 0)
    owner = np.where(old.owner[before] >= 0, now[np.maximum(old.owner[before], 0)], -1)
    valid = owner >= 0
    valid[valid] = is_kept[owner[valid]]
    carried = Cover.empty(len(samples.unit))
    carried.nearest[now[before[valid]]] = old.nearest[before[valid]]
    carried.owner[now[before[valid]]] = owner[valid]
    return carried


def _everything(
    samples: Samples, group_of: np.ndarray, request: Request, previous: SelectionState | None
) -> tuple[Selection, SelectionState]:
    """Every candidate selected: each is its own nearest pick, so only the other samples (duplicates past the
    first, excluded ones) are measured, and only those whose nearest pick is not carried from `previous`, against
    every pick; carried ones only against the picks new since. The random baseline is the same set, so one cover
    serves both. At a million samples with 900,000 duplicates this is one cover of the duplicates instead of two of
    everything (~450 s here), and a re-run measures only what changed."""
    pool, outside = samples.pool, _outside(samples)
    kept = np.zeros(0, dtype=np.int64)
    chosen_cover = Cover.empty(len(samples.unit))
    if previous is not None:
        now = _now(samples, previous)
        kept = _still_candidates(samples, now, previous.chosen)
        chosen_cover = _carried(samples, now, previous.chosen_cover, kept)
    carried = outside[chosen_cover.owner[outside] >= 0]
    chosen_cover.measure(samples.points, pool, outside[chosen_cover.owner[outside] < 0])
    chosen_cover.add(samples.points, np.setdiff1d(pool, kept), carried)
    chosen_cover.nearest[pool] = np.einsum("ij,ij->i", samples.unit[pool], samples.unit[pool])
    chosen_cover.owner[pool] = pool
    notes = left_out(group_of, request.excluded, request.why, pool)
    if samples.n > len(pool):
        notes.append(f"n_samples {samples.n} is above the {len(pool)} candidates: all of them are selected")
    selection = Selection(pool, "diverse", samples.n, len(pool), tuple(notes), kept=len(kept))
    random_cover = Cover(chosen_cover.nearest.copy(), chosen_cover.owner.copy())
    return selection, SelectionState(samples.names, samples.digests, pool, chosen_cover, pool.copy(), random_cover)


def _grow_random(samples: Samples, now: np.ndarray, previous: SelectionState, size: int) -> tuple[np.ndarray, Cover]:
    """The random baseline kept the same way: its rows still candidates, plus seeded random ones up to `size`."""
    kept, random_cover = _carry(samples, now, previous.random, previous.random_cover)
    if len(kept) > size:
        random = random_rows(samples.pool, size)
        return random, cover(samples.points, random)
    rest = samples.pool[~np.isin(samples.pool, kept)]
    extra = np.random.default_rng(len(samples.pool)).choice(rest, size=size - len(kept), replace=False)
    random_cover.add(samples.points, extra)
    return np.sort(np.concatenate([kept, extra])), random_cover
