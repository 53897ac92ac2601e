"""The incremental embedding cache: vectors of earlier runs, reused when neither the file nor the model changed."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from lightly_assets.atomic import atomic_output

log = logging.getLogger(__name__)

_CACHE_VERSION = 1

Key = tuple[str, int, int, str]  # (source, size, mtime_ns, sample filename)


class EmbeddingCache:
    """Vectors from earlier runs, keyed by (source, size, mtime_ns, sample filename) and the model fingerprint.

    One `.npz` file without pickled objects (keys are stored as UTF-8 JSON), replaced atomically, so a
    crash leaves the previous cache intact. A cache written by another model or settings is ignored.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self, fingerprint: str) -> dict[Key, np.ndarray]:
        """Vectors of the previous run with the same fingerprint; empty when none, stale or unreadable."""
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode("utf-8"))
                if meta.get("version") != _CACHE_VERSION or meta.get("fingerprint") != fingerprint:
                    return {}
                keys = [tuple(k) for k in json.loads(data["keys"].tobytes().decode("utf-8"))]
                vectors = np.asarray(data["vectors"], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - a broken cache only costs a recomputation
            log.warning("%s: embedding cache unreadable, recomputing (%s)", self.path, exc)
            return {}
        if len(keys) != len(vectors):
            log.warning("%s: embedding cache inconsistent, recomputing", self.path)
            return {}
        return {(str(s), int(n), int(m), str(f)): vectors[i] for i, (s, n, m, f) in enumerate(keys)}

    def save(self, fingerprint: str, keys: list[Key], vectors: np.ndarray) -> None:
        """Replace the cache with exactly these vectors (files that disappeared drop out)."""
        meta = json.dumps({"version": _CACHE_VERSION, "fingerprint": fingerprint}).encode("utf-8")
        packed = json.dumps([list(k) for k in keys], ensure_ascii=False).encode("utf-8")
        with atomic_output(self.path) as f:
            np.savez(
                f,
                meta=np.frombuffer(meta, dtype=np.uint8),
                keys=np.frombuffer(packed, dtype=np.uint8),
                vectors=np.asarray(vectors, dtype=np.float32),
            )


class Checkpoint:
    """Saves the vectors computed so far now and then, so a killed run resumes where it was.

    The cost is bounded: after the first batch, a save happens at most every `interval_s` seconds and, when
    saving gets slow (a big cache), at most `max_share` of the wall time goes into writing. Each save is
    atomic, so a kill during a save leaves the previous cache.
    """

    def __init__(
        self,
        cache: EmbeddingCache,
        fingerprint: str,
        keys: list[Key],
        matrix: np.ndarray,
        done: np.ndarray,
        interval_s: float = 2.0,
        max_share: float = 0.1,
    ) -> None:
        self.cache, self.fingerprint, self.keys = cache, fingerprint, keys
        self.matrix, self.done = matrix, done
        self.interval_s, self.max_share = interval_s, max_share
        self._due = time.monotonic()  # the first batch is saved at once: the run is resumable from the start
        self.saves = 0

    def maybe_save(self) -> None:
        """Save when due; called after each embedded batch."""
        if time.monotonic() >= self._due:
            self.save()

    def save(self) -> None:
        """Save now. A cache that cannot be written (full disk) only costs a recomputation later: warn, go on."""
        start = time.monotonic()
        ok = np.flatnonzero(self.done)
        try:
            self.cache.save(self.fingerprint, [self.keys[i] for i in ok.tolist()], self.matrix[ok])
        except OSError as exc:
            log.warning("embedding cache not saved: %s: %s", exc.filename or self.cache.path, exc.strerror or exc)
        cost = time.monotonic() - start
        self._due = time.monotonic() + max(self.interval_s, cost / self.max_share)
        self.saves += 1
