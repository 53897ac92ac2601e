"""A collection's stored vectors read as one matrix, for comparing a re-run's vectors with what is stored.

LightlyStudio's resolver returns one ORM row per vector: a million rows took 34 s in DuckDB, most of it building
UUIDs and per-row arrays. In DuckDB the same query is read through Arrow as one table (~2.5 s); on PostgreSQL the
resolver already reads pgvector's binary form, and we keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sqlmodel import Session


@dataclass(frozen=True)
class StoredVectors:
    """Sample ids (canonical UUID text) and their vectors, row for row."""

    ids: pd.Index
    matrix: np.ndarray


def read_stored(session: Session, collection_id: UUID, model_id: UUID) -> StoredVectors | None:
    """Every vector of `model_id` stored for the collection's samples; None where this fast read does not apply
    (not DuckDB, or vectors of different lengths): then the caller reads them through LightlyStudio."""
    if session.get_bind().dialect.name != "duckdb":
        return None
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTable
    from lightly_studio.models.sample_embedding import SampleEmbeddingTable

    sql = (
        f"SELECT e.sample_id, e.embedding FROM {SampleEmbeddingTable.__tablename__} e "
        f"JOIN {SampleTable.__tablename__} s ON e.sample_id = s.sample_id "
        "WHERE s.collection_id = ? AND e.embedding_model_id = ?"
    )
    raw: Any = session.connection().connection.dbapi_connection  # duckdb_engine's wrapper of the DuckDB connection
    result = raw.execute(sql, [collection_id, model_id])
    to_table = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table  # the older name before 1.4
    return _as_matrix(to_table())


def _as_matrix(table: Any) -> StoredVectors | None:
    import pyarrow as pa  # with the Arrow table above

    if not pa.types.is_string(table.schema.field("sample_id").type):
        return None  # DuckDB gives UUIDs as text; anything else is read through LightlyStudio
    vectors = table.column("embedding").combine_chunks()
    ids = pd.Index(table.column("sample_id").to_pylist(), dtype=object)
    if len(vectors) == 0:
        return StoredVectors(ids, np.zeros((0, 0), dtype=np.float32))
    lengths = vectors.value_lengths().to_numpy(zero_copy_only=False)
    if vectors.null_count or lengths.min() != lengths.max():
        return None
    values = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return StoredVectors(ids, values.reshape(len(vectors), int(lengths[0])))


def differing(stored: StoredVectors, wanted: dict[UUID, np.ndarray]) -> tuple[list[UUID], np.ndarray] | None:
    """(Wanted sample ids whose stored vector differs, `np.allclose` at atol 1e-6; which wanted ids have their
    vector stored, a mask in `wanted`'s order). None when the wanted vectors are not of one length."""
    keys = list(wanted)
    at = pd.Index([str(key) for key in keys]).get_indexer(stored.ids)
    rows = np.flatnonzero(at >= 0)
    positions = at[rows]
    try:
        want = np.stack([wanted[keys[i]] for i in positions]) if len(positions) else None
    except ValueError:
        return None
    have = stored.matrix[rows]
    if want is None or want.shape != have.shape:
        same = np.zeros(len(positions), dtype=bool)
    else:
        want = want.astype(np.float32, copy=False)
        same = (have == want).all(axis=1)  # a re-run's vectors are mostly the very values stored
        near = np.flatnonzero(~same)
        same[near] = np.isclose(have[near], want[near], atol=1e-6).all(axis=1)
    done = np.zeros(len(keys), dtype=bool)
    done[positions[same]] = True
    return [keys[i] for i in positions[~same]], done
