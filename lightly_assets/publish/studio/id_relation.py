"""A long list of sample ids as a table the database joins, instead of a bound array of them.

A tag of 910,000 members written through `IN (array of ids)` took 47 s in DuckDB (12 s of it SQLAlchemy expanding
the parameters), and reading a tag's members back to compare took 13 s. In DuckDB the ids are registered on the
session's own connection as an Arrow table for the statement's lifetime; other databases keep the bound array.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from lightly_assets.publish.studio.bulk_reads import duckdb_connection, registered
from lightly_assets.publish.studio.sample_ids import SampleId, as_text, as_uuids

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy import Subquery
    from sqlmodel import Session
    from sqlmodel.sql.expression import SelectOfScalar


@contextlib.contextmanager
def id_table(session: Session, sample_ids: Sequence[SampleId]) -> Iterator[Subquery | None]:
    """A relation of one UUID column `sample_id` holding `sample_ids` (each once), while the block runs; None
    outside DuckDB."""
    raw = duckdb_connection(session)
    if raw is None:
        yield None
        return
    import pyarrow as pa  # with DuckDB's Arrow interface
    from sqlalchemy import String, Uuid, cast, column, select, table

    text = list(dict.fromkeys(as_text(sample_ids)))
    with registered(raw, pa.table({"sample_id": pa.array(text, type=pa.string())})) as name:
        ids = table(name, column("sample_id", String()))
        yield select(cast(ids.c.sample_id, Uuid()).label("sample_id")).subquery()


def in_collection(
    collection_id: UUID, sample_ids: Sequence[SampleId], ids: Subquery | None, unless_in: UUID | None = None
) -> SelectOfScalar[UUID]:
    """The query LightlyStudio's `add_sample_ids_to_tag_id` inserts from, less the members of tag `unless_in`.
    That function first counts the same query to check every id is in the collection: ours were just read from
    it, and at 900,000 ids the count took as long as the insert (47 of 102 s). With the ids as a table
    (`id_table`) the insert joins it."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.database import db_array
    from lightly_studio.models.sample import SampleTable, SampleTagLinkTable
    from sqlmodel import col, select

    query = select(SampleTable.sample_id).where(col(SampleTable.collection_id) == collection_id)
    if ids is not None:
        query = query.join(ids, ids.c.sample_id == col(SampleTable.sample_id))
    else:
        query = query.where(db_array.in_array(column=col(SampleTable.sample_id), values=as_uuids(sample_ids)))
    if unless_in is None:
        return query
    linked = select(SampleTagLinkTable.sample_id).where(
        col(SampleTagLinkTable.tag_id) == unless_in, col(SampleTagLinkTable.sample_id) == col(SampleTable.sample_id)
    )
    return query.where(~linked.exists())


def add_to_tag(session: Session, tag_id: UUID, query: SelectOfScalar[UUID]) -> None:
    """Link the samples `query` selects to the tag (one INSERT ... SELECT in the database), and commit."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    tag_resolver.add_samples_to_tag_from_query(session=session, tag_id=tag_id, sample_ids_query=query)
