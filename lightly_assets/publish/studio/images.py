"""Images: add the new ones, tag them, attach their vectors, flag the missing."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any
from uuid import UUID

from lightly_assets.publish.studio.embedder import serving
from lightly_assets.publish.studio.plan import ImageRow
from lightly_assets.publish.studio.steps import (
    Outcome,
    count_live,
    default_model,
    flag_missing,
    sync_embeddings,
    tag_samples,
)
from lightly_assets.publish.studio.target import StudioDataset

if TYPE_CHECKING:
    from sqlmodel import Session


def paths_in(session: Session, collection_id: UUID, table: Any) -> dict[str, UUID]:
    """File path → sample id of the images or videos (`table`) of one collection."""
    from lightly_studio.models.sample import SampleTable
    from sqlmodel import col, select

    query = (
        select(table.file_path_abs, table.sample_id)
        .join(SampleTable, col(SampleTable.sample_id) == col(table.sample_id))
        .where(col(SampleTable.collection_id) == collection_id)
    )
    return dict(session.exec(query).all())


def _image_paths(session: Session, collection_id: UUID) -> dict[str, UUID]:
    from lightly_studio.models.image import ImageTable

    return paths_in(session, collection_id, ImageTable)


def sync_images(name: str, images: list[ImageRow], dimension: int, space: str | None = None) -> Outcome:
    import lightly_studio as ls
    from lightly_studio.core.file_outcome_report import AllInputFilesFailedError
    from lightly_studio.core.image import add_images
    from lightly_studio.embed import embed_samples

    dataset = ls.ImageDataset.load_or_create(name=name)
    session, collection_id = dataset.session, dataset.collection_id
    model_id = default_model(session, collection_id, dataset.dataset_id, dimension, space)
    wanted = {image.path: image for image in images}
    before = _image_paths(session, collection_id)
    new_paths = [path for path in wanted if path not in before]
    if new_paths:
        with contextlib.suppress(AllInputFilesFailedError):  # unreadable for LightlyStudio: counted below
            add_images.load_into_dataset_from_paths(
                session=session, root_collection_id=collection_id, image_paths=new_paths, show_progress=False
            )
    present = _image_paths(session, collection_id)
    live = {path: present[path] for path in wanted if path in present}
    by_label: dict[str, list[UUID]] = {}
    for path, sample_id in live.items():
        by_label.setdefault(wanted[path].label_name, []).append(sample_id)
    tag_samples(session, collection_id, by_label)
    missing = [sample_id for path, sample_id in present.items() if path not in wanted]
    removed = flag_missing(session, collection_id, model_id, missing, list(live.values()))

    with serving(dimension, {path: wanted[path].vector for path in live}, space):
        sync_embeddings(
            session,
            model_id,
            {sample_id: wanted[path].vector for path, sample_id in live.items()},
            lambda todo: embed_samples.embed_image_samples(
                session=session, collection_id=collection_id, sample_ids=todo
            ),
        )
    samples, embeddings = count_live(session, collection_id)
    return Outcome(
        dataset=StudioDataset(name, "image", str(dataset.dataset_id), str(collection_id), samples, embeddings),
        added=len(set(present) - set(before)),
        removed=removed,
        unmatched=len(wanted) - len(live),
    )
