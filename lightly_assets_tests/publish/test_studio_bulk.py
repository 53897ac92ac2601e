"""Bulk reads, joins and writes of a collection in DuckDB (publish/studio/bulk_reads.py, id_relation.py,
bulk_writes.py) against a real LightlyStudio database file: the same vectors and paths as plain DuckDB reads, what a
re-run would replace or add, what a tag lacks, the same rows as LightlyStudio's own inserts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import duckdb
import numpy as np
import pytest

from lightly_assets.publish.studio import StudioTarget, upload_dataset
from lightly_assets.publish.studio.bulk_reads import differing, match_paths, read_paths, read_stored
from lightly_assets.publish.studio.database import connected
from lightly_assets_tests.media import make_cats_and_dogs
from lightly_assets_tests.publish import STUDIO_TEST
from lightly_assets_tests.tables import frame_index, image_rows, write_csv

pytestmark = STUDIO_TEST


def test_stored_vectors_read_as_a_matrix_and_compared(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    target = StudioTarget(db_file=db, dataset_name="animals")
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    collection_id = UUID(upload_dataset(target, dataset_dir, index, csv).collection_id)
    with duckdb.connect(str(db), read_only=True) as con:
        plain = dict(con.execute("select sample_id::varchar, embedding from sample_embedding").fetchall())
        (model_id,) = con.execute("select distinct embedding_model_id from sample_embedding").fetchone() or (None,)
    with duckdb.connect(str(db), read_only=True) as con:
        plain_paths = dict(con.execute("select file_path_abs, sample_id from image").fetchall())
    with connected(target) as session:
        from lightly_studio.models.image import ImageTable

        stored = read_stored(session, collection_id, model_id)
        paths = read_paths(session, collection_id, ImageTable)
        assert paths is not None and dict(zip(paths.paths, map(UUID, paths.ids), strict=True)) == plain_paths
        assert paths.lookup([*plain_paths, "/nowhere.jpg"]).tolist() == [*map(str, plain_paths.values()), None]
        asked = [*list(plain_paths)[:4], "/nowhere.jpg"]  # joined in DuckDB: ids, and the files not asked for
        matched = match_paths(session, collection_id, ImageTable, asked)
        assert matched is not None and matched.ids.tolist() == [*(str(plain_paths[a]) for a in asked[:4]), None]
        assert sorted(matched.unlisted) == sorted(str(plain_paths[a]) for a in list(plain_paths)[4:])
        elsewhere = read_paths(session, UUID(int=3), ImageTable)
        assert len(plain_paths) == 6 and elsewhere is not None and len(elsewhere.paths) == 0
    assert stored is not None and len(stored.ids) == len(plain) == 6
    for sample_id, row in zip(stored.ids, stored.matrix, strict=True):
        assert np.array_equal(row, np.asarray(plain[sample_id], dtype=np.float32))

    ids = [UUID(i) for i in stored.ids]
    wanted = {sample_id: row.copy() for sample_id, row in zip(ids, stored.matrix, strict=True)}
    wanted[ids[1]] = wanted[ids[1]] + 1e-3  # a changed vector
    wanted[ids[2]] = wanted[ids[2]] + 1e-7  # within the tolerance: kept
    del wanted[ids[3]]  # stored, no longer wanted: left to the missing tag
    new = UUID(int=7)
    wanted[new] = np.zeros(stored.matrix.shape[1], dtype=np.float32)  # not stored yet
    keys = list(wanted)
    for vectors in (list(wanted.values()), np.stack(list(wanted.values()))):  # one per sample, or a matrix
        compared = differing(stored, [str(k) for k in keys[:2]] + keys[2:], vectors)  # UUIDs or their text
        assert compared is not None
        stale, done = compared
        assert stale.tolist() == [keys.index(ids[1])]
        assert dict(zip(keys, done.tolist(), strict=True)) == {i: i not in (ids[1], new) for i in wanted}

    wider = [np.zeros(stored.matrix.shape[1] + 1, dtype=np.float32) for _ in ids]
    compared = differing(stored, ids, wider)  # another network's width: every stored vector is replaced
    assert compared is not None
    assert sorted(compared[0].tolist()) == list(range(len(ids))) and not compared[1].any()


def test_the_samples_a_tag_lacks_are_found_in_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tag_samples` links only what a tag lacks: the query it inserts from selects, of the ids asked, those of the
    collection not linked yet, whether the ids are joined as a table (DuckDB) or bound as an array."""
    from lightly_assets.publish.studio import steps
    from lightly_assets.publish.studio.id_relation import id_table, in_collection
    from lightly_assets.publish.studio.steps import tag_samples

    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    target = StudioTarget(db_file=db, dataset_name="animals")
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    collection_id = UUID(upload_dataset(target, dataset_dir, index, csv).collection_id)
    with duckdb.connect(str(db), read_only=True) as con:
        tag_id, name, tagged = con.execute(
            "select t.tag_id, t.name, list(l.sample_id) from tag t join sampletaglinktable l using (tag_id) "
            "group by 1, 2 order by count(*) limit 1"
        ).fetchone() or (None, None, [])
        untagged = [i for (i,) in con.execute("select sample_id from sample").fetchall() if i not in set(tagged)]
    assert tagged and len(untagged) > 1
    asked = [untagged[0], tagged[0], UUID(int=1), *tagged[1:], *untagged[1:]]
    with connected(target) as session:
        for ids_of in (asked, [str(i) for i in asked]):  # UUIDs, or their text as DuckDB's bulk reads give them
            with id_table(session, ids_of) as table:
                assert table is not None
                for joined in (table, None):
                    lacking = session.exec(in_collection(collection_id, ids_of, joined, unless_in=tag_id)).all()
                    assert sorted(lacking) == sorted(untagged)
        tag_samples(session, collection_id, {name: [*tagged, untagged[0]]})  # ids joined as a table
        monkeypatch.setattr(steps, "id_table", _no_table)  # as outside DuckDB: the ids lacking are bound
        tag_samples(session, collection_id, {name: [untagged[1], *tagged, untagged[0]]})
    with duckdb.connect(str(db), read_only=True) as con:
        linked = con.execute("select sample_id from sampletaglinktable where tag_id = ?", [tag_id]).fetchall()
    assert sorted(i for (i,) in linked) == sorted([*tagged, *untagged[:2]])


