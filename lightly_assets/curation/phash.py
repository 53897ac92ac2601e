"""Perceptual hashes: copies that a person calls "the same picture" (resized, re-compressed, slightly cropped or
brightened), found with no model at all.

The hash is the classic DCT hash: the picture in greyscale at 32x32, its 2-D DCT, and one bit per coefficient of
the 8x8 lowest frequencies (DC left out) saying whether it is above their median. Low frequencies survive
resizing and JPEG re-compression; the median makes the bits independent of brightness and contrast. Two hashes
are compared by their Hamming distance; distinct real photos sit near 32 of 64 bits apart, copies within a few.

Pairs are searched by brute force, every pair's exact distance: 100,000 hashes against each other is 10^10
distances of one 64-bit word, a second or two on two cores. The distances come in tables that stay in the CPU's
cache from faiss' fused XOR and popcount (`hamming_table`): faiss' own range and k-NN searches pass each distance
through a list or a heap per query, and took about twice as long (see `_PairSearch`, `nearest_hashes`). Each pair
is compared once: a block of rows is searched against the rows from it on, which halves the search of a first run
(a million hashes: ~5 * 10^11 distances). A multi-index search (a pair within 10 bits agrees to 2 bits on one of
four 16-bit parts) was 5x slower than the brute force on 100,000 clustered hashes and 6x on distinct ones (faiss'
`IndexBinaryMultiHash`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from lightly_assets.curation.errors import CurationError
from lightly_assets.workers import usable_cores

HASH_SIZE = 8  # 8x8 low frequencies: 64 bits
BITS = HASH_SIZE * HASH_SIZE
SMALL = 32  # the greyscale picture the DCT is taken of
NEAREST_BLOCK = 2**19  # distances a table of `nearest_hashes` or `hash_pairs` holds: 2 MB of int32 stay in cache
NEAREST_TARGETS = 2048  # targets a table of `nearest_hashes` holds (8,192 and 1,024 were slower)
PAIR_QUERIES = 512  # asked rows a table of `hash_pairs` holds (128 and 256 were slower)
DEFAULT_MAX_DISTANCE = 10  # of 64 bits; see bench_data_issues for copies vs distinct photos


def hash_grid(grey: Image.Image | np.ndarray) -> np.ndarray:
    """The SMALLxSMALL greyscale picture (uint8) that a hash is the DCT of, from a greyscale PIL image or 2-D array."""
    if isinstance(grey, np.ndarray):
        grey = Image.fromarray(np.asarray(grey, dtype=np.uint8))
    grey = grey if grey.mode == "L" else grey.convert("L")
    return np.asarray(grey.resize((SMALL, SMALL), Image.Resampling.BOX))


def dct_hashes(grids: np.ndarray) -> np.ndarray:
    """The (n, 8) hashes of n `hash_grid`s, in one call: per picture, the calls around its 32x32 DCT and median
    cost more than they do (64x48 JPEGs: 73 us a hash one by one, 10 us in a batch; the same bits)."""
    # scipy (~0.2 s) only when computing this: the definitions load and runs start without it
    from scipy.fft import dctn

    grids = np.asarray(grids, dtype=np.float64).reshape(-1, SMALL, SMALL)
    if not len(grids):
        return np.zeros((0, BITS // 8), dtype=np.uint8)
    low = np.asarray(dctn(grids, type=2, norm="ortho", axes=(1, 2)))[:, :HASH_SIZE, :HASH_SIZE].reshape(-1, BITS)
    above = low > np.median(low[:, 1:], axis=1, keepdims=True)
    above[:, 0] = False  # the DC term says how bright the picture is, not what it shows
    return np.packbits(above, axis=1)


def dct_hash(grey: Image.Image | np.ndarray) -> np.ndarray:
    """The 8 bytes (64 bits) of a picture's DCT hash, from a greyscale PIL image or a 2-D array."""
    return dct_hashes(hash_grid(grey))[0]


def agreement(distance: np.ndarray | int) -> np.ndarray | float:
    """The hashes' agreement, 1 - Hamming distance / bits: the `similarity` of a `visual` duplicate."""
    return 1.0 - np.asarray(distance, dtype=np.float64) / BITS


