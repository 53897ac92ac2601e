"""Whole-batch writes in DuckDB through its Arrow interface: new image samples and their vectors.

LightlyStudio's resolvers insert through SQLAlchemy: every multi-row INSERT is compiled with one bind parameter per
value, and every image row is validated by pydantic first. That was ~1,500 samples/s, most of a cold upload. Here
the rows go in as one registered Arrow table per statement. They are LightlyStudio's own rows: the same tables and
columns, v4 UUIDs for new samples, UTC timestamps (one per row, in the order given, a microsecond apart), and
vectors checked by its `store_embeddings`' own validation. Other databases keep LightlyStudio's resolvers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast
from uuid import UUID

import numpy as np

from lightly_assets.publish.studio.bulk_reads import arrow_of, duckdb_connection, registered
from lightly_assets.publish.studio.sample_ids import SampleId, as_text, as_uuids

if TYPE_CHECKING:
    from sqlmodel import Session


def insert_images(
    session: Session, collection_id: UUID, paths: Sequence[str], sizes: Sequence[tuple[int, int]]
) -> np.ndarray | None:
    """Add one image sample per path (its file name, width and height) to the collection, uncommitted; their
    sample ids (text), path for path. None outside DuckDB: nothing written, the caller uses LightlyStudio's
    `image_resolver.create_many`."""
    connection = duckdb_connection(session)
    if connection is None:
        return None
    import pyarrow as pa  # with DuckDB's Arrow interface

    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.collection import SampleType
    from lightly_studio.models.image import ImageTable
    from lightly_studio.models.sample import SampleTable
    from lightly_studio.resolvers import collection_resolver

    collection_resolver.check_collection_type(
        session=session, collection_id=collection_id, expected_type=SampleType.IMAGE
    )
    size = np.array(sizes, dtype=np.int32).reshape(-1, 2)
    rows = pa.table({
        "row": pa.array(np.arange(len(paths), dtype=np.int64)),
        "path": pa.array(list(paths), pa.string()),
        "name": pa.array([os.path.basename(p) for p in paths], pa.string()),
        "width": pa.array(size[:, 0]),
        "height": pa.array(size[:, 1]),
    })  # fmt: skip
    new = f"lightly_assets_new_{uuid.uuid4().hex}"
    stamp = "CAST(? AS TIMESTAMPTZ) + to_microseconds(row)"
    now = datetime.now(UTC)
    with registered(connection, rows) as given:
        connection.execute(f"CREATE TEMP TABLE {new} AS SELECT *, gen_random_uuid() AS sample_id FROM {given}")
    try:
        connection.execute(
            f"INSERT INTO {SampleTable.__tablename__} (collection_id, sample_id, created_at, updated_at) "
            f"SELECT ?, sample_id, {stamp}, {stamp} FROM {new} ORDER BY row",
            [collection_id, now, now],
        )
        connection.execute(
            f"INSERT INTO {ImageTable.__tablename__} "
            "(file_name, width, height, file_path_abs, sample_id, created_at, updated_at) "
            f"SELECT name, width, height, path, sample_id, {stamp}, {stamp} FROM {new} ORDER BY row",
            [now, now],
        )
        made = arrow_of(connection, f"SELECT CAST(sample_id AS VARCHAR) FROM {new} ORDER BY row", [])
    finally:
        with contextlib.suppress(Exception):  # after a failed insert the transaction's rollback drops it
            connection.execute(f"DROP TABLE {new}")
    return np.array(made.column(0).to_pylist(), dtype=object)


def insert_vectors(session: Session, model_id: UUID, sample_ids: Sequence[SampleId], vectors: np.ndarray) -> bool:
    """Store one vector per sample under the embedding model, uncommitted, skipping samples that already have
    one (as LightlyStudio's insert does); False outside DuckDB. Raises ValueError where LightlyStudio's
    `store_embeddings` would: not one finite row per sample, or not the model's dimension."""
    connection = duckdb_connection(session)
    if connection is None:
        return False
    import pyarrow as pa  # with DuckDB's Arrow interface

    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.embed import embedding_storage
    from lightly_studio.models.sample_embedding import SampleEmbeddingTable

    # the checks of `store_embeddings` itself (shape, finite values, the model's dimension), pinned version 1.2.0
    checked = embedding_storage._validate_and_coerce_embeddings(
        session=session,
        model_id=model_id,
        sample_ids=cast("list[UUID]", sample_ids),  # only counted there: text ids need no million UUID objects
        embeddings=vectors,
    )
    matrix = np.ascontiguousarray(checked, dtype=np.float32)
    offsets = np.arange(len(matrix) + 1, dtype=np.int64) * matrix.shape[1]
    rows = pa.table({
        "sample_id": pa.array(as_text(sample_ids), pa.string()),
        "embedding": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1))),
    })  # fmt: skip
    with registered(connection, rows) as given:
        connection.execute(
            f"INSERT OR IGNORE INTO {SampleEmbeddingTable.__tablename__} (sample_id, embedding_model_id, embedding) "
            f"SELECT CAST(sample_id AS UUID), ?, embedding FROM {given}",
            [model_id],
        )
    return True


def store_vectors(session: Session, model_id: UUID, sample_ids: Sequence[SampleId], vectors: np.ndarray) -> None:
    """Store the samples' vectors and commit: in one insert in DuckDB (the ids as text: no UUID objects for a
    million rows), else through LightlyStudio's `store_embeddings` (batches of 1,024 rows)."""
    if not insert_vectors(session, model_id, sample_ids, vectors):
        # LightlyStudio takes seconds to import: only uploads and its GUI need it
        from lightly_studio.embed import embedding_storage

        embedding_storage.store_embeddings(
            session=session, model_id=model_id, sample_ids=as_uuids(sample_ids), embeddings=vectors, show_progress=False
        )
    session.commit()
