"""Images: add the new ones, tag them, attach their vectors, flag the missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np
import pandas as pd

from lightly_assets.dataset.headers import image_sizes
from lightly_assets.publish.studio.bulk_reads import match_paths, read_paths
from lightly_assets.publish.studio.bulk_writes import insert_images, store_vectors
from lightly_assets.publish.studio.plan import ImageColumns
from lightly_assets.publish.studio.sample_ids import PathIds, PathMatch, as_uuids
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


def stored_paths(session: Session, collection_id: UUID, table: Any) -> PathIds:
    """Every file path of the images or videos (`table`) of one collection, with its sample id."""
    found = read_paths(session, collection_id, table)
    if found is not None:
        return found
    rows = session.exec(_paths_query(collection_id, table)).all()
    return PathIds.of([path for path, _ in rows], [sample_id for _, sample_id in rows])


def match_files(session: Session, collection_id: UUID, table: Any, paths: Sequence[str]) -> PathMatch:
    """Each path's sample id (text) in the collection (None: no such file), and the ids of its other files: joined
    in DuckDB, else every path read back and matched here."""
    matched = match_paths(session, collection_id, table, paths)
    if matched is not None:
        return matched
    return stored_paths(session, collection_id, table).match(paths)


def ids_of(session: Session, collection_id: UUID, table: Any, paths: Sequence[str]) -> np.ndarray:
    """Each path's sample id (text) in the collection, None where it has no such file: matched against the whole
    collection for many paths, looked up in lists of them for a few."""
    if len(paths) > _SCAN_ABOVE:
        return match_files(session, collection_id, table, paths).ids
    query = _paths_query(collection_id, table)
    found: list[tuple[str, UUID]] = []
    for start in range(0, len(paths), _PATHS_PER_QUERY):
        chunk = list(paths[start : start + _PATHS_PER_QUERY])
        found.extend(session.exec(query.where(table.file_path_abs.in_(chunk))).all())
    return PathIds.of([path for path, _ in found], [sample_id for _, sample_id in found]).lookup(paths)


def paths_in(session: Session, collection_id: UUID, table: Any, only: Sequence[str] | None = None) -> dict[str, UUID]:
    """File path → sample id of the images or videos (`table`) of one collection (`only` these paths, if given)."""
    if only is None:
        found = stored_paths(session, collection_id, table)
        return dict(zip(found.paths, as_uuids(found.ids), strict=True))
    ids = ids_of(session, collection_id, table, only)
    return {path: UUID(sample_id) for path, sample_id in zip(only, ids.tolist(), strict=True) if sample_id is not None}


def _paths_query(collection_id: UUID, table: Any) -> Any:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTable
    from sqlmodel import col, select

    return (
        select(table.file_path_abs, table.sample_id)
        .join(SampleTable, col(SampleTable.sample_id) == col(table.sample_id))
        .where(col(SampleTable.collection_id) == collection_id)
    )


_PATHS_PER_QUERY = 1000  # paths per IN (...) list when looking up the new rows only
# Above it, one scan of the collection: in DuckDB 100,000 paths read back take ~1 s, an IN list of 1,000 ~40 ms.
_SCAN_ABOVE = 20_000
# Image rows per `image_resolver.create_many` call (one commit each): LightlyStudio's path loader commits every 32.
_ROWS_PER_COMMIT = 4096


def add_new_images(session: Session, collection_id: UUID, paths: list[str]) -> np.ndarray:
    """Create image samples in bulk and return their sample ids (text; None for a file Pillow cannot open: left
    out, as LightlyStudio's loader leaves it out). Headers are read in parallel (`image_sizes`), then every row
    goes in with one insert in DuckDB, elsewhere with a few large inserts through LightlyStudio's
    `image_resolver.create_many` (what its own loader calls, 32 rows at a time)."""
    sizes = image_sizes(paths)
    readable = [(i, size) for i, size in enumerate(sizes) if size is not None]
    ids = np.full(len(paths), None, dtype=object)
    made = insert_images(session, collection_id, [paths[i] for i, _ in readable], [size for _, size in readable])
    if made is not None:
        session.commit()
        ids[[i for i, _ in readable]] = made
        return ids
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.image import ImageCreate, ImageTable
    from lightly_studio.resolvers import image_resolver

    rows = [
        ImageCreate(file_name=os.path.basename(paths[i]), file_path_abs=paths[i], width=width, height=height)
        for i, (width, height) in readable
    ]
    for start in range(0, len(rows), _ROWS_PER_COMMIT):
        image_resolver.create_many(
            session=session, collection_id=collection_id, samples=rows[start : start + _ROWS_PER_COMMIT]
        )
    # after the first upload only the new rows are looked up (reading 100,000 paths back takes ~1 s)
    return ids_of(session, collection_id, ImageTable, paths)


def sync_images(name: str, images: ImageColumns, dimension: int, space: str | None = None) -> Outcome:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio as ls
    from lightly_studio.models.image import ImageTable

    dataset = ls.ImageDataset.load_or_create(name=name)
    session, collection_id = dataset.session, dataset.collection_id
    model_id = default_model(session, collection_id, dataset.dataset_id, dimension, space)
    matched = match_files(session, collection_id, ImageTable, images.paths)
    ids = matched.ids
    new = np.flatnonzero(pd.isna(ids))
    if len(new):
        ids[new] = add_new_images(session, collection_id, [images.paths[i] for i in new.tolist()])
    live = np.flatnonzero(pd.notna(ids))
    live_ids = ids[live].tolist()
    by_label = pd.Series(live_ids, dtype=object).groupby(images.label_names[live], sort=False).agg(list)
    tag_samples(session, collection_id, by_label.to_dict())
    removed = flag_missing(session, collection_id, model_id, as_uuids(matched.unlisted), live_ids)

    vectors = images.vectors[live]
    sync_embeddings(  # in bulk, as frames: one validated insert of every missing vector, one commit
        session,
        model_id,
        live_ids,
        vectors,
        lambda todo, rows: store_vectors(session, model_id, todo, vectors[rows]),
        collection_id,
    )
    samples, embeddings = count_live(session, collection_id)
    return Outcome(
        dataset=StudioDataset(name, "image", str(dataset.dataset_id), str(collection_id), samples, embeddings),
        added=int(pd.notna(ids[new]).sum()),
        removed=removed,
        unmatched=len(images) - len(live),
    )