@contextlib.contextmanager
def _no_table(*_: object) -> Iterator[None]:
    yield None


def test_new_images_and_vectors_are_written_as_lightly_studio_writes_them(tmp_path: Path) -> None:
    """The bulk writes (DuckDB) against LightlyStudio's own resolvers on the same files: the same tables, columns
    and values (new ids, timestamps aside); ids returned path for path; a vector already stored is kept; the
    checks of `store_embeddings` hold."""
    from lightly_studio.embed import embedding_storage
    from lightly_studio.models.image import ImageCreate
    from lightly_studio.resolvers import image_resolver

    from lightly_assets.publish.studio.bulk_writes import insert_images, insert_vectors

    dataset_dir, csv = tmp_path / "animals", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    tables = {}
    for way in ("resolvers", "bulk"):
        db = tmp_path / f"{way}.db"
        target = StudioTarget(db_file=db, dataset_name="animals")
        result = upload_dataset(target, dataset_dir, index, csv)  # the collection, its model and six images
        collection_id, paths = UUID(result.collection_id), [str(tmp_path / f"new-{i}.jpg") for i in range(3)]
        with connected(target) as session:
            model_id = session.exec(_models()).one()
            if way == "bulk":
                ids = insert_images(session, collection_id, paths, [(40, 30), (41, 31), (42, 32)])
                assert ids is not None and len(set(ids)) == 3
                made = [UUID(i) for i in ids]
                assert insert_vectors(session, model_id, made, np.eye(3, 32, dtype=np.float32))
                again = np.ones((3, 32), dtype=np.float32)
                assert insert_vectors(session, model_id, made[:1], again[:1])  # stored already: kept
                with pytest.raises(ValueError, match="dimension"):
                    insert_vectors(session, model_id, made, np.zeros((3, 8), dtype=np.float32))
                with pytest.raises(ValueError, match="NaN"):
                    insert_vectors(session, model_id, made, np.full((3, 32), np.nan, dtype=np.float32))
            else:
                made = image_resolver.create_many(
                    session=session,
                    collection_id=collection_id,
                    samples=[
                        ImageCreate(file_name=Path(p).name, file_path_abs=p, width=40 + i, height=30 + i)
                        for i, p in enumerate(paths)
                    ],
                )
                embedding_storage.store_embeddings(
                    session=session, model_id=model_id, sample_ids=made, embeddings=np.eye(3, 32, dtype=np.float32)
                )
            session.commit()
        tables[way] = _new_rows(db, made, {collection_id: "collection", model_id: "model"})
    assert tables["bulk"] == tables["resolvers"]


def _models():
    from lightly_studio.models.embedding_model import EmbeddingModelTable
    from sqlmodel import select

    return select(EmbeddingModelTable.embedding_model_id)


def _new_rows(db: Path, made: list[UUID], names: dict[UUID, str]) -> dict[str, list[tuple]]:
    """Each table's rows for the new samples, in a form both databases share: a sample id as its place in `made`,
    the collection's and the model's ids by their `names`, a timestamp as whether it is within a minute of now."""
    place: dict[object, object] = {**names, **{sample_id: at for at, sample_id in enumerate(made)}}
    rows = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ("sample", "image", "sample_embedding"):
            found = con.execute(f"select * from {table} where sample_id in (select unnest(?))", [made])
            columns = [d[0] for d in found.description]
            rows[table] = sorted(
                tuple(_canonical(c, v, place) for c, v in zip(columns, row, strict=True)) for row in found.fetchall()
            )
    return rows


def _canonical(column: str, value: object, place: dict[object, object]) -> object:
    if column.endswith("_id"):
        return place.get(value, value)
    if isinstance(value, datetime):
        return abs(value - datetime.now(UTC)) < timedelta(minutes=1)
    return value
