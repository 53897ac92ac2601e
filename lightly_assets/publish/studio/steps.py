"""Steps shared by images and videos: default model, tags, embeddings, counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import numpy as np

from lightly_assets.publish.studio.bulk_reads import differing, read_stored
from lightly_assets.publish.studio.embedder import space_key
from lightly_assets.publish.studio.id_relation import id_table
from lightly_assets.publish.studio.target import MISSING_TAG, StudioDataset

if TYPE_CHECKING:
    from sqlmodel import Session


def default_model(
    session: Session, collection_id: UUID, dataset_id: UUID, dimension: int, space: str | None = None
) -> UUID:
    """Make our embedding space the collection's default model (what LightlyStudio does on first embed)."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.embedding_model import EmbeddingModelCreate
    from lightly_studio.resolvers import (
        collection_embedding_model_resolver,
        embedding_model_resolver,
    )

    model = embedding_model_resolver.get_or_create(
        session=session,
        embedding_model=EmbeddingModelCreate(
            name=space_key(dimension, space), embedding_dimension=dimension, dataset_id=dataset_id
        ),
    )
    model_id = model.embedding_model_id
    current = collection_embedding_model_resolver.get_default_by_collection_id(
        session=session, collection_id=collection_id
    )
    if current != model_id:
        collection_embedding_model_resolver.get_or_add_collection_model(
            session=session, collection_id=collection_id, embedding_model_id=model_id
        )
        collection_embedding_model_resolver.set_default(
            session=session, collection_id=collection_id, embedding_model_id=model_id
        )
    return model_id


def _tag(session: Session, collection_id: UUID, name: str) -> UUID:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    return tag_resolver.get_or_create_sample_tag_by_name(
        session=session, collection_id=collection_id, tag_name=name
    ).tag_id


def tag_samples(session: Session, collection_id: UUID, by_tag: dict[str, list[UUID]]) -> None:
    """Add samples to tags, only those not linked yet: a rerun with a few new files writes a few links."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    for name, sample_ids in by_tag.items():
        if not sample_ids:
            continue
        tag_id = _tag(session, collection_id, name)
        todo = _not_tagged(session, tag_id, sample_ids)
        if todo:
            tag_resolver.add_sample_ids_to_tag_id(session=session, tag_id=tag_id, sample_ids=todo)


def _not_tagged(session: Session, tag_id: UUID, sample_ids: list[UUID]) -> list[UUID]:
    """Which of `sample_ids` the tag lacks: asked of the database when the ids can be a table there (a million
    links read back took 11 s), else by reading the tag's links."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTagLinkTable
    from sqlmodel import and_, col, select

    with id_table(session, sample_ids) as ids:
        if ids is not None:
            link = and_(col(SampleTagLinkTable.sample_id) == ids.c.sample_id, col(SampleTagLinkTable.tag_id) == tag_id)
            query = select(ids.c.sample_id).outerjoin(SampleTagLinkTable, link)
            lacking = {str(i) for i in session.exec(query.where(col(SampleTagLinkTable.sample_id).is_(None))).all()}
            return [sample_id for sample_id in sample_ids if str(sample_id) in lacking] if lacking else []
    linked = _tagged(session, tag_id)
    return [sample_id for sample_id in sample_ids if sample_id not in linked]


def _tagged(session: Session, tag_id: UUID) -> set[UUID]:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTagLinkTable
    from sqlmodel import col, select

    query = select(SampleTagLinkTable.sample_id).where(col(SampleTagLinkTable.tag_id) == tag_id)
    return {sample_id for sample_id in session.exec(query).all() if sample_id is not None}


def _delete_embeddings(session: Session, model_id: UUID, sample_ids: list[UUID]) -> None:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample_embedding import SampleEmbeddingTable
    from sqlmodel import col, delete

    for start in range(0, len(sample_ids), 1000):
        session.exec(
            delete(SampleEmbeddingTable).where(
                col(SampleEmbeddingTable.embedding_model_id) == model_id,
                col(SampleEmbeddingTable.sample_id).in_(sample_ids[start : start + 1000]),
            )
        )
    session.commit()


