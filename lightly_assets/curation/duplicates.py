"""Exact, near-duplicate and visual groups of samples, as connected components, computed incrementally.

- Exact: images with the same file content (sha256 of the bytes, read only where another image has the same byte
  size), video frames whose decoded pixels are identical. Frames are decoded once, by the embedding step, straight
  to the model's input; identical frames there give bit-identical vectors, so a frame's content key is the digest of
  its vector. That costs no second decode (the least invasive way: nothing in the decoder changes), at the price of
  calling two frames that differ only below the model's input resolution identical.
- Near: cosine similarity at or above the threshold, searched as each sample's k nearest neighbours (bounded
  memory even when everything is similar); exact search (faiss `IndexFlatIP`) up to `EXACT_LIMIT` samples, an
  inverted file (faiss `IndexIVFFlat`) above it.
- Visual: perceptual hashes within `max_hash_distance` bits (phash.py, pair_search.py), with no model at all: resized,
  re-compressed, slightly cropped or brightened copies. Frames of one video are never visual copies of each other.
  With random weights (or similarities that fail `thresholds.uniformity_warning`) near-duplicates are not searched
  at all, so exact and visual copies still give useful groups, never one group of everything.
- Ours, not LightlyStudio's `deduplicate`: that strategy is a diverse selection that stops once the next pick is
  closer than a distance, so it says which samples to keep but not which groups exist, nor which are exact copies.
- Incremental: the pairs found are kept in a state file (duplicates_state.py) keyed by the model's fingerprint
  and the vectors' digests, and by the perceptual hashes; the next run searches only for the neighbours of new or
  changed samples and keeps the old pairs (near pairs while the model is the same and the threshold is not lower
  than the one they were found at, visual ones while the distance is not larger than the one searched). When every
  kept pair carries over, the groups grow from the last run's components (components.py), not from all the pairs.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lightly_assets.atomic import atomic_output
from lightly_assets.columns import DUPLICATES_CSV
from lightly_assets.curation.components import carried_labels, components, members, star
from lightly_assets.curation.duplicates_state import State, Visual, carried, had_pairs, previous_rows, reused_near
from lightly_assets.curation.errors import CurationError
from lightly_assets.curation.pair_search import hash_pairs, merge_in_order, pair_order
from lightly_assets.curation.phash import BITS, agreement, hamming
from lightly_assets.dataset.contents import file_sha256s
from lightly_assets.dataset.keys import FILE_COLUMNS, key_table, matching_rows

EXACT_LIMIT = 20_000  # above it, an approximate index: 20k x 20k exact inner products take seconds at 768-d
NEIGHBOURS = 16  # per sample; components link larger groups through chains of neighbours
IVF_MAX_CELLS, IVF_TRAIN_PER_CELL, IVF_TRAIN_ITERATIONS, IVF_PROBES = 4096, 40, 10, 8
COLUMNS = list(DUPLICATES_CSV)  # filenames,group,kind,similarity


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), float32 and C-contiguous for faiss."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def vector_digests(unit: np.ndarray) -> list[str]:
    """One short digest per row: equal digests mean bit-identical vectors."""
    return [hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in unit]


@dataclass(frozen=True)
class UnitVectors:
    """Rows scaled to length 1 and their digests (equal digests: bit-identical rows), made once per run."""

    unit: np.ndarray
    digests: list[str]

    @classmethod
    def of(cls, matrix: np.ndarray) -> UnitVectors:
        unit = unit_rows(matrix)
        return cls(unit, vector_digests(unit))


def content_keys(
    samples: pd.DataFrame,
    data_dir: Path,
    digests: Sequence[str],
    known: pd.DataFrame | None = None,
    hashes: Hashes | None = None,
) -> tuple[list[str], pd.DataFrame]:
    """Per sample the key that exact copies share: `file:<sha256>` for images that another image could be a copy
    of, `only:<source>` for the others (they are not read), `frame:<vector digest>` for video frames. A copy has the
    byte size of its original and, given `hashes` (the samples' perceptual hashes), the same hash or none for both:
    a million small JPEGs of a few sizes are then not read whole (their sha256 took 23 s). `known` (source, size,
    mtime_ns, sha256: a table this returns) holds earlier hashes, so unchanged files are not re-read. Returns the
    keys and the hashed image files' hashes."""
    images = samples["kind"].to_numpy() == "image"
    files = key_table(samples.loc[images], FILE_COLUMNS)
    at = matching_rows(known, files, FILE_COLUMNS) if known is not None else np.full(len(files), -1)
    sha = np.full(len(files), "", dtype=object)
    if known is not None:
        sha[at >= 0] = known["sha256"].to_numpy(dtype=object)[at[at >= 0]]
    hashed, looks = np.zeros(len(files), dtype=bool), np.zeros(len(files), dtype=np.int64)
    if hashes is not None:  # a picture without a usable hash (broken, flat) is compared by its size alone
        hashed = hashes.valid[images]
        looks[hashed] = hashes.values[images][hashed].view(np.int64).ravel()
    shared = _shared(files, hashed, looks)
    wanted = np.flatnonzero(shared & (sha == ""))
    source_of = files["source"].to_numpy(dtype=object)
    sources = [str(source) for source in pd.unique(source_of[wanted])]
    by_source = dict(zip(sources, file_sha256s([os.path.join(data_dir, s) for s in sources]), strict=True))
    sha[wanted] = [by_source[source] for source in source_of[wanted]]
    keys = np.asarray(digests, dtype=object)
    keys = np.where(images, "", "frame:" + keys).astype(object)
    keys[images] = np.where(shared, "file:" + sha, "only:" + source_of)
    return keys.tolist(), files.assign(sha256=sha).loc[shared].reset_index(drop=True)


def _shared(files: pd.DataFrame, hashed: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Per row, whether another file (another source) has the same byte size and hash (or none): only those can be
    copies of each other."""
    size_codes, look_codes = pd.factorize(files["size"].to_numpy(dtype=np.int64))[0], pd.factorize(looks)[0]
    looked = look_codes.astype(np.int64) * 2 + hashed  # (hash, whether there is one) as one number
    codes = pd.factorize(size_codes.astype(np.int64) * (2 * len(looks) + 2) + looked)[0]  # (size, look): one code
    counts = np.bincount(codes[~files["source"].duplicated().to_numpy()], minlength=int(codes.max(initial=-1)) + 1)
    return counts[codes] > 1


@dataclass
class Duplicates:
    """The groups (one row per member, first member first) and how they were found."""

    table: pd.DataFrame  # columns COLUMNS, plus `row` (position in the input)
    samples: int
    similarity: float
    method: str  # "exact (...)" or "approximate (...)"
    searched: int  # samples searched in this run, for near or visual copies (the rest came from the state)
    state: State

    @property
    def groups(self) -> int:
        return int(self.table["group"].nunique()) if len(self.table) else 0

    def counts(self) -> dict[str, int]:
        """Samples per kind, beyond each group's first member (what a user would drop)."""
        rest = self.table[self.table["row"] != self.table.groupby("group")["row"].transform("min")]
        return {kind: int((rest["kind"] == kind).sum()) for kind in ("exact", "near", "visual")}

    def group_of(self) -> np.ndarray:
        """Per input row its group, -1 for samples in no group."""
        out = np.full(self.samples, -1, dtype=np.int64)
        out[self.table["row"].to_numpy(dtype=np.int64)] = self.table["group"].to_numpy(dtype=np.int64)
        return out

    def largest(self, n: int) -> list[pd.DataFrame]:
        """The n largest groups (ties: lower group number first)."""
        if not len(self.table):
            return []
        sizes = Counter(self.table["group"].to_numpy(dtype=np.int64).tolist())
        order = sorted(sizes, key=lambda g: (-sizes[g], g))[:n]
        return [self.table.loc[self.table["group"] == g] for g in order]


def _index(unit: np.ndarray, approximate: bool):
    """Exact inner products, or an inverted file (k-means cells, `IVF_PROBES` cells searched per query).

    An inverted file rather than HNSW: on 20,000 768-d vectors (2 shared cores) faiss built HNSW (M=32) in 138 s,
    slower than the exact search (29 s); near-duplicates sit in the same or a neighbouring cell.
    """
    # faiss only when searching: the definitions load and runs start without it
    import faiss

    if not approximate:
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit)
        return index
    cells = int(min(IVF_MAX_CELLS, len(unit) // IVF_TRAIN_PER_CELL, max(16, 2 * np.sqrt(len(unit)))))
    cells = max(cells, 1)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(unit.shape[1]), unit.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)  # the same training rows, hence the same cells, for the same vectors
    train = unit[np.sort(rng.choice(len(unit), min(len(unit), cells * IVF_TRAIN_PER_CELL), replace=False))]
    index.cp.niter = IVF_TRAIN_ITERATIONS  # k-means; near-duplicates do not need well-balanced cells
    index.train(np.ascontiguousarray(train))
    index.add(unit)
    index.nprobe = IVF_PROBES
    return index


def neighbour_pairs(unit: np.ndarray, queries: np.ndarray, similarity: float, approximate: bool):
    """(pairs, similarities) of each query row with its nearest rows at or above `similarity`, i < j."""
    if len(queries) == 0 or len(unit) < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    k = min(NEIGHBOURS + 1, len(unit))
    sims, ids = _index(unit, approximate).search(unit[queries], k)
    q = np.repeat(queries.astype(np.int64), k)
    ids, sims = ids.reshape(-1).astype(np.int64), sims.reshape(-1)
    keep = (ids >= 0) & (ids != q) & (sims >= similarity - 1e-6)
    pairs = np.sort(np.stack([q[keep], ids[keep]], axis=1), axis=1)
    return _unique_pairs(pairs, np.minimum(sims[keep], 1.0))


def _unique_pairs(pairs: np.ndarray, sims: np.ndarray):
    if not len(pairs):
        return pairs.reshape(0, 2), sims
    _, first = np.unique(pairs, axis=0, return_index=True)
    return pairs[first], sims[first]


def _exact_pairs(keys: Sequence[str]) -> np.ndarray:
    """Each sample linked to the previous one with the same content key (as arrays: a million keys in ~0.1 s)."""
    codes = pd.factorize(np.asarray(keys, dtype=object).reshape(-1))[0]
    order = np.argsort(codes, kind="stable")  # rows of one key together, in row order
    same = np.flatnonzero(codes[order][1:] == codes[order][:-1])
    return np.stack([order[same], order[same + 1]], axis=1).astype(np.int64).reshape(-1, 2)


def _reused_visual(
    state: State | None, before: np.ndarray, hashes: Hashes
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]:
    """Old visual pairs whose two samples kept their hash, the rows whose pairs must be searched anew (all of
    them when the state has no visual pairs, or searched a smaller distance), whether the old pairs are still
    in pair order (the unchanged samples kept their relative order, as when files are only added or removed),
    and whether every old pair was kept."""
    n = len(before)
    old = state.visual if state is not None else Visual()
    if state is None or old.max_distance < hashes.max_distance or len(old.hashes) != len(state.names):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64), np.arange(n), True, not len(old.pairs)
    known = np.flatnonzero(before >= 0)
    unchanged = np.zeros(n, dtype=bool)
    was = before[known]
    unchanged[known] = (old.valid[was] == hashes.valid[known]) & (old.hashes[was] == hashes.values[known]).all(axis=1)
    mapped, keep = carried(old.pairs, before, unchanged, len(state.names))
    keep &= old.distances <= hashes.max_distance
    complete = bool(keep.all())
    kept, distances = (mapped, old.distances) if complete else (mapped[keep], old.distances[keep])
    in_order = bool((np.diff(before[unchanged]) > 0).all())  # then (i < j) and the pairs' order carry over
    return kept if in_order else np.sort(kept, axis=1), distances, np.flatnonzero(~unchanged), in_order, complete


@dataclass(frozen=True)
class _VisualSearch:
    visual: Visual  # every pair, as the next state keeps them
    found: np.ndarray  # the pairs searched in this run
    searched: np.ndarray  # the rows searched
    complete: bool  # every pair of the state was kept


def _search_visual(state: State | None, before: np.ndarray, hashes: Hashes) -> _VisualSearch:
    """The state's visual pairs carried over, merged with those searched for new or changed samples."""
    kept, kept_distances, fresh, in_order, complete = _reused_visual(state, before, hashes)
    values, valid = np.asarray(hashes.values, dtype=np.uint8), np.asarray(hashes.valid, dtype=bool)
    found, found_distances = hash_pairs(values, hashes.max_distance, valid, hashes.videos, queries=fresh)
    if in_order:  # 23 M carried pairs at a million: merged with the new ones instead of sorted again
        pairs, distances = merge_in_order(kept, kept_distances, found, found_distances)
    else:
        pairs, distances = np.concatenate([kept, found]), np.concatenate([kept_distances, found_distances])
        order = pair_order(pairs)
        pairs, distances = pairs[order], distances[order]
    return _VisualSearch(Visual(hashes.max_distance, values, valid, pairs, distances), found, fresh, complete)


def visual_pairs(state: State | None, names: Sequence[str], hashes: Hashes) -> tuple[Visual, int]:
    """The visual pairs of the samples (the state's, where both samples kept their hash; searched for the others),
    as the next state keeps them, and how many samples were searched."""
    search = _search_visual(state, _before(state, names), hashes)
    return search.visual, len(search.searched)


def _linked(state: State | None) -> np.ndarray | None:
    """The state's components of its pairs, when it has one label per sample."""
    if state is None or state.linked is None or len(state.linked) != len(state.names):
        return None
    return state.linked


def _no_visual(state: State | None) -> _VisualSearch:
    """No hashes: no visual pairs searched, none kept."""
    none = np.zeros((0, 2), dtype=np.int64)
    return _VisualSearch(Visual(), none, np.zeros(0, dtype=np.int64), state is None or not len(state.visual.pairs))


def _before(state: State | None, names: Sequence[str]) -> np.ndarray:
    """Per sample its row in the state (-1: new; all new without a state)."""
    return previous_rows(state.names, names) if state is not None else np.full(len(names), -1, dtype=np.int64)


@dataclass(frozen=True)
class Hashes:
    """Perceptual hashes for `visual` copies: (n, 8) bytes, which rows have one, and the video each frame is of
    (frames of one video are never paired with each other)."""

    values: np.ndarray
    valid: np.ndarray
    videos: Sequence[str]
    max_distance: int


def find_duplicates(
    names: Sequence[str],
    matrix: np.ndarray | UnitVectors,
    keys: Sequence[str],
    similarity: float | None,
    model: str = "",
    state: State | None = None,
    exact_limit: int = EXACT_LIMIT,
    hashes: Hashes | None = None,
) -> Duplicates:
    """Group the samples: exact copies (equal `keys`), near-duplicates (cosine >= `similarity`; None when the vectors
    mean nothing: not searched) and visual copies (perceptual hashes within `hashes.max_distance`). `matrix` may be
    `UnitVectors` made already (their digests serve the exact keys too: a million take ~1 s)."""
    n = len(names)
    if not isinstance(matrix, UnitVectors):
        matrix = UnitVectors.of(np.asarray(matrix).reshape(n, -1) if n else np.zeros((0, 1), np.float32))
    unit, digests = matrix.unit, matrix.digests
    approximate = n > exact_limit
    near = similarity is not None
    similarity = 1.0 if similarity is None else similarity  # what the state records when nothing was searched
    before = _before(state, names)
    if near:
        kept, kept_sims, fresh, near_complete = reused_near(state, before, digests, model, similarity)
        found, found_sims = neighbour_pairs(unit, fresh, similarity, approximate)
        close, close_sims = _unique_pairs(np.concatenate([kept, found]), np.concatenate([kept_sims, found_sims]))
    else:  # nothing searched, nothing kept: a later run with meaningful vectors searches everything
        fresh, close, close_sims = np.zeros(0, np.int64), np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        found, near_complete = close, not had_pairs(state)
        model = f"{model}|not searched"
    search = _search_visual(state, before, hashes) if hashes is not None else _no_visual(state)
    old = _linked(state) if near_complete and search.complete else None
    if old is not None:  # every kept pair was carried over: the old components stand in for them
        pairs = np.concatenate([star(carried_labels(old, before)), found, search.found])
    else:
        pairs = np.concatenate([close, search.visual.pairs])
    joined = components(n, pairs)  # the components of the pairs the state keeps
    exact = _exact_pairs(keys)
    labels = components(n, np.concatenate([star(joined), exact])) if len(exact) else joined
    table = _table(names, unit, keys, labels, similarity if near else None, hashes)
    sims = close_sims.astype(np.float32)
    new_state = State(model, similarity, list(names), digests, close, sims, visual=search.visual, linked=joined)
    if not near:
        method = "none: vectors not meaningful"
    else:
        method = "approximate (faiss inverted file)" if approximate else "exact (faiss flat inner product)"
    return Duplicates(table, n, similarity, method, len(np.union1d(fresh, search.searched)), new_state)


def _table(
    names: Sequence[str],
    unit: np.ndarray,
    keys: Sequence[str],
    labels: np.ndarray,
    similarity: float | None,
    hashes: Hashes | None,
) -> pd.DataFrame:
    """One row per member of a component of two or more, groups numbered by their first member's position.

    A member's kind, against its group's first member: `exact` (same content key), `near` (cosine at or above
    `similarity`, when near-duplicates were searched), else `visual` (linked by hashes; its similarity is the
    hashes' agreement with the first member's); a chain of near pairs is `near` too.
    """
    rows, groups, heads = members(labels)
    if not len(rows):
        return pd.DataFrame([], columns=pd.Index([*COLUMNS, "row"]))
    key = np.asarray(keys, dtype=object)
    same_key = key[rows] == key[heads]
    heads_with_copy = np.unique(heads[(rows != heads) & same_key])
    exact = same_key & ((rows != heads) | np.isin(heads, heads_with_copy))
    # one dot per member, as `unit[row] @ unit[head]`: the rounded values stay those of earlier duplicates.csv files;
    # without near-duplicates searched, only exact copies show theirs (visual ones show the hashes' agreement)
    shown = exact if hashes is not None and similarity is None else np.ones(len(rows), dtype=bool)
    cosine = np.zeros(len(rows))
    dots = (float(unit[r] @ unit[h]) for r, h in zip(rows[shown], heads[shown], strict=True))
    cosine[shown] = [round(min(1.0, max(-1.0, d)), 6) for d in dots]
    near = ~exact & (hashes is None or (similarity is not None and cosine >= similarity - 1e-6))
    value = cosine.copy()
    if hashes is not None:
        visual = ~exact & ~near
        distances = hamming(hashes.values[rows[visual]], hashes.values[heads[visual]])
        value[visual] = np.array([round(float(agreement(d)), 6) for d in range(BITS + 1)])[distances]
    kind = np.where(exact, "exact", np.where(near, "near", "visual")).astype(object)
    names_of = np.asarray(names, dtype=object)[rows]
    out = {"filenames": [str(n) for n in names_of], "group": groups, "kind": kind, "similarity": value, "row": rows}
    table = pd.DataFrame(out, columns=pd.Index([*COLUMNS, "row"])).sort_values(["group", "row"], kind="stable")
    table = table.reset_index(drop=True)
    if len(table):  # a first member is of its group's kind: that of the member after it
        head = table["group"] != table["group"].shift()
        follower = table["kind"].shift(-1)
        table.loc[head & (table["kind"] != "exact"), "kind"] = follower[head & (table["kind"] != "exact")]
    return table


def write_duplicates_csv(path: Path, table: pd.DataFrame) -> Path:
    """`duplicates.csv`: filenames,group,kind,similarity; a header only when there is no group."""
    with atomic_output(path) as handle:
        handle.write(table[COLUMNS].to_csv(index=False).encode("utf-8"))
    return Path(path)


def read_duplicates_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"filenames": str, "kind": str})
    if list(table.columns) != COLUMNS:
        raise CurationError(f"{path}: columns {list(table.columns)}, expected {COLUMNS}")
    return table
