"""What to upload: frame_index joined with the CSV, without touching LightlyStudio."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightly_assets import columns
from lightly_assets.dataset.keys import same_names
from lightly_assets.lightly_csv import EmbeddingsFileError, read_embeddings_csv, require_unique_finite
from lightly_assets.publish.studio.target import REQUIRED_COLUMNS, StudioError


@dataclass
class ImageColumns:
    """The images to upload, column by column (a million row objects took seconds to build and to walk)."""

    paths: list[str]  # absolute, as LightlyStudio stores them
    label_names: np.ndarray  # object array of str
    vectors: np.ndarray  # (n, d) float32, row for row

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class VideoRow:
    path: str
    label_name: str
    size: int
    mtime_ns: int
    by_frame: dict[int, np.ndarray] = field(default_factory=dict)
    by_pts: dict[int, np.ndarray] = field(default_factory=dict)

    def mean(self) -> np.ndarray:
        return np.mean(np.stack(list(self.by_frame.values())), axis=0).astype(np.float32)


@dataclass
class _Plan:
    images: ImageColumns
    videos: list[VideoRow]
    dimension: int


def _read_csv(dataset: str, csv_path: Path) -> tuple[list[str], np.ndarray]:
    """Filenames and float32 vectors of a Lightly embeddings CSV, checked enough to trust the join."""
    try:
        filenames, vectors, _ = read_embeddings_csv(csv_path)
        require_unique_finite(csv_path, filenames, vectors)
    except EmbeddingsFileError as error:
        raise StudioError(dataset, str(error)) from None
    return filenames, vectors


def _optional_int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def absolute_paths(root: Path, sources: Iterable[object]) -> list[str]:
    """Each source's path as LightlyStudio stores it, `(root / source).as_posix()`: joined as text for the usual
    relative, normalised source (a Path per row took ~1 s at 100,000 rows), through Path for any other."""
    base = root.as_posix().rstrip("/") + "/"
    return [base + s if _plain(s) else (root / s).as_posix() for s in map(str, sources)]


def _plain(source: str) -> bool:
    """No leading, trailing or doubled slash and no `.` segment: Path would keep it as it is."""
    return bool(source) and source[0] != "/" and source[-1] != "/" and "//" not in source and "/./" not in f"/{source}/"


def plan_upload(dataset: str, data_dir: Path, frame_index: pd.DataFrame, csv_path: Path) -> _Plan:
    """Join frame_index with the CSV; a sample without a vector (or the reverse) means a stale CSV."""
    columns.require(frame_index, REQUIRED_COLUMNS, f"frame_index of {dataset!r}")
    filenames, vectors = _read_csv(dataset, csv_path)
    names = frame_index["filename"].astype(str).tolist()
    in_csv = pd.Index(filenames)
    same = same_names(names, filenames)  # the usual case: the CSV holds every sample, in frame_index's order
    row_of = np.arange(len(names)) if same else in_csv.get_indexer(names)  # the CSV's names are unique
    if (row_of < 0).any() or len(names) != len(filenames):
        absent = [name for name, row in zip(names, row_of.tolist(), strict=True) if row < 0]
        extra = in_csv[~in_csv.isin(names)].tolist()
        raise StudioError(
            dataset,
            f"{csv_path} does not match frame_index ({len(absent)} samples without a CSV row, e.g. "
            f"{absent[:3]}; {len(extra)} CSV rows without a sample, e.g. {extra[:3]}); rebuild the CSV",
        )
    kind = frame_index["kind"].to_numpy(dtype=object)
    unknown = np.flatnonzero((kind != "image") & (kind != "video"))
    if len(unknown):
        row = unknown[0]
        raise StudioError(dataset, f"frame_index row {names[row]!r} has unknown kind {kind[row]!r}")
    root = Path(data_dir).absolute()
    image = kind == "image"
    images = ImageColumns(
        paths=absolute_paths(root, frame_index["source"].to_numpy(dtype=object)[image]),
        label_names=frame_index["label_name"].astype(str).to_numpy(dtype=object)[image],
        vectors=np.asarray(vectors[row_of[image]], dtype=np.float32),
    )
    frames = pd.DataFrame(frame_index.loc[~image])
    return _Plan(images, _video_rows(dataset, root, frames, vectors, row_of[~image]), vectors.shape[1])


def _video_rows(
    dataset: str, root: Path, frames: pd.DataFrame, vectors: np.ndarray, row_of: np.ndarray
) -> list[VideoRow]:
    """One row per video with its frames' vectors by frame number and by pts."""
    videos: dict[str, VideoRow] = {}
    row: Any  # a row of `frame_index` (pandas types itertuples as plain tuples)
    paths = absolute_paths(root, frames["source"])
    for row, path, at in zip(frames.itertuples(index=False), paths, row_of.tolist(), strict=True):
        vector = vectors[at]
        if _optional_int(row.frame) is None:
            raise StudioError(dataset, f"frame_index row {row.filename!r} is a video frame without a frame number")
        video = videos.setdefault(row.source, VideoRow(path, str(row.label_name), int(row.size), int(row.mtime_ns)))
        video.by_frame[int(row.frame)] = vector
        pts = _optional_int(row.pts)
        if pts is not None:
            video.by_pts[pts] = vector
    return list(videos.values())
