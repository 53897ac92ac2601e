"""What one duplicates run leaves for the next, so the next searches only new or changed samples.

Near pairs are kept with the model's fingerprint and each sample's vector digest, visual pairs with each sample's
perceptual hash and the largest Hamming distance searched; a pair is reused while both of its samples are
unchanged. The components the kept pairs make are kept too (components.py). Files saved before visual pairs
were kept still load (their visual pairs are searched once anew), and those saved before the components were
kept (their components are found once from all the pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lightly_assets.curation.state_file import compact_rows, rows_dtype, save_state, state_arrays
from lightly_assets.dataset.keys import joined_text, split_text

STATE_VERSION = 1
HASH_BYTES = 8
NOT_SEARCHED = -1  # `hash_max_distance` of a state whose run searched no visual copies


def _no_pairs() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.int64)


def _no_file_hashes() -> pd.DataFrame:
    return pd.DataFrame({"source": [], "size": [], "mtime_ns": [], "sha256": []})


@dataclass
class Visual:
    """Visual pairs found at Hamming distances up to `max_distance`, with the hashes they were found from."""

    max_distance: int = NOT_SEARCHED
    hashes: np.ndarray = field(default_factory=lambda: np.zeros((0, HASH_BYTES), dtype=np.uint8))  # (n, 8)
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (n,): the sample has a hash
    pairs: np.ndarray = field(default_factory=_no_pairs)  # (m, 2) int64 positions into the state's names
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (m,)


@dataclass
class State:
    """The samples one run saw, their vectors' digests, the near pairs it found and its visual pairs."""

    model: str
    similarity: float
    names: list[str]
    digests: list[str]
    pairs: np.ndarray  # (m, 2) int64 positions into names
    pair_similarity: np.ndarray  # (m,) float32
    file_hashes: pd.DataFrame = field(default_factory=_no_file_hashes)  # source, size, mtime_ns, sha256
    visual: Visual = field(default_factory=Visual)
    linked: np.ndarray | None = None  # (n,) the components of the kept pairs (near and visual); None: not known

    def save(self, path: Path) -> None:
        files = self.file_hashes
        save_state(  # text NUL-joined (fixed-width unicode was 4 bytes a character), hex digests as ASCII bytes
            path,
            STATE_VERSION,
            model=np.str_(self.model),
            similarity=np.float64(self.similarity),
            names_text=joined_text(np.asarray(self.names, dtype=object)),
            names_count=np.int64(len(self.names)),
            digests=np.array(self.digests, dtype=np.bytes_),
            pairs=compact_rows(self.pairs.reshape(-1, 2)),
            pair_similarity=self.pair_similarity.astype(np.float32),
            hash_sources_text=joined_text(files["source"].to_numpy(dtype=object)),
            hash_stamps=files[["size", "mtime_ns"]].to_numpy(dtype=np.int64).reshape(-1, 2),
            hash_values=np.array(files["sha256"].tolist(), dtype=np.bytes_),
            visual_max_distance=np.int64(self.visual.max_distance),
            visual_hashes=self.visual.hashes.astype(np.uint8).reshape(-1, HASH_BYTES),
            visual_valid=self.visual.valid.astype(bool),
            visual_pairs=compact_rows(self.visual.pairs.reshape(-1, 2)),
            visual_distances=self.visual.distances.astype(np.uint8),  # of 64 bits
            **({} if self.linked is None else {"linked": compact_rows(self.linked)}),
        )

    @classmethod
    def load(cls, path: Path) -> State | None:
        """The saved state, or None when there is none or it is from another version (then everything is new).
        Files that stored text as unicode arrays (before the NUL-joined text) still load."""
        with state_arrays(path, STATE_VERSION, "duplicates state") as data:
            if data is None:
                return None
            stamps = data["hash_stamps"].astype(np.int64).reshape(-1, 2)
            return cls(
                model=str(data["model"]),
                similarity=float(data["similarity"]),
                names=_text(data, "names", int(data["names_count"]) if "names_count" in data.files else 0),
                digests=data["digests"].astype(np.str_).tolist(),
                pairs=data["pairs"].astype(np.int64).reshape(-1, 2),
                pair_similarity=data["pair_similarity"].astype(np.float32),
                file_hashes=pd.DataFrame(
                    {
                        "source": _text(data, "hash_sources", len(stamps)),
                        "size": stamps[:, 0],
                        "mtime_ns": stamps[:, 1],
                        "sha256": data["hash_values"].astype(np.str_).tolist(),  # ASCII bytes, or text (earlier)
                    }
                ),
                visual=_visual(data),
                linked=_linked(data, int(data["names_count"]) if "names_count" in data.files else -1),
            )


