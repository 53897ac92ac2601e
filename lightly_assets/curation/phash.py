"""Perceptual hashes: copies that a person calls "the same picture" (resized, re-compressed, slightly cropped or
brightened), found with no model at all.

The hash is the classic DCT hash: the picture in greyscale at 32x32, its 2-D DCT, and one bit per coefficient of
the 8x8 lowest frequencies (DC left out) saying whether it is above their median. Low frequencies survive
resizing and JPEG re-compression; the median makes the bits independent of brightness and contrast. Two hashes
are compared by their Hamming distance; distinct real photos sit near 32 of 64 bits apart, copies within a few.

Pairs are searched with faiss' binary index (`IndexBinaryFlat`, exact Hamming distances with popcounts): 100,000
hashes against each other is 10^10 distances of one 64-bit word, a few seconds on two cores (bench_data_issues).
Each pair is compared once: a chunk of rows is searched against the rows from it on, not against all of them, which
halves the search of a first run (a million hashes: ~5 * 10^11 distances, two minutes instead of four).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from lightly_assets.curation.errors import CurationError

HASH_SIZE = 8  # 8x8 low frequencies: 64 bits
BITS = HASH_SIZE * HASH_SIZE
SMALL = 32  # the greyscale picture the DCT is taken of
CHUNK = 8192  # query rows per faiss call: bounds the memory of the result lists
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
    empty = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    if len(rows) < 2 or len(asked) == 0 or max_distance < 0:
        return empty
    is_query = np.zeros(len(hashes), dtype=bool)
    is_query[asked] = True
    rest = rows[~is_query[rows]]  # rows not asked: every chunk searches them
    rest_index = binary_index(hashes[rest]) if len(rest) else None
    found_pairs, found_dist = [], []
    for start in range(0, len(asked), CHUNK):
        chunk = asked[start : start + CHUNK]
        later = asked[start:]  # (sorted) a pair of two asked rows is found by the chunk of its first row only
        for targets, index in ((later, binary_index(hashes[later])), (rest, rest_index)):
            if index is None:
                continue
            lims, dist, ids = index.range_search(hashes[chunk], max_distance + 1)  # faiss keeps distances < radius
            q = np.repeat(chunk, np.diff(lims.astype(np.int64)))
            other = targets[ids.astype(np.int64)]
            keep = (other != q) & (~is_query[other] | (other > q))  # each pair once, never a row with itself
            found_pairs.append(np.sort(np.stack([q[keep], other[keep]], axis=1), axis=1))
            found_dist.append(dist[keep])
    pairs = np.concatenate(found_pairs).astype(np.int64)
    distances = np.concatenate(found_dist).astype(np.int64)
    if same is not None and len(pairs):
        keys = np.asarray([str(s) if s else "" for s in same], dtype=object)
        a, b = keys[pairs[:, 0]], keys[pairs[:, 1]]
        keep = (a != b) | (a == "")
        pairs, distances = pairs[keep], distances[keep]
    order = pair_order(pairs)
    return pairs[order].reshape(-1, 2), distances[order]


def binary_index(hashes: np.ndarray):
    """An exact Hamming index (faiss `IndexBinaryFlat`) holding `hashes`."""
    # faiss only when searching: the definitions load and runs start without it
    import faiss

    index = faiss.IndexBinaryFlat(BITS)
    index.add(np.ascontiguousarray(hashes))
    return index


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
