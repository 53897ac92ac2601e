"""Farthest-point sampling: each pick is the candidate least similar to its nearest pick so far.

Plain, every pick costs one product over all candidates: at 1,000,000 candidates and a tenth picked that is
100,000 passes over the matrix. After the first `seeds` picks the candidates are grouped by their nearest seed
pick, and a pick updates only the groups it can reach: by the triangle inequality, a group whose seed lies farther
from the pick than the group's radius plus its worst-covered member's distance holds no member the pick is nearer
to. Late picks are close to few groups, so most of the matrix is left alone. The picks are the plain algorithm's
(up to float rounding, as the engine's are); the groups change nothing but which products are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUPED_FROM = 20_000  # fewer candidates: plain sampling (a pass over them costs less than grouping them)
GROUPED_FROM_CALLS = 200  # nor below 200 calls' worth of rows: 100,000 x 32 ran 0.8-1.0x plain's speed grouped
MARGIN = 1e-3  # distance slack in the reach test, far above float32 rounding of the products of unit vectors
SEEDS_MIN, SEEDS_MAX = 64, 4_096
CHECK_EVERY, GIVE_UP = 256, 0.8  # back to plain when a pick costs over 80% of a plain one on average
CALL_NS, ROW_NS, ROW_NS_PER_DIM = 5_000.0, 1.5, 0.12  # one numpy call; one row of a product (x86, AVX-512)
CALLS_PER_PICK, CALLS_PER_RUN = 15, 6  # numpy calls a grouped pick makes, and each run of groups it measures


@dataclass
class Spread:
    """Picks and the cover they leave on the pool: what a kept selection needs, with no second pass."""

    picks: np.ndarray  # rows of `unit`, in the order picked
    nearest: np.ndarray  # per pool row: similarity to its nearest pick, earlier ones included (+inf: an earlier pick)
    owner: np.ndarray  # per pool row: the row of its nearest pick, -1 where that is an earlier one


def farthest_points(unit: np.ndarray, pool: np.ndarray, nearest: np.ndarray, count: int) -> Spread:
    """`count` picks from `pool` (rows of `unit`), farthest-point sampling. `nearest` holds, per pool row, the
    similarity to its nearest earlier pick (-inf: none, so a fresh start picks the first row; +inf: picked
    already, never again)."""
    pool = np.asarray(pool, dtype=np.int64)
    sampler = _Plain(np.ascontiguousarray(unit[pool]), np.array(nearest, dtype=np.float32))
    total = min(count, int((sampler.near < np.inf).sum()))
    seeds = seed_count(len(pool))
    if len(pool) < max(GROUPED_FROM, GROUPED_FROM_CALLS * call_rows(unit.shape[1])) or total <= seeds:
        return sampler.spread(pool, [sampler.take(total)])
    picked = [sampler.take(seeds, track=True)]
    grouped, left = _Grouped.from_seeds(sampler, picked[0]), total - seeds
    while left:
        step = min(left, CHECK_EVERY)
        cost = grouped.cost
        picked.append(grouped.take(step))
        left -= step
        if grouped.cost - cost > GIVE_UP * step * len(pool):  # the groups do not prune these vectors
            break
    sampler.near[grouped.position], sampler.owner[grouped.position] = grouped.near, grouped.owner
    picked.append(sampler.take(left))
    return sampler.spread(pool, picked)


def seed_count(size: int) -> int:
    """Groups for `size` candidates: about the square root, so a group and the seeds' products cost alike."""
    return int(np.clip(np.sqrt(size), SEEDS_MIN, SEEDS_MAX))


def call_rows(dim: int) -> int:
    """Rows of a product (of `dim` columns) that cost as much as one numpy call: 940 at 32-d, 55 at 768-d."""
    return int(CALL_NS / (ROW_NS + ROW_NS_PER_DIM * dim))


def _distance(similarity: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their cosine similarity (-inf: infinitely far)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * similarity.astype(np.float64), 0.0))


class _Plain:
    """Farthest-point sampling with one product over all candidates per pick."""

    def __init__(self, sub: np.ndarray, near: np.ndarray) -> None:
        self.sub, self.near = sub, near
        self.similarity = np.empty(len(sub), dtype=np.float32)
        self.closer = np.empty(len(sub), dtype=bool)
        self.owner = np.full(len(sub), -1, dtype=np.int64)  # position of the nearest pick made here
        self.home = np.full(len(sub), -1, dtype=np.int64)  # with track: the nearest of the picks made here
        self.home_near = np.full(len(sub), -np.inf, dtype=np.float32)

    def take(self, count: int, track: bool = False) -> np.ndarray:
        picked = np.empty(count, dtype=np.int64)
        for k in range(count):
            at = int(np.argmin(self.near))
            picked[k] = at
            np.matmul(self.sub, self.sub[at], out=self.similarity)
            np.greater(self.similarity, self.near, out=self.closer)
            np.copyto(self.near, self.similarity, where=self.closer)
            np.copyto(self.owner, at, where=self.closer)
            self.near[at] = np.inf
            if track:
                closer = self.similarity > self.home_near
                self.home[closer] = k
                self.home_near[closer] = self.similarity[closer]
        return picked

    def spread(self, pool: np.ndarray, picked: list[np.ndarray]) -> Spread:
        """The picks, and the pool's cover with each pick nearest to itself."""
        at = np.concatenate(picked)
        self.near[at] = np.einsum("ij,ij->i", self.sub[at], self.sub[at])
        self.owner[at] = at
        return Spread(pool[at], self.near, np.where(self.owner >= 0, pool[np.maximum(self.owner, 0)], -1))


