"""Bulk reads and joins of a collection in DuckDB (publish/studio/bulk_reads.py, id_relation.py) against a real
LightlyStudio database file: the same vectors and paths as plain DuckDB reads, what a re-run would replace or add, what
a tag lacks."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import duckdb
import numpy as np

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


def test_the_samples_a_tag_lacks_are_found_in_the_database(tmp_path: Path) -> None:
    """`tag_samples` links only what a tag lacks: asked through the ids registered as a table (DuckDB), the same
    answer as reading the tag's links back."""
    from lightly_assets.publish.studio.steps import _not_tagged, _tagged

    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    target = StudioTarget(db_file=db, dataset_name="animals")
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    upload_dataset(target, dataset_dir, index, csv)
    with duckdb.connect(str(db), read_only=True) as con:
        tag_id, tagged = con.execute(
            "select t.tag_id, list(l.sample_id) from tag t join sampletaglinktable l using (tag_id) "
            "group by 1 order by count(*) limit 1"
        ).fetchone() or (None, [])
        untagged = [i for (i,) in con.execute("select sample_id from sample").fetchall() if i not in set(tagged)]
    assert tagged and untagged
    asked = [untagged[0], tagged[0], UUID(int=1), *tagged[1:], *untagged[1:]]
    with connected(target) as session:
        assert set(_tagged(session, tag_id)) == set(tagged)
        assert _not_tagged(session, tag_id, asked) == [untagged[0], UUID(int=1), *untagged[1:]]
        as_text = [str(i) for i in asked]  # the ids as DuckDB's bulk reads give them: the same answer, as text
        assert _not_tagged(session, tag_id, as_text) == [str(i) for i in (untagged[0], UUID(int=1), *untagged[1:])]
