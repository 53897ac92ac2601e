"""Steps shared by images and videos: default model, tags, embeddings, counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from lightly_assets.publish.studio.bulk_reads import Vectors, differing, read_stored
from lightly_assets.publish.studio.embedder import space_key
from lightly_assets.publish.studio.id_relation import add_to_tag, id_table, in_collection
from lightly_assets.publish.studio.sample_ids import SampleId, as_text, as_uuids
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


def tag_samples(session: Session, collection_id: UUID, by_tag: Mapping[str, Sequence[SampleId]]) -> None:
    """Add samples to tags, only those not linked yet (a rerun with a few new files writes a few links). In DuckDB
    the ids are joined as a table and the database inserts what the tag lacks; elsewhere the tag's links are read
    back and only the ids it lacks are bound."""
    for name, sample_ids in by_tag.items():
        if not sample_ids:
            continue
        tag_id = _tag(session, collection_id, name)
        with id_table(session, sample_ids) as ids:
            todo = sample_ids if ids is not None else _lacking(session, tag_id, sample_ids)
            if todo:
                add_to_tag(session, tag_id, in_collection(collection_id, todo, ids, unless_in=tag_id))


def _lacking(session: Session, tag_id: UUID, sample_ids: Sequence[SampleId]) -> list[SampleId]:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    linked = set(as_text(tag_resolver.get_sample_ids_by_tag_id(session, tag_id)))
    return [i for i, text in zip(sample_ids, as_text(sample_ids), strict=True) if text not in linked]


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
    session: Session, collection_id: UUID, model_id: UUID, missing: list[UUID], present: Sequence[SampleId]
) -> int:
    """Tag samples whose files are gone (and drop their vectors); untag those that came back."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    existing = tag_resolver.get_by_name(session=session, tag_name=MISSING_TAG, collection_id=collection_id)
    if existing is None and not missing:
        return 0  # nothing was ever missing: no empty tag in the UI
    tag_id = existing.tag_id if existing is not None else _tag(session, collection_id, MISSING_TAG)
    flagged = set(tag_resolver.get_sample_ids_by_tag_id(session, tag_id))
    flagged_text = set(as_text(flagged))
    returned = as_uuids(i for i, text in zip(present, as_text(present), strict=True) if text in flagged_text)
    if returned:
        tag_resolver.remove_sample_ids_from_tag_id(session=session, tag_id=tag_id, sample_ids=returned)
    if missing:
        tag_resolver.add_sample_ids_to_tag_id(session=session, tag_id=tag_id, sample_ids=missing)
        _delete_embeddings(session, model_id, missing)
    return len(set(missing) - flagged)


def sync_embeddings(
    session: Session,
    model_id: UUID,
    ids: Sequence[SampleId],
    vectors: Vectors,
    store: Callable[[list[SampleId], np.ndarray], None],
    collection_id: UUID | None = None,
) -> None:
    """Store vectors that are absent, replace those that differ from the wanted ones (`vectors`, row for row with
    `ids`), leave the rest alone. `store` gets the ids to store (as `ids` holds them: text stays text for a bulk
    insert) and their rows.

    With `collection_id` (the collection `ids` cover), the stored vectors are read with one query over the
    collection rather than in lists of ids, and compared as one matrix: a rerun with a few new files stays cheap.
    """
    stale, todo = _compare_stored(session, model_id, ids, vectors, collection_id)
    if len(stale):
        _delete_embeddings(session, model_id, as_uuids(ids[i] for i in stale.tolist()))
    if len(todo):
        store([ids[i] for i in todo.tolist()], todo)


def _compare_stored(
    session: Session, model_id: UUID, ids: Sequence[SampleId], vectors: Vectors, collection_id: UUID | None
) -> tuple[np.ndarray, np.ndarray]:
    """(Rows whose stored vector differs from the wanted one, rows to store): read as one matrix where that
    applies (a collection in DuckDB), else as LightlyStudio's rows."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import sample_embedding_resolver

    matrix = read_stored(session, collection_id, model_id) if collection_id is not None else None
    compared = differing(matrix, ids, vectors) if matrix is not None else None
    if compared is not None:
        stale, done = compared
        return stale, np.flatnonzero(~done)
    row_of = {text: row for row, text in enumerate(as_text(ids))}
    if collection_id is not None:
        rows = sample_embedding_resolver.get_all_by_collection_id(
            session=session, collection_id=collection_id, embedding_model_id=model_id
        )
    else:
        rows = sample_embedding_resolver.get_by_sample_ids(
            session=session, sample_ids=as_uuids(ids), embedding_model_id=model_id
        )
    stored = [(row_of[text], row.embedding) for row in rows if (text := str(row.sample_id)) in row_of]
    stale = _differing(stored, vectors)
    done = np.zeros(len(ids), dtype=bool)
    done[[at for at, _ in stored]] = True
    done[stale] = False
    return stale, np.flatnonzero(~done)


def _differing(stored: Sequence[tuple[int, Any]], vectors: Vectors) -> np.ndarray:
    """Rows whose stored vector is not the wanted one (`np.allclose`, atol 1e-6), given (row, stored vector)."""
    if not stored:
        return np.zeros(0, dtype=np.int64)
    rows = np.array([at for at, _ in stored], dtype=np.int64)
    try:
        have = np.stack([np.asarray(embedding, dtype=np.float32) for _, embedding in stored])
        want = np.stack([vectors[at] for at in rows.tolist()]).astype(np.float32, copy=False)
    except ValueError:  # vectors of different lengths: compare one by one
        have = want = None
    if have is not None and want is not None and have.shape == want.shape:
        return rows[~np.atleast_1d(np.isclose(have, want, atol=1e-6).all(axis=1))]
    return np.array(
        [
            at
            for at, embedding in stored
            if np.shape(embedding) != np.shape(vectors[at])
            or not np.allclose(np.asarray(embedding, dtype=np.float32), vectors[at], atol=1e-6)
        ],
        dtype=np.int64,
    )


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
