"""Publishing into a real LightlyStudio database (DuckDB file), read back by SQL and over its own HTTP API (clear
errors and plain results: test_studio_errors.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from lightly_assets.publish.studio import MISSING_TAG, StudioError, StudioTarget, count_in_studio, upload_dataset
from lightly_assets_tests import REPO
from lightly_assets_tests.media import make_cats_and_dogs, make_video, shaded_image
from lightly_assets_tests.publish import STUDIO_TEST
from lightly_assets_tests.servers import free_port, get_json, http, start_gui, stop, wait_healthy
from lightly_assets_tests.tables import frame_index, image_rows, video_rows, write_csv

pytestmark = STUDIO_TEST


# ---------------------------------------------------------------------------------------------------------
# The database read back with plain DuckDB.


def stored_vectors(db: Path) -> dict[str, list[float]]:
    """file path (frames: path#frame) -> stored vector, read with plain DuckDB, not through LightlyStudio."""
    with duckdb.connect(str(db), read_only=True) as con:
        images = con.execute(
            "select i.file_path_abs, e.embedding from image i join sample_embedding e using (sample_id)"
        ).fetchall()
        frames = con.execute(
            "select v.file_path_abs || '#' || f.frame_number, e.embedding from video_frame f "
            "join video v on v.sample_id = f.parent_sample_id join sample_embedding e on e.sample_id = f.sample_id"
        ).fetchall()
    return {key: list(vector) for key, vector in images + frames}


def video_metadata(db: Path) -> dict[str, tuple[dict, dict]]:
    """video path -> (its metadata, the types LightlyStudio recorded for them), read with plain DuckDB."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select v.file_path_abs, m.data, m.metadata_schema from video v join metadata m using (sample_id)"
        ).fetchall()
    return {path: (json.loads(data), json.loads(schema)) for path, data, schema in rows}


def table_count(db: Path, table: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"select count(*) from {table}").fetchone()[0]


# ---------------------------------------------------------------------------------------------------------
# Two writer processes, then the GUI server reads it all back.

UPLOAD_SCRIPT = """
import dataclasses, json, sys
from pathlib import Path
import pandas as pd
from lightly_assets.publish.studio import StudioTarget, upload_dataset
from lightly_assets.publish.studio.database import import_studio
import_studio()
args = json.loads(sys.argv[1])
print("READY", flush=True)
target = StudioTarget(db_file=Path(args["db"]), dataset_name=args["name"])
result = upload_dataset(target, Path(args["data"]), pd.read_pickle(args["index"]), Path(args["csv"]))
print("RESULT " + json.dumps(dataclasses.asdict(result)))
"""


def embeddings2d(base: str, collection_id: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
    import pyarrow.ipc

    raw = http(f"{base}/api/collections/{collection_id}/embeddings2d/default", {"filters": filters})
    return pyarrow.ipc.open_stream(io.BytesIO(raw)).read_all().to_pylist()


@pytest.mark.e2e  # two uploading processes and the LightlyStudio GUI server
def test_two_processes_upload_then_gui_reads_everything_back(tmp_path: Path) -> None:
    data, db = tmp_path / "data", tmp_path / "studio" / "lightly_studio.db"
    db.parent.mkdir()
    make_cats_and_dogs(data / "animals")
    make_video(data / "clips" / "clip.mp4")
    indexes = {"animals": frame_index(image_rows(data / "animals")), "clips": frame_index(video_rows(data / "clips"))}
    for name, index in indexes.items():
        index.to_pickle(tmp_path / f"{name}.pkl")
        write_csv(index, tmp_path / f"{name}.csv")
    held = open(f"{db}.lock", "a")  # both writers start while the lock is taken, so they contend for it
    fcntl.flock(held.fileno(), fcntl.LOCK_EX)
    # Writer 1: another process.
    args = {"db": str(db), "name": "clips", "data": str(data / "clips")}
    args |= {"index": str(tmp_path / "clips.pkl"), "csv": str(tmp_path / "clips.csv")}
    other = subprocess.Popen(
        [sys.executable, "-c", UPLOAD_SCRIPT, json.dumps(args)],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert other.stdout.readline() == b"READY\n", other.communicate(timeout=60)[1].decode()[-3000:]
    # Writer 2: this process, in a thread, so both wait on the lock when it is released.
    target = StudioTarget(db_file=db, dataset_name="animals")
    outcome: dict[str, Any] = {}

    def write_animals() -> None:
        try:
            outcome["result"] = upload_dataset(target, data / "animals", indexes["animals"], tmp_path / "animals.csv")
        except StudioError as error:
            outcome["error"] = error

    writer = threading.Thread(target=write_animals)
    writer.start()
    time.sleep(0.5)
    held.close()
    writer.join(timeout=120)
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err.decode()[-3000:]
    clips = json.loads(out.decode().split("RESULT ", 1)[1])
    assert "error" not in outcome, outcome.get("error")
    animals = dataclasses.asdict(outcome["result"])
    assert (animals["samples"], animals["embeddings"], animals["added"], animals["unmatched"]) == (6, 6, 6, 0)
    assert (clips["samples"], clips["embeddings"], clips["videos"], clips["unmatched"]) == (10, 10, 1, 0)
    gui = f"LIGHTLY_STUDIO_ANALYTICS_ENABLED=false lightly-studio gui --host 127.0.0.1 --db-file {db}"
    assert animals["gui_command"] == gui
    assert count_in_studio(StudioTarget(db_file=db, dataset_name="animals"), "clips") == (10, 10)

    port, cache = free_port(), tmp_path / "model-cache"
    base = f"http://127.0.0.1:{port}"
    server = start_gui(animals["gui_command"], port, cache)
    try:
        wait_healthy(base, server)
        overview = {c["name"]: c for c in get_json(f"{base}/api/collections/overview")}
        assert overview["animals"]["collection_id"] == animals["collection_id"]
        assert (overview["animals"]["sample_type"], overview["animals"]["total_sample_count"]) == ("image", 6)
        assert (overview["clips"]["sample_type"], overview["clips"]["total_sample_count"]) == ("video", 1)

        image_id, video_id = animals["collection_id"], clips["collection_id"]
        tags = {t["name"]: t["tag_id"] for t in get_json(f"{base}/api/collections/{image_id}/tags")}
        assert set(tags) == {"cats", "dogs"}
        points = embeddings2d(base, image_id, {"filter_type": "image"})
        assert len(points) == 6 and all(np.isfinite([p["x"], p["y"]]).all() for p in points)
        cats = embeddings2d(base, image_id, {"filter_type": "image", "sample_filter": {"tag_ids": [tags["cats"]]}})
        assert sum(p["fulfils_filter"] for p in cats) == 3

        assert len(embeddings2d(base, video_id, {"filter_type": "video"})) == 1
        (frames,) = [c for c in get_json(f"{base}/api/collections") if c["name"] == "clips"][0]["children"]
        assert get_json(f"{base}/api/collections/{frames['collection_id']}")["total_sample_count"] == 10
        assert get_json(f"{base}/api/collections/{frames['collection_id']}/has_embeddings") is True
        frame_tags = [t["name"] for t in get_json(f"{base}/api/collections/{frames['collection_id']}/tags")]
        assert frame_tags == ["clip"]

        assert "analytics" not in get_json(f"{base}/api/features")
        # The UI's text search needs a text model; ours has none, so it answers an error and downloads nothing.
        with pytest.raises(urllib.error.HTTPError) as refused:
            http(f"{base}/api/text_embedding/for_collection/{image_id}?query_text=cat")
        assert refused.value.code == 409  # LightlyStudio: the collection's embedding space cannot answer a text query
    finally:
        stop(server)
    assert not cache.exists() or not any(cache.iterdir()), "LightlyStudio downloaded a model"


# ---------------------------------------------------------------------------------------------------------
# Re-uploads follow the folder and duplicate nothing.


def test_reupload_is_idempotent_adds_new_files_and_flags_removed_ones(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    target = StudioTarget(db_file=db, dataset_name="animals")
    index = frame_index(image_rows(dataset_dir))
    vectors = write_csv(index, csv)
    first = upload_dataset(target, dataset_dir, index, csv)
    assert (first.samples, first.embeddings, first.added, first.removed) == (6, 6, 6, 0)
    stored = stored_vectors(db)
    assert np.allclose(stored[(dataset_dir / "cats" / "1.png").as_posix()], vectors[1])

    again = upload_dataset(target, dataset_dir, index, csv)
    assert (again.samples, again.embeddings, again.added, again.removed) == (6, 6, 0, 0)
    assert again.collection_id == first.collection_id
    assert (table_count(db, "sample"), table_count(db, "sample_embedding"), table_count(db, "tag")) == (6, 6, 2)

    shaded_image(dataset_dir / "dogs" / "3.png", 250)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    grown = upload_dataset(target, dataset_dir, index, csv)
    assert (grown.samples, grown.embeddings, grown.added, grown.removed) == (7, 7, 1, 0)

    (dataset_dir / "cats" / "0.png").unlink()
    index = frame_index(image_rows(dataset_dir))
    vectors = write_csv(index, csv, seed=1)  # a new model run: every vector changes
    shrunk = upload_dataset(target, dataset_dir, index, csv)
    assert (shrunk.samples, shrunk.embeddings, shrunk.added, shrunk.removed) == (6, 6, 0, 1)
    assert count_in_studio(target, "animals") == (6, 6)
    stored = stored_vectors(db)
    assert (dataset_dir / "cats" / "0.png").as_posix() not in stored
    assert np.allclose(stored[(dataset_dir / index["filename"][2]).as_posix()], vectors[2])
    with duckdb.connect(str(db), read_only=True) as con:
        flagged = con.execute(
            "select i.file_path_abs from image i join sampletaglinktable l using (sample_id) "
            "join tag t using (tag_id) where t.name = ?",
            [MISSING_TAG],
        ).fetchall()
    assert flagged == [((dataset_dir / "cats" / "0.png").as_posix(),)]
    assert upload_dataset(target, dataset_dir, index, csv).removed == 0


def test_video_reupload_and_removal(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "clips", tmp_path / "s.db", tmp_path / "clips.csv"
    make_video(dataset_dir / "a.mp4", n_frames=10)
    make_video(dataset_dir / "b.mp4", n_frames=4)
    target = StudioTarget(db_file=db, dataset_name="clips")
    index = frame_index(video_rows(dataset_dir))
    vectors = write_csv(index, csv)
    first = upload_dataset(target, dataset_dir, index, csv)
    assert (first.samples, first.embeddings, first.videos, first.added, first.unmatched) == (14, 14, 2, 14, 0)
    assert [d.sample_type for d in first.datasets] == ["video"]
    assert np.allclose(stored_vectors(db)[f"{(dataset_dir / 'a.mp4').as_posix()}#7"], vectors[7])
    # Facts a user filters on, as numbers (LightlyStudio offers numbers as range filters, text not at all).
    video = dataset_dir / "b.mp4"
    data, types = video_metadata(db)[video.as_posix()]
    modified = dt.datetime.fromtimestamp(video.stat().st_mtime_ns // 10**9, tz=dt.UTC)
    assert data == {
        "frames": 4,
        "file_size_mb": video.stat().st_size / 1e6,
        "modified_utc": int(modified.strftime("%Y%m%d%H%M%S")),
    }
    assert types == {"frames": "integer", "file_size_mb": "float", "modified_utc": "integer"}

    again = upload_dataset(target, dataset_dir, index, csv)
    assert (again.samples, again.embeddings, again.videos, again.added, again.removed) == (14, 14, 2, 0, 0)
    assert (table_count(db, "video"), table_count(db, "video_frame")) == (2, 14)
    # One vector per frame plus one per video (the mean of its frames, for LightlyStudio's embedding view).
    assert table_count(db, "sample_embedding") == 16

    (dataset_dir / "b.mp4").unlink()
    index = frame_index(video_rows(dataset_dir))
    write_csv(index, csv)
    shrunk = upload_dataset(target, dataset_dir, index, csv)
    assert (shrunk.samples, shrunk.embeddings, shrunk.videos, shrunk.added, shrunk.removed) == (10, 10, 1, 0, 4)
    assert count_in_studio(target, "clips") == (10, 10)

    make_video(dataset_dir / "a.mp4", n_frames=6)  # rewritten in place: its frames are indexed again
    index = frame_index(video_rows(dataset_dir))
    vectors = write_csv(index, csv, seed=3)
    changed = upload_dataset(target, dataset_dir, index, csv)
    assert (changed.samples, changed.embeddings, changed.videos, changed.added, changed.unmatched) == (6, 6, 1, 6, 0)
    assert (table_count(db, "video"), table_count(db, "video_frame")) == (2, 10)  # a.mp4: 6, flagged b.mp4: 4
    assert np.allclose(stored_vectors(db)[f"{(dataset_dir / 'a.mp4').as_posix()}#5"], vectors[5])


# ---------------------------------------------------------------------------------------------------------
# A failure in the middle leaves a database that the next run completes.


def test_failure_mid_upload_is_completed_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightly_studio.core.video import add_videos
    from lightly_studio.resolvers import image_resolver, video_frame_resolver

    from lightly_assets.publish.studio import images as studio_images

    dataset_dir, db, csv = tmp_path / "mixed", tmp_path / "s.db", tmp_path / "mixed.csv"
    make_cats_and_dogs(dataset_dir)
    make_video(dataset_dir / "clip.mp4", n_frames=10)
    rows = image_rows(dataset_dir)
    index = frame_index(rows + video_rows(dataset_dir, label=len({r["label"] for r in rows})))
    write_csv(index, csv)
    target = StudioTarget(db_file=db, dataset_name="mixed")

    # Frames are written in batches of 4; the second batch fails, after one batch was committed.
    monkeypatch.setattr(add_videos, "SAMPLE_BATCH_SIZE", 4)
    real_create_many = video_frame_resolver.create_many
    calls = []

    def fail_second_batch(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected disk failure")
        return real_create_many(**kwargs)

    monkeypatch.setattr(video_frame_resolver, "create_many", fail_second_batch)
    with pytest.raises(StudioError, match=r"'mixed'.*writing videos into 'mixed \(videos\)'.*injected disk failure"):
        upload_dataset(target, dataset_dir, index, csv)
    assert (table_count(db, "video"), table_count(db, "video_frame")) == (1, 4)
    monkeypatch.setattr(video_frame_resolver, "create_many", real_create_many)

    result = upload_dataset(target, dataset_dir, index, csv)
    assert (result.samples, result.embeddings, result.videos, result.unmatched) == (16, 16, 1, 0)
    assert [(d.name, d.sample_type, d.samples) for d in result.datasets] == [
        ("mixed", "image", 6),
        ("mixed (videos)", "video", 10),
    ]
    assert (table_count(db, "video"), table_count(db, "video_frame")) == (1, 10)

    # Images: two of six are written, then the write fails; the next run adds the rest and embeds all.
    shaded_image(dataset_dir / "cats" / "3.png", 7)
    shaded_image(dataset_dir / "cats" / "4.png", 9)
    shaded_image(dataset_dir / "dogs" / "3.png", 11)
    rows = image_rows(dataset_dir)
    index = frame_index(rows + video_rows(dataset_dir, label=2))
    write_csv(index, csv)
    monkeypatch.setattr(studio_images, "insert_images", lambda *_: None)  # LightlyStudio's inserts, as outside DuckDB
    monkeypatch.setattr(studio_images, "_ROWS_PER_COMMIT", 1)  # images are committed in bulk, here one by one
    real_batch = image_resolver.create_many
    image_calls = []

    def fail_after_two(**kwargs: Any) -> Any:
        image_calls.append(1)
        if len(image_calls) == 3:
            raise OSError("injected")
        return real_batch(**kwargs)

    monkeypatch.setattr(image_resolver, "create_many", fail_after_two)
    with pytest.raises(StudioError, match="writing images into 'mixed'.*next run completes it"):
        upload_dataset(target, dataset_dir, index, csv)
    assert table_count(db, "image") == 8
    monkeypatch.setattr(image_resolver, "create_many", real_batch)
    result = upload_dataset(target, dataset_dir, index, csv)
    assert (result.samples, result.embeddings, result.added) == (19, 19, 1)
    assert count_in_studio(target, "mixed") == (19, 19)

    # In DuckDB the new images go in with one insert per table: a failure before the commit leaves none of them.
    from lightly_assets.publish.studio.bulk_writes import insert_images

    shaded_image(dataset_dir / "dogs" / "4.png", 13)
    shaded_image(dataset_dir / "dogs" / "5.png", 15)
    index = frame_index(image_rows(dataset_dir) + video_rows(dataset_dir, label=2))
    write_csv(index, csv)
    before = table_count(db, "sample"), table_count(db, "image")

    def insert_then_fail(*args: Any) -> Any:
        insert_images(*args)
        raise OSError("injected")

    monkeypatch.setattr(studio_images, "insert_images", insert_then_fail)
    with pytest.raises(StudioError, match="writing images into 'mixed'.*next run completes it"):
        upload_dataset(target, dataset_dir, index, csv)
    assert (table_count(db, "sample"), table_count(db, "image")) == before
    monkeypatch.setattr(studio_images, "insert_images", insert_images)
    result = upload_dataset(target, dataset_dir, index, csv)
    assert (result.samples, result.embeddings, result.added) == (21, 21, 2)
    assert (table_count(db, "sample"), table_count(db, "image")) == (before[0] + 2, before[1] + 2)