def _text(data, name: str, count: int) -> list[str]:  # noqa: ANN001  (numpy's NpzFile)
    if f"{name}_text" in data.files:
        return split_text(data[f"{name}_text"], count)
    return data[name].astype(np.str_).tolist()  # an earlier file: a unicode array


def _linked(data, count: int) -> np.ndarray | None:  # noqa: ANN001  (numpy's NpzFile)
    """The components of the kept pairs, when the file has them for each of its samples (older files do not)."""
    linked = data["linked"] if "linked" in data.files else None
    return linked.astype(np.int64) if linked is not None and len(linked) == count else None


def _rows(rows: np.ndarray) -> np.ndarray:
    """Row numbers as saved (32 bits where they fit), in the type `carried` maps them to."""
    top = int(rows.max(initial=0)) + 1
    return rows.astype(rows_dtype(top), copy=False)


def _visual(data) -> Visual:  # noqa: ANN001  (numpy's NpzFile)
    if "visual_max_distance" not in data.files:  # saved before visual pairs were kept
        return Visual()
    return Visual(
        max_distance=int(data["visual_max_distance"]),
        hashes=data["visual_hashes"].astype(np.uint8).reshape(-1, HASH_BYTES),
        valid=data["visual_valid"].astype(bool),
        pairs=_rows(data["visual_pairs"]).reshape(-1, 2),
        distances=data["visual_distances"].astype(np.uint8, copy=False),  # of 64 bits
    )


def reused_near(
    state: State | None, before: np.ndarray, digests: Sequence[str], model: str, similarity: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Old pairs whose two samples are unchanged, the rows whose neighbours must be searched anew, and whether
    every old pair was kept."""
    n = len(before)
    if state is None or state.model != model or state.similarity > similarity:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32), np.arange(n), not had_pairs(state)
    unchanged = np.array([b >= 0 and state.digests[b] == d for b, d in zip(before, digests, strict=True)], dtype=bool)
    mapped, keep = carried(state.pairs, before, unchanged, len(state.names))
    keep &= state.pair_similarity >= similarity - 1e-6
    complete = bool(keep.all())
    return np.sort(mapped[keep], axis=1), state.pair_similarity[keep], np.flatnonzero(~unchanged), complete


def had_pairs(state: State | None) -> bool:
    """Whether the state kept near pairs: a run that reuses none of them cannot reuse the state's components."""
    return state is not None and len(state.pairs) > 0


def previous_rows(old_names: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Per sample its row in the state (-1: new)."""
    old = pd.Index(old_names)
    if old.is_unique:  # names are unique in a run: one hash lookup each, no million-entry dict
        return old.get_indexer(names).astype(np.int64)
    position = {name: i for i, name in enumerate(old_names)}
    return np.array([position.get(name, -1) for name in names], dtype=np.int64).reshape(-1)


def carried(
    pairs: np.ndarray, before: np.ndarray, unchanged: np.ndarray, old_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The state's pairs in this run's rows, and which of them join two unchanged samples."""
    old_to_new = np.full(old_count, -1, dtype=rows_dtype(len(unchanged)))
    old_to_new[before[unchanged]] = np.flatnonzero(unchanged)
    mapped = old_to_new[pairs.reshape(-1, 2)]
    return mapped, np.asarray((mapped >= 0).all(axis=1))
