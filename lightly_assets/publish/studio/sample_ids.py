"""Sample ids as the upload and the tags carry them: UUIDs, or their canonical text as DuckDB's bulk reads give it.

A million UUID objects built from DuckDB's text and turned back into text for the next join cost ~2.5 s; the
bulk paths keep the text, and LightlyStudio's own functions get UUIDs (`as_uuids`) for the few rows they write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np
import pandas as pd

SampleId = UUID | str


def as_uuids(sample_ids: Iterable[SampleId]) -> list[UUID]:
    return [i if isinstance(i, UUID) else UUID(i) for i in sample_ids]


def as_text(sample_ids: Iterable[SampleId]) -> list[str]:
    return [i if isinstance(i, str) else str(i) for i in sample_ids]


@dataclass(frozen=True)
class PathMatch:
    """Paths asked for, matched in the collection: each one's sample id (text, None where the collection has no
    such file) and the ids of the collection's files that were not asked for."""

    ids: np.ndarray  # object array, row for row with the paths asked for
    unlisted: list[str]


@dataclass(frozen=True)
class PathIds:
    """File paths of a collection's images or videos and their samples' ids (text), row for row."""

    paths: pd.Index
    ids: np.ndarray  # object array of str

    @classmethod
    def of(cls, paths: Sequence[str], ids: Iterable[SampleId]) -> PathIds:
        """A path stored twice keeps its last id, as a dict of them would."""
        index, text = pd.Index(list(paths), dtype=object), np.array(as_text(ids), dtype=object)
        if not index.is_unique:
            last = ~index.duplicated(keep="last")
            index, text = index[last], text[last]
        return cls(index, text)

    def positions(self, paths: Sequence[str]) -> np.ndarray:
        """Each path's row here, -1 where the collection has no such file."""
        return self.paths.get_indexer(list(paths)).astype(np.int64)

    def lookup(self, paths: Sequence[str]) -> np.ndarray:
        """Each path's sample id (text), None where the collection has no such file."""
        return self.match(paths).ids

    def match(self, paths: Sequence[str]) -> PathMatch:
        """Each path's sample id (text), None where the collection has no such file, and the ids not asked for."""
        at = self.positions(paths)
        found = at[at >= 0]
        ids = np.full(len(at), None, dtype=object)
        ids[at >= 0] = self.ids[found]
        listed = np.zeros(len(self.ids), dtype=bool)
        listed[found] = True
        return PathMatch(ids, self.ids[~listed].tolist())
