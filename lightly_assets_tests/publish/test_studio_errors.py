"""Publishing into LightlyStudio: clear one-line errors (a stale CSV, a held lock, a database open elsewhere, an
unreachable PostgreSQL whose URL stays secret), no analytics, and plain results."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_assets.publish.studio import StudioError, StudioTarget, upload_dataset
from lightly_assets.publish.studio.browse import QuietAnalytics404, gui_base_url, links, quiet_logs
from lightly_assets_tests.media import make_cats_and_dogs
from lightly_assets_tests.publish import STUDIO_TEST
from lightly_assets_tests.servers import free_port
from lightly_assets_tests.tables import frame_index, image_rows, write_csv

pytestmark = STUDIO_TEST


# ---------------------------------------------------------------------------------------------------------
# Clear errors.


def test_csv_that_does_not_match_frame_index_is_refused_before_touching_the_database(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index.iloc[:5], csv)
    with pytest.raises(StudioError, match=r"'animals'.*animals\.csv does not match frame_index.*dogs/2\.png"):
        upload_dataset(StudioTarget(db_file=db, dataset_name="animals"), dataset_dir, index, csv)
    csv.write_text("filenames,labels\na.png,0\n")
    with pytest.raises(StudioError, match="is not a Lightly embeddings CSV"):
        upload_dataset(StudioTarget(db_file=db, dataset_name="animals"), dataset_dir, index, csv)
    assert not db.exists()


def test_a_held_lock_times_out_with_a_clear_message(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    target = StudioTarget(db_file=db, dataset_name="animals", lock_timeout_s=0.3)
    with open(tmp_path / "s.db.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StudioError, match=r"being written by another upload .*s\.db\.lock"):
            upload_dataset(target, dataset_dir, index, csv)
    assert upload_dataset(target, dataset_dir, index, csv).samples == 6


def test_a_database_open_in_another_process_gives_a_clear_message(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    target = StudioTarget(db_file=db, dataset_name="animals")
    upload_dataset(target, dataset_dir, index, csv)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"open\n"
        with pytest.raises(StudioError, match="another process has it open .*lightly-studio gui"):
            upload_dataset(target, dataset_dir, index, csv)
    finally:
        holder.communicate(b"")
    assert upload_dataset(target, dataset_dir, index, csv).added == 0


def test_postgres_url_stays_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset_dir, csv = tmp_path / "animals", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    monkeypatch.setenv("STUDIO_TEST_DB_URL", f"postgresql://studio:hunter2secret@127.0.0.1:{free_port()}/studio")
    target = StudioTarget(db_url_env="STUDIO_TEST_DB_URL", dataset_name="animals")
    assert "hunter2" not in target.describe() + repr(target)
    assert (
        target.gui_command()
        == 'LIGHTLY_STUDIO_ANALYTICS_ENABLED=false lightly-studio gui --host 127.0.0.1 --db-url "$STUDIO_TEST_DB_URL"'
    )
    with pytest.raises(StudioError, match="'animals': cannot open postgresql URL from \\$STUDIO_TEST_DB_URL") as caught:
        upload_dataset(target, dataset_dir, index, csv)
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_lightly_studio_runs_without_analytics() -> None:
    from lightly_studio.analytics import tracking
    from lightly_studio.dataset import env

    assert env.LIGHTLY_STUDIO_ANALYTICS_ENABLED is False
    assert isinstance(tracking._get_tracker(), tracking.NoOpTracker)


def test_target_needs_exactly_one_database() -> None:
    with pytest.raises(StudioError, match="exactly one of db_file and db_url_env"):
        StudioTarget(dataset_name="animals")
    with pytest.raises(StudioError, match="exactly one"):
        StudioTarget(db_file=Path("a.db"), db_url_env="X", dataset_name="animals")


def test_result_is_plain_data(tmp_path: Path) -> None:
    dataset_dir, db, csv = tmp_path / "animals", tmp_path / "s.db", tmp_path / "animals.csv"
    make_cats_and_dogs(dataset_dir)
    index = frame_index(image_rows(dataset_dir))
    write_csv(index, csv)
    result = upload_dataset(StudioTarget(db_file=db, dataset_name="animals"), dataset_dir, index, csv)
    assert json.loads(json.dumps(dataclasses.asdict(result)))["samples"] == 6
    assert result.embeddings == 6 and result.target == f"duckdb:{db}"
    assert shlex.split(result.gui_command)[-2:] == ["--db-file", str(db)]
    (dataset,) = result.datasets
    urls = links(result.datasets, gui_base_url(env={}))
    assert urls == {"animals": f"http://127.0.0.1:8001/datasets/{dataset.collection_id}/image/{dataset.collection_id}"}
    assert gui_base_url(env={"LIGHTLY_STUDIO_HOST": "127.0.0.1", "LIGHTLY_STUDIO_PORT": "9"}) == "http://127.0.0.1:9"


def test_analytics_404_is_filtered_and_other_errors_are_kept() -> None:
    import logging

    quiet_logs()
    quiet_logs()  # idempotent
    log = logging.getLogger("lightly_studio.api.exceptions")
    assert len([f for f in log.filters if isinstance(f, QuietAnalytics404)]) == 1

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("lightly_studio.api.exceptions", logging.ERROR, __file__, 1, message, None, None)

    assert not log.filter(record("Server Error 404: Usage tracking is disabled."))
    assert log.filter(record("Server Error 404: Sample not found."))