@dataclass
class _Grouped:
    """The candidates in groups, each a slice of rows sorted by position: its seed, radius and worst member.
    Groups whose seeds are near each other lie next to each other, so a pick's groups are few slices."""

    sub: np.ndarray  # candidates' rows, grouped
    near: np.ndarray  # their similarity to the nearest pick, grouped (+inf: picked)
    position: np.ndarray  # each grouped row's position among the candidates
    starts: np.ndarray  # (G + 1,) the groups' slices, none empty
    seeds: np.ndarray  # (G, d) the seeds' rows
    radius: np.ndarray  # (G,) distance from a seed to its farthest member
    worst: np.ndarray  # (G,) the lowest similarity to a pick among a group's members not picked (+inf: none)
    owner: np.ndarray  # position of each grouped row's nearest pick made here (-1: none)
    call_rows: int = 1_000  # rows of a product that cost as much as one numpy call
    cost: int = 0  # so far, in rows of a product (a plain pick costs one per candidate)

    @classmethod
    def from_seeds(cls, plain: _Plain, seeds: np.ndarray) -> _Grouped:
        sizes = np.bincount(plain.home, minlength=len(seeds))
        rank = np.full(len(seeds), -1, dtype=np.int64)
        kept = _neighbourly(plain.sub[seeds])
        kept = kept[sizes[kept] > 0]  # a seed that repeats an earlier one has no member
        rank[kept] = np.arange(len(kept))
        position = np.argsort(rank[plain.home], kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes[kept])])
        near = plain.near[position]
        far = np.minimum.reduceat(plain.home_near[position], starts[:-1])
        return cls(
            np.ascontiguousarray(plain.sub[position]),
            near,
            position,
            starts,
            np.ascontiguousarray(plain.sub[seeds[kept]]),
            _distance(far),
            np.minimum.reduceat(near, starts[:-1]),
            plain.owner[position],
            call_rows(plain.sub.shape[1]),
        )

    def take(self, count: int) -> np.ndarray:
        picked = np.empty(count, dtype=np.int64)
        for k in range(count):
            at = self._next()
            picked[k] = self.position[at]
            point = self.sub[at].copy()
            reach = np.where(self.worst < np.inf, _distance(self.worst), -np.inf)
            touched = np.flatnonzero(_distance(self.seeds @ point) - self.radius < reach + MARGIN)
            self.near[at] = np.inf
            self.cost += len(self.seeds) + CALLS_PER_PICK * self.call_rows
            for first, last in _runs(self.starts, touched, self.call_rows):
                self._update(first, last, point, picked[k])
            g = int(np.searchsorted(self.starts, at, side="right")) - 1
            self.worst[g] = self.near[self.starts[g] : self.starts[g + 1]].min()
        return picked

    def _update(self, first: int, last: int, point: np.ndarray, position: int) -> None:
        """Groups `first` to `last` (a slice of rows) measured against the pick at `position`."""
        s, e = self.starts[first], self.starts[last + 1]
        self.cost += int(e - s) + CALLS_PER_RUN * self.call_rows
        near, similarity = self.near[s:e], self.sub[s:e] @ point
        closer = similarity > near
        np.copyto(near, similarity, where=closer)
        np.copyto(self.owner[s:e], position, where=closer)
        self.worst[first : last + 1] = np.minimum.reduceat(near, self.starts[first : last + 1] - s)

    def _next(self) -> int:
        """The grouped row covered worst; on a tie the one first among the candidates, as a plain argmin."""
        lowest = self.worst.min()
        best = -1
        for g in np.flatnonzero(self.worst == lowest):
            s = self.starts[g]
            at = s + int(np.argmin(self.near[s : self.starts[g + 1]]))
            if best < 0 or self.position[at] < self.position[best]:
                best = at
        return best


def _neighbourly(seeds: np.ndarray) -> np.ndarray:
    """The seeds in an order that keeps near ones together: by their nearest of the first few seeds (which are
    themselves spread by farthest-point sampling), then by their own order."""
    head = seeds[: max(1, int(np.sqrt(len(seeds))))]
    return np.lexsort((np.arange(len(seeds)), np.argmax(seeds @ head.T, axis=1)))


def _runs(starts: np.ndarray, groups: np.ndarray, call_rows: int) -> list[tuple[int, int]]:
    """The touched groups as runs of adjacent groups, a run also spanning a gap that costs less than its calls: a
    product over rows no pick is nearer to changes nothing, and a call costs as much as hundreds of rows."""
    if not len(groups):
        return []
    gap = starts[groups[1:]] - starts[groups[:-1] + 1]
    cut = np.flatnonzero(gap >= CALLS_PER_RUN * call_rows) + 1
    firsts, lasts = groups[np.concatenate([[0], cut])], groups[np.concatenate([cut - 1, [-1]])]
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))