def bit_cosine(distance: np.ndarray) -> np.ndarray:
    """The cosine similarity of two hashes' bits as +-1 vectors (`selection.hash_features`) from their Hamming
    distance: exactly 1 - 2 * distance / 64, in float32 (multiples of 1/32 round nowhere)."""
    return ((BITS - 2 * np.asarray(distance, dtype=np.float32)) / BITS).astype(np.float32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between rows of two (n, 8) uint8 arrays (broadcast)."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=-1).sum(axis=-1)


def hamming_table(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The Hamming distance of every row of `a` to every row of `b` ((n, 8) uint8 hashes) into `out`, (len(a),
    len(b)) int32. faiss fuses the XOR and the popcount: one hash against a million 151 us, where numpy's
    `bitwise_xor` and `bitwise_count` take 543 (AMD EPYC, one core)."""
    # faiss only when searching: the definitions load and runs start without it
    import faiss

    for rows in (a, b):
        if rows.dtype != np.uint8 or rows.shape[1:] != (BITS // 8,) or not rows.flags.c_contiguous:
            raise ValueError(f"hamming_table: hashes must be C-contiguous (n, {BITS // 8}) uint8, got {rows.shape}")
    if out.dtype != np.int32 or out.shape != (len(a), len(b)) or not out.flags.c_contiguous:
        raise ValueError(f"hamming_table: out must be a C-contiguous ({len(a)}, {len(b)}) int32 array")
    hammings = faiss.hammings  # pyright: ignore[reportAttributeAccessIssue]  # in faiss' SWIG module, not its stubs
    hammings(faiss.swig_ptr(a), faiss.swig_ptr(b), len(a), len(b), BITS // 8, faiss.swig_ptr(out))
    return out


def nearest_hashes(queries: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's Hamming distance to its nearest target (int32) and that target's row, the first on a tie, as
    faiss' `IndexBinaryFlat.search(queries, 1)` gives them. Here in blocks of `hamming_table` and `argmin` that stay
    in the CPU's cache, on every usable core: 100,000 hashes against 100,000 took 4.3 s with faiss' search (its
    heap per query), 0.9 s so (AMD EPYC, 2 cores)."""
    queries, targets = np.ascontiguousarray(queries, dtype=np.uint8), np.ascontiguousarray(targets, dtype=np.uint8)
    distance = np.full(len(queries), BITS + 1, dtype=np.int32)
    at = np.full(len(queries), -1, dtype=np.int64)
    if not len(targets):
        return distance, at
    width = min(len(targets), NEAREST_TARGETS)
    height = max(1, NEAREST_BLOCK // width)

    def search(start: int) -> None:
        block = slice(start, start + height)
        _nearest_in_block(queries[block], targets, width, distance[block], at[block])

    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        list(pool.map(search, range(0, len(queries), height)))
    return distance, at


def _nearest_in_block(
    queries: np.ndarray, targets: np.ndarray, width: int, distance: np.ndarray, at: np.ndarray
) -> None:
    """`nearest_hashes` of a block of queries, into `distance` and `at` (views of the whole result), `width`
    targets at a time; a later target replaces an earlier one only when strictly nearer."""
    table = np.empty(len(queries) * width, dtype=np.int32)
    rows = np.arange(len(queries))
    for start in range(0, len(targets), width):
        part = targets[start : start + width]
        found = hamming_table(queries, part, table[: len(queries) * len(part)].reshape(len(queries), len(part)))
        best = np.argmin(found, axis=1)  # the first of equally near targets
        value = found[rows, best]
        closer = value < distance
        distance[closer] = value[closer]
        at[closer] = best[closer] + start


def hash_pairs(
    hashes: np.ndarray,
    max_distance: int,
    valid: np.ndarray | None = None,
    same: Sequence | None = None,
    queries: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(pairs i < j, Hamming distances) of the rows within `max_distance` of each other.

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
    rest = rows[~is_query[rows]]  # rows not asked: every block of asked rows searches them
    search = _PairSearch(hashes[asked], asked, hashes[rest], rest, max_distance)
    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        found = list(pool.map(search.block, range(0, len(asked), search.height)))
    pairs = np.concatenate([f[0] for f in found])
    distances = np.concatenate([f[1] for f in found])
    if same is not None and len(pairs):
        keys = np.asarray([str(s) if s else "" for s in same], dtype=object)
        a, b = keys[pairs[:, 0]], keys[pairs[:, 1]]
        keep = (a != b) | (a == "")
        pairs, distances = pairs[keep], distances[keep]
    order = pair_order(pairs)
    return pairs[order].reshape(-1, 2), distances[order]


class _PairSearch:
    """`hash_pairs`' search, a block of asked rows at a time (one block per thread): the block's distances to the
    asked rows from it on (a pair of two asked rows is found by its first row's block only) and to the rest, in
    tables of `hamming_table` that stay in the CPU's cache. Every pair is compared, as with faiss' range search
    before, in less time (200,000 hashes, 2 cores, whole processes: distinct ones 5.91 -> 3.80 s, the clustered
    ones of bench_scale's million 5.62 -> 4.00 s)."""

    def __init__(self, asked: np.ndarray, asked_rows: np.ndarray, rest: np.ndarray, rest_rows: np.ndarray, most: int):
        self.asked, self.asked_rows, self.rest, self.rest_rows, self.most = asked, asked_rows, rest, rest_rows, most
        self.height = min(PAIR_QUERIES, len(asked))
        self.width = max(1, NEAREST_BLOCK // self.height)

    def block(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (rows, sorted within each pair) and distances found by the asked rows from `start` on, in one
        array each: an array per table would hold ~300 B each of a million tables at a million hashes."""
        queries = self.asked[start : start + self.height]
        table = np.empty(len(queries) * self.width, dtype=np.int32)
        found = [(np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))]
        for targets, target_rows, asked in ((self.asked, self.asked_rows, True), (self.rest, self.rest_rows, False)):
            for at in range(start if asked else 0, len(targets), self.width):
                part = targets[at : at + self.width]
                values = hamming_table(queries, part, table[: len(queries) * len(part)].reshape(len(queries), -1))
                hit = np.flatnonzero(values.reshape(-1) <= self.most)
                query, target = np.divmod(hit, len(part))
                query, target = self.asked_rows[query + start], target_rows[target + at]
                if asked:  # each pair of asked rows once, never a row with itself (the rest holds no asked row)
                    keep = query < target
                    hit, query, target = hit[keep], query[keep], target[keep]
                if len(hit):
                    pair = np.sort(np.stack([query, target], axis=1), axis=1)
                    found.append((pair, values.reshape(-1)[hit].astype(np.int64)))
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


def check_max_distance(value: int) -> int:
    """A Hamming distance in [0, BITS), else a one-line configuration error."""
    if not (0 <= int(value) < BITS):
        raise CurationError(f"duplicates config: max_hash_distance must be in [0, {BITS - 1}], got {value}")
    return int(value)
