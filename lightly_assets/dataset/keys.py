"""What says a sample is unchanged between runs: its source file's path and stat, and the sample's name.

The embedding cache and the picture statistics' cache both keep results under these four `frame_index` columns and
match a run's samples against them. Matching stays columnar: a 64-bit hash of the four columns finds the candidate
row, then every column is compared, so a hash collision is a miss, never a wrong result. At a million samples this is
a few arrays, not a million tuples in a dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from pandas.util import hash_pandas_object

KEY_COLUMNS = ["source", "size", "mtime_ns", "filename"]
FILE_COLUMNS = KEY_COLUMNS[:3]  # a file, whatever samples it holds
_INTEGER = {"size", "mtime_ns"}
_SEP = "\0"  # no file name (nor a decoder's one-line reason) holds a NUL


def key_table(table: pd.DataFrame, columns: Sequence[str] = KEY_COLUMNS) -> pd.DataFrame:
    """The key columns of `table` (any index), with the same dtypes whatever `table` held."""
    return pd.DataFrame(
        {
            column: table[column].to_numpy(dtype=np.int64)
            if column in _INTEGER
            else table[column].astype(str).to_numpy(dtype=object)  # objects: no fixed-width copy
            for column in columns
        }
    )


def matching_rows(known: pd.DataFrame, wanted: pd.DataFrame, columns: Sequence[str] = KEY_COLUMNS) -> np.ndarray:
    """For each row of `wanted`, the position of the first row of `known` with the same key, or -1. `columns`: a
    subset of the key (a file's content is keyed by its source and stat alone)."""
    if not len(known) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    known, wanted = key_table(known, columns), key_table(wanted, columns)
    mine, theirs = _hashes(known), _hashes(wanted)
    first = ~pd.Index(mine).duplicated()
    at = pd.Index(mine[first]).get_indexer(theirs)
    rows = np.where(at >= 0, np.flatnonzero(first)[at], -1)
    hit = np.flatnonzero(rows >= 0)
    for column in columns:
        same = known[column].to_numpy()[rows[hit]] == wanted[column].to_numpy()[hit]
        rows[hit[~same]] = -1
    return rows


def same_names(names: Sequence[str] | pd.Series | np.ndarray, others: Sequence[str] | pd.Series | np.ndarray) -> bool:
    """Whether two name columns hold the same names in the same order: the usual case between `frame_index` and the
    CSV (every sample embedded), found by one comparison instead of hashing a million strings to match them."""
    if len(names) != len(others):
        return False
    return bool((np.asarray(names, dtype=object) == np.asarray(others, dtype=object)).all())


def _hashes(keys: pd.DataFrame) -> np.ndarray:
    # pandas types this decorated function loosely; strings hashed as they are (categorising them first took 2x)
    hashed = cast(Any, hash_pandas_object)(keys, index=False, categorize=False)
    return np.asarray(hashed, dtype=np.uint64)


def joined_text(values: np.ndarray) -> np.ndarray:
    """A text column as one NUL-joined UTF-8 byte array: what cache files store instead of fixed-width unicode
    (4 bytes a character, padded to the longest: 1 M file names were 120 MB, now about 30). A NUL inside a value
    (never in a file name; a decoder's message could hold one) becomes a space, so the file always reads back."""
    text = _SEP.join(map(str, values))
    if text.count(_SEP) != max(len(values) - 1, 0):
        text = _SEP.join(str(v).replace(_SEP, " ") for v in values)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def split_text(blob: np.ndarray, n: int) -> list[str]:
    """`joined_text` back to its `n` values."""
    return blob.tobytes().decode("utf-8").split(_SEP) if n else []
