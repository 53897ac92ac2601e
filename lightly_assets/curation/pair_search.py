"""The visual pairs: every two perceptual hashes within a Hamming distance, found exactly, and their order.

A pair within `r` bits agrees exactly on at least one of any `r + 1` disjoint parts of the 64 bits (pigeonhole:
`r` differing bits cannot touch `r + 1` parts). So the hashes are sorted into buckets by each part's bits, and
only hashes that share a bucket are compared; a pair is kept by the first part it agrees on, so it is found
once. At the default 10 bits that is 11 parts of 5-6 bits, and about a fifth of the distances of comparing every
pair (0.22 of them on the million hashes of bench_scale, whose 23 M pairs sit in clusters: 93 -> 27 s on 2 cores;
a million random hashes 51 -> 14 s). A search that buckets would not make cheaper (few hashes, a large distance,
or hashes too alike) compares every pair instead.

The distances come in tables from faiss' fused XOR and popcount (`phash.hamming_table`): faiss' own range
search passes each distance through a list per query, and took about twice as long. Each pair is compared once: a
block of rows is searched against the rows from it on. A multi-index search that probes every key within 2 bits of
four 16-bit parts (faiss' `IndexBinaryMultiHash`) was 5-6x slower than comparing every pair; exact keys need no
probes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lightly_assets.curation.phash import BITS, hamming_table
from lightly_assets.workers import usable_cores

# A table's asked rows and distances (4 MB of int32). Larger tables beat tables that fit a core's cache, as each
# costs some Python: 300,000 of bench_scale's hashes in buckets took 3.7 s with 512 rows and 2 MB, 2.7-2.9 s so,
# 3.1 s with 8 MB; every pair of 100,000 as before (0.52-0.81 s)
PAIR_QUERIES, PAIR_TABLE = 1024, 2**20
BUCKETS_FROM = 2**30  # distances of comparing every pair from which buckets are tried (below: ~0.2 s)
BUCKET_SHARE = 0.5  # buckets are used when they compare at most this share of every pair's distances
BUCKET_ROWS = 512  # the bucket size parts aim at: smaller buckets cost more Python than distances


def hash_pairs(
    hashes: np.ndarray,
    max_distance: int,
    valid: np.ndarray | None = None,
    same: Sequence | None = None,
    queries: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(pairs i < j, Hamming distances) of the rows within `max_distance` of each other, in `pair_order`.

    `valid` masks rows without a hash (undecodable samples); rows with equal non-empty `same` keys (the frames of
    one video) are never paired: neighbouring frames look alike by nature. With `queries`, only the pairs that
    hold at least one of those rows (the new samples of an incremental run) are searched.
    """
    hashes = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint8).reshape(-1, BITS // 8))
    usable = np.ones(len(hashes), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    rows = np.flatnonzero(usable)
    asked = rows if queries is None else np.unique(np.asarray(queries, dtype=np.int64))
    asked = asked[usable[asked]]  # (not intersect1d: that sorts all the rows again, ~0.7 s at a million)
    if len(rows) < 2 or len(asked) == 0 or max_distance < 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    is_query = np.zeros(len(hashes), dtype=bool)
    is_query[asked] = True
    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        found = [
            f
            for tasks in _batches(hashes, rows, is_query, max_distance)
            for f in pool.map(lambda task: task[0].block(task[1]), tasks)
        ]
    pairs = np.concatenate([f[0] for f in found])
    distances = np.concatenate([f[1] for f in found])
    if same is not None and len(pairs):
        keys = np.asarray([str(s) if s else "" for s in same], dtype=object)
        a, b = keys[pairs[:, 0]], keys[pairs[:, 1]]
        keep = (a != b) | (a == "")
        pairs, distances = pairs[keep], distances[keep]
    order = pair_order(pairs)
    return pairs[order].reshape(-1, 2).astype(np.int64), distances[order].astype(np.int64)


def _narrow(*rows: np.ndarray) -> type[np.signedinteger]:
    """int32 for row numbers below 2**31, else int64."""
    return np.int32 if max((int(r.max(initial=0)) for r in rows), default=0) < 2**31 else np.int64


def _batches(hashes: np.ndarray, rows: np.ndarray, is_query: np.ndarray, most: int) -> Iterator[list]:
    """The search's blocks: a part's at a time (its buckets' hashes copied when its turn comes), or every pair's."""
    buckets = _bucket_plan(hashes, rows, is_query, most)
    if buckets is None:
        yield _blocks(hashes, rows, is_query, most)  # every asked row with every usable row
        return
    for part, groups in enumerate(buckets):
        yield _part_tasks(hashes, rows, is_query, most, len(buckets), part, groups)


def _blocks(
    hashes: np.ndarray, members: np.ndarray, is_query: np.ndarray, most: int, first: _FirstAgreement | None = None
) -> list[tuple[_PairSearch, int]]:
    """The blocks of comparing the asked rows among `members` with all of them (rows not asked: every block of
    asked rows searches them)."""
    asked, rest = members[is_query[members]], members[~is_query[members]]
    search = _PairSearch(hashes[asked], asked, hashes[rest], rest, most, first)
    return [(search, start) for start in range(0, len(asked), search.height)]


def words(hashes: np.ndarray) -> np.ndarray:
    """Each (8,) uint8 hash as one 64-bit word (its bytes little-endian): parts are bit positions of that word."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view("<u8").reshape(-1)


def part_keys(word: np.ndarray, parts: int, part: int) -> np.ndarray:
    """One part's bits of each hash's word: bit `part + k * parts` as bit k (strided, so that a part mixes bits
    of every byte: neighbouring DCT coefficients are alike more often)."""
    key = np.zeros(len(word), dtype=np.uint64)
    for k, position in enumerate(range(part, BITS, parts)):
        key |= ((word >> np.uint64(position)) & np.uint64(1)) << np.uint64(k)
    return key


def parts_for(max_distance: int, rows: int) -> int:
    """Parts enough for the pigeonhole (`max_distance + 1`), and more when a part's buckets would be far larger
    than BUCKET_ROWS (a small distance on many hashes: fewer distances, and buckets still large)."""
    bits = max(1, int(math.log2(max(2, rows / BUCKET_ROWS))))
    return max(max_distance + 1, math.ceil(BITS / bits))


def _bucket_plan(
    hashes: np.ndarray, rows: np.ndarray, is_query: np.ndarray, most: int
) -> list[list[np.ndarray]] | None:
    """Per part, the positions in `rows` of each of its buckets that holds an asked row and another row; None when
    buckets are not worth it (every pair is few distances, more than 64 parts, or buckets save too little)."""
    every = int(is_query[rows].sum()) * len(rows)
    parts = parts_for(most, len(rows))
    if every < BUCKETS_FROM or parts > BITS:
        return None
    word = words(hashes)
    buckets = [_buckets(part_keys(word[rows], parts, part), is_query[rows]) for part in range(parts)]
    if sum(cost for _, cost in buckets) > BUCKET_SHARE * every:
        return None
    return [groups for groups, _ in buckets]


def _part_tasks(
    hashes: np.ndarray, rows: np.ndarray, is_query: np.ndarray, most: int, parts: int, part: int, groups: list
) -> list[tuple[_PairSearch, int]]:
    """The blocks of comparing, in each bucket of one part, its asked rows with its other rows."""
    first = _FirstAgreement(parts, part) if part else None
    return [task for positions in groups for task in _blocks(hashes, rows[positions], is_query, most, first)]


def _buckets(key: np.ndarray, asked: np.ndarray) -> tuple[list[np.ndarray], int]:
    """The positions (in order) of each bucket of one part that holds an asked row and another row, and the
    distances searching them costs."""
    order = np.argsort(key, kind="stable").astype(np.int32 if len(key) < 2**31 else np.int64)  # held for a part
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(key)]])
    asked_count = np.add.reduceat(asked[order].astype(np.int64), starts)
    useful = (asked_count > 0) & (ends - starts > 1)
    cost = int((asked_count[useful] * (ends - starts)[useful]).sum())
    return [order[s:e] for s, e in zip(starts[useful], ends[useful], strict=True)], cost


class _FirstAgreement:
    """Keeps a pair found in a part's bucket only when none of the earlier parts' bits agree, so that each pair is
    found once over all parts: by the first part it agrees on."""

    def __init__(self, parts: int, part: int) -> None:
        self.parts = parts
        self.earlier = np.uint64((1 << part) - 1)  # the fold's bits of the parts before

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per pair of words, whether this part is the first the two agree on."""
        differ = a ^ b
        fold = differ.copy()  # bit q (q < parts): whether part q has a differing bit
        for shift in range(self.parts, BITS, self.parts):
            fold |= differ >> np.uint64(shift)
        return (fold & self.earlier) == self.earlier


class _PairSearch:
    """`hash_pairs`' search among some rows (all of them, or one bucket's), a block of asked rows at a time (one
    block per thread): the block's distances to the asked rows from it on (a pair of two asked rows is found by its
    first row's block only) and to the rest, in tables of `hamming_table`. Against faiss' range search over every
    pair: 200,000 hashes, 2 cores, whole processes, distinct ones 5.91 -> 3.80 s, the clustered ones of
    bench_scale's million 5.62 -> 4.00 s."""

    def __init__(
        self,
        asked: np.ndarray,
        asked_rows: np.ndarray,
        rest: np.ndarray,
        rest_rows: np.ndarray,
        most: int,
        first_agreement: _FirstAgreement | None = None,  # in a part's bucket: keep the pairs this part finds first
    ) -> None:
        # the pairs found are held in 4 bytes a row (and 1 a distance) till the end
        rows = _narrow(asked_rows, rest_rows)
        self.asked, self.rest, self.most = asked, rest, most
        self.asked_rows, self.rest_rows = asked_rows.astype(rows), rest_rows.astype(rows)
        self.first_agreement = first_agreement
        self.height = min(PAIR_QUERIES, len(asked))
        self.width = max(1, PAIR_TABLE // self.height)

    def block(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (rows, sorted within each pair) and distances found by the asked rows from `start` on, in one
        array each: an array per table would hold ~300 B each of a million tables at a million hashes. Asked rows
        come in row order, so a pair of them is found by the earlier one's block only, never a row with itself."""
        queries = self.asked[start : start + self.height]
        query_words = words(queries) if self.first_agreement is not None else None
        width = min(self.width, max(len(self.asked), len(self.rest)))
        table = np.empty(len(queries) * width, dtype=np.int32)
        found = [(np.zeros((0, 2), dtype=self.asked_rows.dtype), np.zeros(0, dtype=np.uint8))]
        for targets, target_rows, asked in ((self.asked, self.asked_rows, True), (self.rest, self.rest_rows, False)):
            for at in range(start if asked else 0, len(targets), width):
                part = targets[at : at + width]
                values = hamming_table(queries, part, table[: len(queries) * len(part)].reshape(len(queries), -1))
                hit = np.flatnonzero(values.reshape(-1) <= self.most)  # (2-D `nonzero` takes 10x as long)
                query, target = np.divmod(hit, len(part))
                keep = query + start < target + at if asked else None
                # in a bucket, most hits were found by an earlier part
                if self.first_agreement is not None and query_words is not None and len(query):
                    first = self.first_agreement(query_words[query], words(part)[target])
                    keep = first if keep is None else keep & first
                if keep is not None:
                    hit, query, target = hit[keep], query[keep], target[keep]
                if len(hit):
                    distance = values.reshape(-1)[hit].astype(np.uint8)
                    query, target = self.asked_rows[query + start], target_rows[target + at]
                    pair = np.stack(
                        [query, target] if asked else [np.minimum(query, target), np.maximum(query, target)], axis=1
                    )
                    found.append((pair, distance))
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def pair_order(pairs: np.ndarray) -> np.ndarray:
    """The order that sorts (i, j) rows by i, then j: one stable sort of i * n + j. At a million samples (23 M
    pairs) 2.8 s instead of lexsort's 11 s, and fast on the mostly sorted pairs an incremental run carries."""
    pairs = np.asarray(pairs).reshape(-1, 2)  # int32 row numbers stay so: the keys are made in 64 bits
    if not len(pairs):
        return np.zeros(0, dtype=np.int64)
    n = int(pairs.max()) + 1  # below 3e9 samples, i * n + j fits in 64 bits
    return np.argsort(_pair_keys(pairs, n), kind="stable")


def _pair_keys(pairs: np.ndarray, n: int) -> np.ndarray:
    """i * n + j per (i, j) row, in one int64 array (no temporaries: 23 M pairs are 180 MB an array)."""
    keys = pairs[:, 0].astype(np.int64)
    keys *= n
    keys += pairs[:, 1]
    return keys


def merge_in_order(
    kept: np.ndarray, kept_values: np.ndarray, found: np.ndarray, found_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs `kept` (already in `pair_order`) and `found` (any order) in `pair_order`, with their values: the
    same rows as sorting them together, but only the few found pairs are sorted (kept ones first on a tie)."""
    if not len(found):
        return kept, kept_values
    order = pair_order(found)
    found, found_values = np.asarray(found, dtype=np.int64)[order], np.asarray(found_values)[order]
    n = int(max(kept.max(initial=0), found.max(initial=0))) + 1
    keys = _pair_keys(kept, n)  # 64 bits: `kept` may be row numbers in 32 (rows_dtype)
    at = np.searchsorted(keys, _pair_keys(found, n), side="right")
    del keys
    return np.insert(kept, at, found, axis=0), np.insert(kept_values, at, found_values)
