"""Indexing a dataset folder: `file_index` (every usable file) and `frame_index` (every sample)."""

import time
from typing import Optional

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
)
from pydantic import Field

from lightly_assets import columns
from lightly_assets.dataset.roots import fingerprint
from lightly_assets.dataset.samples import build_sample_index, require_samples
from lightly_assets.dataset.sampling import FrameSampling
from lightly_assets.dataset.scan import require_usable, scan_dataset
from lightly_assets.defs import checks
from lightly_assets.defs.common import dataset_asset, user_errors
from lightly_assets.defs.metadata import (
    FINGERPRINT,
    PARTITION_ROW_COUNT,
    column_schema,
    contract_schema,
    count_table,
    partition_rows,
    preview,
    skipped,
)
from lightly_assets.defs.resources import StorageResource
from lightly_assets.progress import Progress


class FileIndexConfig(Config):
    """`verify_images` opens every image header, so unreadable files are reported before embedding.

    Off by default: it costs about 100x the listing on big folders, and embedding reports them anyway.
    """

    verify_images: bool = Field(default=False, description="Open every image header while indexing.")


@dataset_asset(
    facts=[PARTITION_ROW_COUNT, "layout", "per_kind", "per_label", "skipped", "preview", "folder", FINGERPRINT],
    check_specs=checks.FILE_INDEX,
    kinds={"pandas"},
    metadata={"dagster/column_schema": contract_schema(columns.FILE_INDEX)},
)
def file_index(context: AssetExecutionContext, config: FileIndexConfig, storage: StorageResource):
    """Every usable image and video of the dataset with its weak label, in Lightly's order."""
    folder = storage.dataset_dir(context.partition_key)
    with user_errors():
        result = scan_dataset(folder, verify=config.verify_images)
        files_seen = result.fingerprint  # the scan's own stats: a file changed since makes the sensor run again
        if files_seen is None:  # a folder the sensor's walk enters and the scan does not: its own walk, then
            files_seen = fingerprint(folder)  # the scan again, so the fingerprint is not newer than the files
            result = scan_dataset(folder, verify=config.verify_images)
        require_usable(result, folder)
    files = result.files
    for s in result.skipped:
        context.log.warning(f"skipped {folder / s.path}: {s.reason}")
    yield Output(
        files,
        metadata={
            **partition_rows(len(files)),
            "dagster/column_schema": column_schema(files),
            "layout": result.layout,
            "per_kind": count_table(pd.Series(files["kind"]), "kind", "files"),
            "per_label": count_table(pd.Series(files["label_name"]), "label", "files"),
            "skipped": skipped(result.skipped),
            "preview": preview(files),
            "folder": MetadataValue.path(str(folder.resolve())),
            FINGERPRINT: files_seen,
        },
    )
    yield checks.no_skipped_files(result.skipped)


class FrameIndexConfig(Config):
    """Which video frames become samples: every frame by default, as Lightly does.

    `frame_stride` n keeps frames 0, n, 2n, ...; `target_fps` (LightlyStudio's name) keeps about that many frames
    per second, the frames LightlyStudio's own loader would keep. Kept frames keep their original numbers in their
    names and their timestamps; a video is still decoded once, front to back.
    """

    frame_stride: int = Field(default=1, description="Keep frames 0, n, 2n, ... of each video.")
    target_fps: Optional[float] = Field(
        default=None, description="Keep about this many frames per second, as LightlyStudio's loader does."
    )


@dataset_asset(
    facts=[
        PARTITION_ROW_COUNT,
        "per_kind",
        "per_label",
        "frames_per_video",
        "frame_sampling",
        "sampled_frames_per_video",
        "skipped",
        "index_seconds",
        "preview",
    ],  # fmt: skip
    check_specs=checks.FRAME_INDEX,
    kinds={"pandas"},
    metadata={"dagster/column_schema": contract_schema(columns.FRAME_INDEX)},
)
def frame_index(
    context: AssetExecutionContext, config: FrameIndexConfig, storage: StorageResource, file_index: pd.DataFrame
):
    """One row per sample: images as they are, each kept video frame with its Lightly name and timestamp."""
    folder = storage.dataset_dir(context.partition_key)
    start = time.perf_counter()
    with user_errors():
        sampling = FrameSampling(frame_stride=config.frame_stride, target_fps=config.target_fps)
        progress = Progress("indexing videos", context.log.info)
        index = build_sample_index(file_index, folder, progress=progress, sampling=sampling)
        require_samples(index, folder)
    samples = index.samples
    for s in index.skipped:
        context.log.warning(f"skipped {folder / s.path}: {s.reason}")
    videos = {name: v.n_frames for name, v in index.videos.items()}
    sampled = {name: len(frames) for name, frames in index.kept.items()}
    yield Output(
        samples,
        metadata={
            **partition_rows(len(samples)),
            "dagster/column_schema": column_schema(samples),
            "per_kind": count_table(pd.Series(samples["kind"]), "kind", "samples"),
            "per_label": count_table(pd.Series(samples["label_name"]), "label", "samples"),
            **({"frames_per_video": count_table(videos, "video", "frames")} if videos else {}),
            **(
                {
                    "frame_sampling": sampling.describe(),
                    "sampled_frames_per_video": count_table(sampled, "video", "frames kept"),
                }
                if videos
                else {}
            ),
            "skipped": skipped(index.skipped),
            "index_seconds": round(time.perf_counter() - start, 3),
            "preview": preview(samples),
        },
    )
    yield checks.samples_match_files(file_index, samples, index.skipped, index.kept)
    yield checks.all_videos_indexed(index.skipped)
