"""The public API: upload a dataset and count what LightlyStudio holds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lightly_assets.errors import exception_line
from lightly_assets.publish.studio.database import connected, file_lock, scrub, writer_lock
from lightly_assets.publish.studio.images import sync_images
from lightly_assets.publish.studio.naming import dataset_names, frames_collection, root_type
from lightly_assets.publish.studio.plan import plan_upload
from lightly_assets.publish.studio.steps import Outcome, count_live
from lightly_assets.publish.studio.target import StudioError, StudioTarget, UploadResult
from lightly_assets.publish.studio.videos import sync_videos


def upload_dataset(
    target: StudioTarget, data_dir: Path, frame_index: pd.DataFrame, csv_path: Path, space: str | None = None
) -> UploadResult:
    """Mirror one dataset with its CSV embeddings into LightlyStudio; safe to repeat and to resume.

    `space` names the embedding model the vectors are stored under (one per model: `embedder.space_for`).
    """
    name = target.dataset_name
    plan = plan_upload(name, Path(data_dir), frame_index, Path(csv_path))
    with writer_lock(target), connected(target) as session:
        step = "choosing the LightlyStudio datasets"
        try:
            image_name, video_name = dataset_names(session, name, bool(plan.images))
            outcomes: list[Outcome] = []
            if plan.images or root_type(session, image_name) == "image":
                step = f"writing images into {image_name!r}"
                outcomes.append(sync_images(image_name, plan.images, plan.dimension, space))
            if plan.videos or root_type(session, video_name) == "video":
                step = f"writing videos into {video_name!r}"
                outcomes.append(sync_videos(video_name, plan.videos, plan.dimension, space))
        except StudioError:
            raise
        except Exception as error:
            raise StudioError(
                name,
                f"upload to {target.describe()} failed while {step}: {scrub(exception_line(error), target)}; "
                "what was written is consistent and the next run completes it",
            ) from error
    if not outcomes:
        raise StudioError(name, "nothing to upload: frame_index is empty and LightlyStudio has no such dataset")
    primary = next((o for o in outcomes if o.dataset.name == name), outcomes[0])
    return UploadResult(
        target=target.describe(),
        dataset_name=name,
        dataset_id=primary.dataset.dataset_id,
        collection_id=primary.dataset.collection_id,
        samples=sum(o.dataset.samples for o in outcomes),
        embeddings=sum(o.dataset.embeddings for o in outcomes),
        videos=sum(o.videos for o in outcomes),
        added=sum(o.added for o in outcomes),
        removed=sum(o.removed for o in outcomes),
        unmatched=sum(o.unmatched for o in outcomes),
        gui_command=target.gui_command(),
        datasets=tuple(o.dataset for o in outcomes),
    )


def count_in_studio(target: StudioTarget, dataset_name: str) -> tuple[int, int]:
    """(samples, embeddings) that LightlyStudio holds for a dataset: images and video frames, not missing."""
    if target.db_file is not None and not Path(target.db_file).exists():
        return 0, 0
    with file_lock(target), connected(target) as session:
        # LightlyStudio takes seconds to import: only uploads and its GUI need it
        from lightly_studio.resolvers import collection_resolver

        samples = embeddings = 0
        for name in (dataset_name, f"{dataset_name} (videos)", f"{dataset_name} (images)"):
            collection_id = collection_resolver.get_by_name(session=session, name=name, parent_collection_id=None)
            if collection_id is not None and root_type(session, name) == "video":
                collection_id = frames_collection(session, collection_id)
            if collection_id is not None:
                counted = count_live(session, collection_id)
                samples, embeddings = samples + counted[0], embeddings + counted[1]
        return samples, embeddings
