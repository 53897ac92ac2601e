"""The column contracts of the two tables that other tools rely on, with what each column means.

`file_index` and `frame_index` are built, checked, shown in the Dagster UI and consumed by every
publishing target from these declarations; a consumer states which columns it needs with `require`.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from lightly_assets.errors import LightlyAssetsError

FILE_INDEX: dict[str, str] = {
    "filename": "POSIX path of the file relative to the dataset folder",
    "kind": "'image' or 'video'",
    "label": "weak label (int), as Lightly derives it from the folder layout",
    "label_name": "name of the weak label: top-level subfolder, video path, or the dataset name",
    "size": "file size in bytes (part of the incremental-cache key)",
    "mtime_ns": "modification time in nanoseconds (part of the incremental-cache key)",
}

FRAME_INDEX: dict[str, str] = {
    "filename": "sample name written to the CSV: the image path, or Lightly's frame name for a video frame",
    "source": "the file the sample comes from, relative to the dataset folder",
    "kind": "'image' or 'video'",
    "frame": "frame number within the video, 0-based (null for images)",
    "pts": "presentation timestamp of the frame in stream time-base units (null for images)",
    "time_s": "presentation time of the frame in seconds (null for images)",
    "label": "weak label (int) of the source file",
    "label_name": "name of the weak label",
    "size": "size of the source file in bytes",
    "mtime_ns": "modification time of the source file in nanoseconds",
}

# Lightly's embeddings CSV (written and read by lightly_csv.py); `embedding_<i>` stands for D columns.
EMBEDDINGS_CSV: dict[str, str] = {
    "filenames": "sample name: the image path, or Lightly's frame name for a video frame",
    "embedding_<i>": "component i of the embedding (float), one column each for i = 0 … D-1, consecutive",
    "labels": "weak label (int)",
}

# The type of each contract column, as the UI's column schema shows it before any run.
TYPES: dict[str, str] = {
    "filename": "string", "kind": "string", "label": "int", "label_name": "string", "size": "int",
    "mtime_ns": "int", "source": "string", "frame": "int", "pts": "int", "time_s": "float",
    "filenames": "string", "embedding_<i>": "float", "labels": "int", "group": "int", "similarity": "float",
    "issue": "string", "score": "float",
}  # fmt: skip

# duplicates.csv (curation/duplicates.py): one row per sample in a group of two or more.
DUPLICATES_CSV: dict[str, str] = {
    "filenames": "sample name, as in the embeddings CSV",
    "group": "group number (int), shared by the group's members; groups are numbered by their first member",
    "kind": "'exact' (same file content, or an identical decoded frame), 'near' (cosine >= similarity) or "
    "'visual' (perceptual hashes within max_hash_distance, no model needed)",
    "similarity": "to the group's first member (its first row): cosine for exact/near, the hashes' agreement "
    "(1 - Hamming distance / bits) for visual",
}

# data_issues.csv (curation/quality.py): one row per sample and issue found.
DATA_ISSUES_CSV: dict[str, str] = {
    "filenames": "sample name, as in the embeddings CSV; a file that could not be decoded at all, and a video's "
    "odd_size / odd_aspect_ratio, by its file_index path",
    "issue": "blurry, dark, light, grayscale, low_information, odd_aspect_ratio, odd_size, broken or outlier",
    "score": "how bad, in [0, 1]: 0.5 at the issue's threshold, 1 at the extreme",
}

FILE_INDEX_COLUMNS = list(FILE_INDEX)
FRAME_INDEX_COLUMNS = list(FRAME_INDEX)


class ColumnsError(LightlyAssetsError):
    """A table lacks columns that its consumer needs."""


def require(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Fail with one line naming the table and the missing columns."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ColumnsError(f"{what} lacks columns {missing}")


def description(column: str) -> str:
    """What a column of either table means, for the UI's column schema."""
    return FRAME_INDEX.get(column) or FILE_INDEX.get(column) or EMBEDDINGS_CSV.get(column, "")
