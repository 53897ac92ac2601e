"""Perceptual hashes: copies that a person calls "the same picture" (resized, re-compressed, slightly cropped or
brightened), found with no model at all.

The hash is the classic DCT hash: the picture in greyscale at 32x32, its 2-D DCT, and one bit per coefficient of
the 8x8 lowest frequencies (DC left out) saying whether it is above their median. Low frequencies survive
resizing and JPEG re-compression; the median makes the bits independent of brightness and contrast. Two hashes
are compared by their Hamming distance; distinct real photos sit near 32 of 64 bits apart, copies within a few.

The pairs within a distance are searched in pair_search.py; the nearest hash of each query (`nearest_hashes`) in
tables of distances that stay in the CPU's cache, from faiss' fused XOR and popcount (`hamming_table`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from lightly_assets.curation.errors import CurationError
from lightly_assets.workers import usable_cores

HASH_SIZE = 8  # 8x8 low frequencies: 64 bits
BITS = HASH_SIZE * HASH_SIZE
SMALL = 32  # the greyscale picture the DCT is taken of
NEAREST_BLOCK = 2**19  # distances a table of `nearest_hashes` holds: 2 MB of int32 stay in cache
NEAREST_TARGETS = 2048  # targets a table of `nearest_hashes` holds (8,192 and 1,024 were slower)
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


def check_max_distance(value: int) -> int:
    """A Hamming distance in [0, BITS), else a one-line configuration error."""
    if not (0 <= int(value) < BITS):
        raise CurationError(f"duplicates config: max_hash_distance must be in [0, {BITS - 1}], got {value}")
    return int(value)