def flag_missing(
    session: Session, collection_id: UUID, model_id: UUID, missing: list[UUID], present: list[UUID]
) -> int:
    """Tag samples whose files are gone (and drop their vectors); untag those that came back."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    existing = tag_resolver.get_by_name(session=session, tag_name=MISSING_TAG, collection_id=collection_id)
    if existing is None and not missing:
        return 0  # nothing was ever missing: no empty tag in the UI
    tag_id = existing.tag_id if existing is not None else _tag(session, collection_id, MISSING_TAG)
    flagged = _tagged(session, tag_id)
    returned = [sample_id for sample_id in present if sample_id in flagged]
    if returned:
        tag_resolver.remove_sample_ids_from_tag_id(session=session, tag_id=tag_id, sample_ids=returned)
    if missing:
        tag_resolver.add_sample_ids_to_tag_id(session=session, tag_id=tag_id, sample_ids=missing)
        _delete_embeddings(session, model_id, missing)
    return len(set(missing) - flagged)


def sync_embeddings(
    session: Session,
    model_id: UUID,
    wanted: dict[UUID, np.ndarray],
    store: Callable[[list[UUID]], None],
    collection_id: UUID | None = None,
) -> None:
    """Store vectors that are absent, replace those that differ from the CSV, leave the rest alone.

    With `collection_id` (the collection `wanted` covers), the stored vectors are read with one query over the
    collection rather than in lists of ids, and compared as one matrix: a rerun with a few new files stays cheap.
    """
    stale, todo = _compare_stored(session, model_id, wanted, collection_id)
    if stale:
        _delete_embeddings(session, model_id, stale)
    if todo:
        store(todo)


def _compare_stored(
    session: Session, model_id: UUID, wanted: dict[UUID, np.ndarray], collection_id: UUID | None
) -> tuple[list[UUID], list[UUID]]:
    """(Stored vectors that differ from the wanted ones, wanted ids to store): read as one matrix where that
    applies (a collection in DuckDB), else as LightlyStudio's rows."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import sample_embedding_resolver

    matrix = read_stored(session, collection_id, model_id) if collection_id is not None else None
    compared = differing(matrix, wanted) if matrix is not None else None
    if compared is not None:
        stale, done = compared
        return stale, [sample_id for sample_id, kept in zip(wanted, done.tolist(), strict=True) if not kept]
    if collection_id is not None:
        stored = [
            row
            for row in sample_embedding_resolver.get_all_by_collection_id(
                session=session, collection_id=collection_id, embedding_model_id=model_id
            )
            if row.sample_id in wanted
        ]
    else:
        stored = sample_embedding_resolver.get_by_sample_ids(
            session=session, sample_ids=list(wanted), embedding_model_id=model_id
        )
    stale = _differing(stored, wanted)
    done = {row.sample_id for row in stored} - set(stale)
    return stale, [sample_id for sample_id in wanted if sample_id not in done]


def _differing(stored: list, wanted: dict[UUID, np.ndarray]) -> list[UUID]:
    """Sample ids whose stored vector is not the wanted one (`np.allclose`, atol 1e-6), row by row."""
    if not stored:
        return []
    try:
        have = np.stack([np.asarray(row.embedding, dtype=np.float32) for row in stored])
        want = np.stack([wanted[row.sample_id] for row in stored]).astype(np.float32, copy=False)
    except ValueError:  # vectors of different lengths: compare one by one
        have = want = None
    if have is not None and want is not None and have.shape == want.shape:
        same = [bool(x) for x in np.atleast_1d(np.isclose(have, want, atol=1e-6).all(axis=1))]
        return [row.sample_id for row, ok in zip(stored, same, strict=True) if not ok]
    return [
        row.sample_id
        for row in stored
        if np.shape(row.embedding) != np.shape(wanted[row.sample_id])
        or not np.allclose(np.asarray(row.embedding, dtype=np.float32), wanted[row.sample_id], atol=1e-6)
    ]


def count_live(session: Session, collection_id: UUID) -> tuple[int, int]:
    """Samples of a collection not tagged missing, and how many of them have a default-model vector."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTable, SampleTagLinkTable
    from lightly_studio.models.sample_embedding import SampleEmbeddingTable
    from lightly_studio.resolvers import collection_embedding_model_resolver, tag_resolver
    from sqlmodel import col, func, select

    live = select(SampleTable.sample_id).where(col(SampleTable.collection_id) == collection_id)
    tag = tag_resolver.get_by_name(session=session, tag_name=MISSING_TAG, collection_id=collection_id)
    if tag is not None:
        flagged = select(SampleTagLinkTable.sample_id).where(col(SampleTagLinkTable.tag_id) == tag.tag_id)
        live = live.where(col(SampleTable.sample_id).notin_(flagged))
    samples = session.exec(select(func.count()).select_from(live.subquery())).one()
    model_id = collection_embedding_model_resolver.get_default_by_collection_id(
        session=session, collection_id=collection_id
    )
    if model_id is None:
        return int(samples), 0
    embedded = session.exec(
        select(func.count())
        .select_from(SampleEmbeddingTable)
        .where(
            col(SampleEmbeddingTable.embedding_model_id) == model_id,
            col(SampleEmbeddingTable.sample_id).in_(live),
        )
    ).one()
    return int(samples), int(embedded)


@dataclass
class Outcome:
    dataset: StudioDataset
    added: int = 0
    removed: int = 0
    unmatched: int = 0
    videos: int = 0
