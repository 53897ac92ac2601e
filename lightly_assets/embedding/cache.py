"""The incremental embedding cache: vectors of earlier runs, reused when neither the file nor the model changed."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightly_assets.atomic import atomic_output
from lightly_assets.dataset.keys import KEY_COLUMNS, joined_text, matching_rows, split_text

log = logging.getLogger(__name__)

_CACHE_VERSION = 2  # 2: keys as columns; 1 (keys as a JSON list of rows) is still read


@dataclass(frozen=True)
class Cached:
    """Vectors of an earlier run and their keys (a table of `KEY_COLUMNS`), row for row."""

    keys: pd.DataFrame
    vectors: np.ndarray

    @classmethod
    def empty(cls) -> Cached:
        return cls(pd.DataFrame({c: pd.Series(dtype=object) for c in KEY_COLUMNS}), np.zeros((0, 0), np.float32))

    def rows_for(self, keys: pd.DataFrame) -> np.ndarray:
        """For each row of `keys`, the row of its vector here, or -1 (dataset/keys.py)."""
        return matching_rows(self.keys, keys)


class EmbeddingCache:
    """Vectors from earlier runs, keyed by (source, size, mtime_ns, sample filename) and the model fingerprint.

    One `.npz` file without pickled objects (names as NUL-joined UTF-8, stat fields as integer arrays), replaced
    atomically, so a crash leaves the previous cache intact. A cache written by another model or settings is
    ignored. Keys stay columns throughout: a million cached samples are a few arrays, not a million tuples.

    While a run embeds, its own vectors go to a journal beside it (`<name>.journal.npz`, the same format), so a
    checkpoint writes what the run added, not the whole cache again (210 MB at a million samples, ~0.7 s a save).
    The run's last save replaces the cache and removes the journal; a run killed before that leaves both, and the
    next load folds the journal in.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.journal = self.path.with_name(f"{self.path.stem}.journal.npz")

    def load(self, fingerprint: str) -> Cached:
        """Vectors of the previous runs with the same fingerprint (a killed run's journal folded in, and written
        into the cache at once, so that the next journal holds only that run's vectors); empty when none, stale or
        unreadable."""
        cached = self._read(self.path, fingerprint)
        if not self.journal.is_file():
            return cached
        newer = self._read(self.journal, fingerprint)
        try:
            if len(newer.keys):
                cached = _newer_first(newer, cached)
                self.save(fingerprint, cached.keys, cached.vectors)
            else:  # another model's (or unreadable): nothing to resume, and the cache stays as it is
                self.journal.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("%s: killed run's vectors not folded in: %s", self.path, exc.strerror or exc)
        return cached

    def _read(self, path: Path, fingerprint: str) -> Cached:
        if not path.is_file():
            return Cached.empty()
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode("utf-8"))
                if meta.get("fingerprint") != fingerprint or meta.get("version") not in (1, _CACHE_VERSION):
                    return Cached.empty()
                keys = _read_keys(data) if meta["version"] == _CACHE_VERSION else _read_rows(data)
                vectors = np.asarray(data["vectors"], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - a broken cache only costs a recomputation
            log.warning("%s: embedding cache unreadable, recomputing (%s)", path, exc)
            return Cached.empty()
        if len(keys) != len(vectors):
            log.warning("%s: embedding cache inconsistent, recomputing", path)
            return Cached.empty()
        return Cached(keys, vectors)

    def save(self, fingerprint: str, keys: pd.DataFrame, vectors: np.ndarray) -> None:
        """Replace the cache with exactly these vectors (files that disappeared drop out); the journal goes."""
        _write(self.path, fingerprint, keys, vectors)
        self.journal.unlink(missing_ok=True)

    def save_journal(self, fingerprint: str, keys: pd.DataFrame, vectors: np.ndarray) -> None:
        """Replace the journal with the vectors a run has added so far."""
        _write(self.journal, fingerprint, keys, vectors)


def _write(path: Path, fingerprint: str, keys: pd.DataFrame, vectors: np.ndarray) -> None:
    meta = json.dumps({"version": _CACHE_VERSION, "fingerprint": fingerprint}).encode("utf-8")
    with atomic_output(path) as f:
        np.savez(
            f,
            meta=np.frombuffer(meta, dtype=np.uint8),
            sources=joined_text(keys["source"].to_numpy()),
            sizes=keys["size"].to_numpy(dtype=np.int64),
            mtimes=keys["mtime_ns"].to_numpy(dtype=np.int64),
            filenames=joined_text(keys["filename"].to_numpy()),
            vectors=np.asarray(vectors, dtype=np.float32),
        )


def _newer_first(newer: Cached, older: Cached) -> Cached:
    """The vectors of both, each key once (the newer's where both have it); only the newer's when the two differ in
    dimension."""
    if not len(older.keys) or newer.vectors.shape[1] != older.vectors.shape[1]:
        return newer
    stale = matching_rows(newer.keys, older.keys) >= 0
    keys = pd.DataFrame(pd.concat([newer.keys, older.keys[~stale]], ignore_index=True))
    return Cached(keys, np.concatenate([newer.vectors, older.vectors[~stale]]))


def _read_keys(data: Any) -> pd.DataFrame:
    sizes, mtimes = np.asarray(data["sizes"], dtype=np.int64), np.asarray(data["mtimes"], dtype=np.int64)
    sources, filenames = split_text(data["sources"], len(sizes)), split_text(data["filenames"], len(sizes))
    if not len(sources) == len(filenames) == len(sizes) == len(mtimes):
        raise ValueError("key columns of different lengths")
    return pd.DataFrame({"source": sources, "size": sizes, "mtime_ns": mtimes, "filename": filenames})


def _read_rows(data: Any) -> pd.DataFrame:
    """Version 1: keys as one JSON list of [source, size, mtime_ns, filename] rows."""
    rows = json.loads(data["keys"].tobytes().decode("utf-8"))
    return pd.DataFrame(rows, columns=pd.Index(KEY_COLUMNS)).astype({"size": np.int64, "mtime_ns": np.int64})


class Checkpoint:
    """Journals the vectors computed so far now and then, so a killed run resumes where it was.

    The cost is bounded: after the first batch, a save happens at most every `interval_s` seconds and, when
    saving gets slow (many vectors added), at most `max_share` of the wall time goes into writing. Each save is
    atomic, so a kill during a save leaves the previous journal and cache.
    """

    def __init__(
        self,
        cache: EmbeddingCache,
        fingerprint: str,
        keys: pd.DataFrame,
        matrix: np.ndarray,
        done: np.ndarray,
        interval_s: float = 2.0,
        max_share: float = 0.1,
    ) -> None:
        self.cache, self.fingerprint, self.keys = cache, fingerprint, keys
        self.matrix, self.done = matrix, done
        self.cached = done.copy()  # the rows the cache had: a checkpoint journals only the others
        self.interval_s, self.max_share = interval_s, max_share
        self._due = time.monotonic()  # the first batch is saved at once: the run is resumable from the start
        self.saves = 0

    def maybe_save(self) -> None:
        """Journal the run's vectors when due; called after each embedded batch."""
        if time.monotonic() >= self._due:
            start = time.monotonic()
            added = np.flatnonzero(self.done & ~self.cached)
            self._saved(lambda: self.cache.save_journal(self.fingerprint, self.keys.iloc[added], self.matrix[added]))
            cost = time.monotonic() - start
            self._due = time.monotonic() + max(self.interval_s, cost / self.max_share)

    def save(self) -> None:
        """Replace the cache with every vector done (the journal goes): the run's last save."""
        ok = np.flatnonzero(self.done)
        self._saved(lambda: self.cache.save(self.fingerprint, self.keys.iloc[ok], self.matrix[ok]))

    def _saved(self, save: Callable[[], None]) -> None:
        """A cache that cannot be written (full disk) only costs a recomputation later: warn, go on."""
        try:
            save()
        except OSError as exc:
            log.warning("embedding cache not saved: %s: %s", exc.filename or self.cache.path, exc.strerror or exc)
        self.saves += 1
