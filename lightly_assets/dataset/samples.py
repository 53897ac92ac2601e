"""The sample table (`frame_index`): one row per image and one per video frame, in the order of the CSV rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lightly_assets.columns import FRAME_INDEX_COLUMNS
from lightly_assets.dataset.sampling import FrameSampling
from lightly_assets.dataset.scan import DatasetError, Skipped
from lightly_assets.dataset.video import VideoError, VideoIndex, frame_name, index_videos


@dataclass
class SampleIndex:
    """The `frame_index` table, the videos that could not be indexed, and per-video facts for metadata.

    `kept` holds, per video, the frame numbers that are samples (all of them unless `sampling` subsamples).
    """

    samples: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    videos: dict[str, VideoIndex] = field(default_factory=dict)
    kept: dict[str, list[int]] = field(default_factory=dict)
    sampling: FrameSampling = field(default_factory=FrameSampling)


def _video_rows(file_row: pd.Series, index: VideoIndex, kept: list[int]) -> pd.DataFrame:
    """The kept frames, named with their original number padded to the width of the full count (Lightly's)."""
    n = index.n_frames
    return pd.DataFrame(
        {
            "filename": [frame_name(file_row.filename, i, n) for i in kept],
            "source": file_row.filename,
            "kind": "video",
            "frame": pd.array(kept, dtype="Int64"),
            "pts": pd.array([index.pts[i] for i in kept], dtype="Int64"),
            "time_s": pd.array([index.time_s[i] for i in kept], dtype="Float64"),
            "label": file_row.label,
            "label_name": file_row.label_name,
            "size": file_row.size,
            "mtime_ns": file_row.mtime_ns,
        }
    )


def _image_rows(images: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "filename": images["filename"],
            "source": images["filename"],
            "kind": "image",
            "frame": pd.array([None] * len(images), dtype="Int64"),
            "pts": pd.array([None] * len(images), dtype="Int64"),
            "time_s": pd.array([None] * len(images), dtype="Float64"),
            "label": images["label"],
            "label_name": images["label_name"],
            "size": images["size"],
            "mtime_ns": images["mtime_ns"],
        }
    )


def _index_in_chunks(
    paths: list[Path], workers: int | None, progress: Callable[[int, int], None] | None, chunk: int = 64
) -> list[VideoIndex | VideoError]:
    """Index videos in parallel, a chunk at a time, so long listings can report progress."""
    results: list[VideoIndex | VideoError] = []
    if progress and paths:
        progress(0, len(paths))
    for start in range(0, len(paths), chunk):
        results.extend(index_videos(paths[start : start + chunk], workers=workers))
        if progress:
            progress(len(results), len(paths))
    return results


def build_sample_index(
    files: pd.DataFrame,
    dataset_dir: Path,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    sampling: FrameSampling | None = None,
) -> SampleIndex:
    """Expand videos into frames (indexed by demuxing, in parallel) and keep images as they are, in file order.

    `sampling` (default: every frame) picks which frames of each video are samples.
    """
    sampling = sampling or FrameSampling()
    video_rows = files[files["kind"] == "video"]
    results = _index_in_chunks([dataset_dir / f for f in video_rows["filename"]], workers, progress)
    by_name: dict[str, VideoIndex | VideoError] = dict(zip(video_rows["filename"], results, strict=True))
    parts: list[pd.DataFrame] = []
    skipped: list[Skipped] = []
    videos: dict[str, VideoIndex] = {}
    kept: dict[str, list[int]] = {}
    run: list[int] = []  # consecutive image rows, turned into one frame at a time
    row: Any  # a row of `files` (pandas types itertuples as plain tuples)
    for pos, row in enumerate(files.itertuples(index=False)):
        if row.kind == "image":
            run.append(pos)
            continue
        if run:
            parts.append(_image_rows(files.iloc[run]))
            run = []
        result = by_name[row.filename]
        if isinstance(result, VideoError):
            skipped.append(Skipped(row.filename, result.reason))  # a video with no frames is a VideoError too
        else:
            videos[row.filename] = result
            kept[row.filename] = sampling.kept(result.n_frames, result.fps)
            parts.append(_video_rows(row, result, kept[row.filename]))
    if run:
        parts.append(_image_rows(files.iloc[run]))
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=pd.Index(FRAME_INDEX_COLUMNS))
    samples = pd.DataFrame(samples[FRAME_INDEX_COLUMNS]).reset_index(drop=True)
    return SampleIndex(samples=samples, skipped=skipped, videos=videos, kept=kept, sampling=sampling)


def require_samples(index: SampleIndex, dataset_dir: Path) -> None:
    """A dataset whose every file failed indexing is an error, so no empty table flows downstream."""
    if len(index.samples):
        return
    detail = "; ".join(f"{s.path}: {s.reason}" for s in index.skipped[:5])
    raise DatasetError(dataset_dir, "no usable sample" + (f" ({detail})" if detail else ""))
