"""Images: add the new ones, tag them, attach their vectors, flag the missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np
from PIL import Image

from lightly_assets.publish.studio.bulk_reads import read_paths
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


def paths_in(session: Session, collection_id: UUID, table: Any, only: Sequence[str] | None = None) -> dict[str, UUID]:
    """File path → sample id of the images or videos (`table`) of one collection (`only` these paths, if given)."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTable
    from sqlmodel import col, select

    query = (
        select(table.file_path_abs, table.sample_id)
        .join(SampleTable, col(SampleTable.sample_id) == col(table.sample_id))
        .where(col(SampleTable.collection_id) == collection_id)
    )
    if only is None or len(only) > _SCAN_ABOVE:
        everything = read_paths(session, collection_id, table)
        if everything is None:
            everything = dict(session.exec(query).all())
        if only is None:
            return everything
        return {path: everything[path] for path in only if path in everything}
    found: dict[str, UUID] = {}
    for start in range(0, len(only), _PATHS_PER_QUERY):
        chunk = list(only[start : start + _PATHS_PER_QUERY])
        found.update(session.exec(query.where(col(table.file_path_abs).in_(chunk))).all())
    return found


def _image_paths(session: Session, collection_id: UUID, only: Sequence[str] | None = None) -> dict[str, UUID]:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.image import ImageTable

    return paths_in(session, collection_id, ImageTable, only)


_PATHS_PER_QUERY = 1000  # paths per IN (...) list when looking up the new rows only
# Above it, one scan of the collection: in DuckDB 100,000 paths read back take ~1 s, an IN list of 1,000 ~40 ms.
_SCAN_ABOVE = 20_000
# Image rows per `image_resolver.create_many` call (one commit each): LightlyStudio's path loader commits every 32.
_ROWS_PER_COMMIT = 4096


def _size(path: str) -> tuple[int, int] | None:
    """Width and height from the image's header, or None when Pillow cannot open it (left out, counted)."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def add_new_images(session: Session, collection_id: UUID, paths: list[str]) -> None:
    """Create image samples in bulk: headers read in parallel, then a few large inserts through LightlyStudio's
    `image_resolver.create_many` (what its own loader calls, 32 rows at a time). Unreadable files are left out,
    as LightlyStudio's loader leaves them out."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.image import ImageCreate
    from lightly_studio.resolvers import image_resolver

    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        sizes = list(pool.map(_size, paths, chunksize=256))
    rows = [
        ImageCreate(file_name=os.path.basename(path), file_path_abs=path, width=size[0], height=size[1])
        for path, size in zip(paths, sizes, strict=True)
        if size is not None
    ]
    for start in range(0, len(rows), _ROWS_PER_COMMIT):
        image_resolver.create_many(
            session=session, collection_id=collection_id, samples=rows[start : start + _ROWS_PER_COMMIT]
        )


def sync_images(name: str, images: list[ImageRow], dimension: int, space: str | None = None) -> Outcome:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio as ls
    from lightly_studio.embed import embedding_storage

    dataset = ls.ImageDataset.load_or_create(name=name)
    session, collection_id = dataset.session, dataset.collection_id
    model_id = default_model(session, collection_id, dataset.dataset_id, dimension, space)
    wanted = {image.path: image for image in images}
    before = _image_paths(session, collection_id)
    new_paths = [path for path in wanted if path not in before]
    if new_paths:
        add_new_images(session, collection_id, new_paths)
    # after the first upload only the new rows are looked up (reading 100,000 paths back takes ~1.2 s)
    present = (
        {**before, **_image_paths(session, collection_id, new_paths)}
        if before
        else _image_paths(session, collection_id)
    )
    live = {path: present[path] for path in wanted if path in present}
    by_label: dict[str, list[UUID]] = {}
    for path, sample_id in live.items():
        by_label.setdefault(wanted[path].label_name, []).append(sample_id)
    tag_samples(session, collection_id, by_label)
    missing = [sample_id for path, sample_id in present.items() if path not in wanted]
    removed = flag_missing(session, collection_id, model_id, missing, list(live.values()))

    vectors = {sample_id: wanted[path].vector for path, sample_id in live.items()}
    sync_embeddings(  # in bulk, as frames: one validated insert of every missing vector, one commit
        session,
        model_id,
        vectors,
        lambda todo: embedding_storage.store_embeddings(
            session=session,
            model_id=model_id,
            sample_ids=todo,
            embeddings=np.stack([vectors[sample_id] for sample_id in todo]),
            show_progress=False,
        ),
        collection_id,
    )
    samples, embeddings = count_live(session, collection_id)
    return Outcome(
        dataset=StudioDataset(name, "image", str(dataset.dataset_id), str(collection_id), samples, embeddings),
        added=len(set(present) - set(before)),
        removed=removed,
        unmatched=len(wanted) - len(live),
    )
