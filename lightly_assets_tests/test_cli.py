"""`lightly-assets run`: the whole chain on a dataset, on the instance in DAGSTER_HOME, with a summary and exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    build_sensor_context,
)
from lightly.utils.io import check_embeddings, load_embeddings

from lightly_assets.cli import NEW_INSTANCE_YAML, _prepare_home, main
from lightly_assets.dataset.roots import fingerprint
from lightly_assets.definitions import defs
from lightly_assets.defs.metadata import FACTS, INLINE_MARKDOWN_LIMIT
from lightly_assets.defs.resources import StorageResource
from lightly_assets.defs.sensors import folder_sensor
from lightly_assets_tests import EXAMPLE_DATA, REPO

dataset_folders_sensor = folder_sensor()


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    paths = {"home": tmp_path / "home", "data": tmp_path / "data", "out": tmp_path / "out"}
    paths["data"].mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(paths["home"]))
    monkeypatch.setenv("LIGHTLY_ASSETS_DATA_DIR", str(paths["data"]))
    monkeypatch.setenv("LIGHTLY_ASSETS_OUTPUT_DIR", str(paths["out"]))
    return paths


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightly_assets", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.mark.e2e  # the real command in a subprocess (a whole chain takes ~20 s)
def test_run_materializes_the_chain_and_prints_a_summary(env) -> None:
    shutil.copytree(EXAMPLE_DATA / "images_weak_labels", env["data"] / "labels")
    out = run_cli("run")
    assert out.returncode == 0, out.stdout + out.stderr
    csv = env["out"] / "labels" / "embeddings.csv"
    assert "[OK] labels" in out.stdout
    assert f"csv: {csv}" in out.stdout.replace(str(csv.resolve()), str(csv))
    assert "samples: 13, dimension: 32, reused from cache: 0" in out.stdout
    assert "browse: lightly-assets browse labels" in out.stdout  # where to browse it
    assert "open: labels: http://127.0.0.1:8001/datasets/" in out.stdout
    assert "weights: RANDOM (pretrained download failed: http://127.0.0.1:9/" in out.stdout  # tests are offline
    assert "kNN agreement with weak labels: 0." in out.stdout and "13 samples" in out.stdout
    assert "embeddings.trained_weights=warn" in out.stdout and "embeddings.knn_better_than_chance=" in out.stdout
    check_embeddings(str(csv))
    embeddings, labels, filenames = load_embeddings(str(csv))
    assert embeddings.shape == (13, 32) and np.isfinite(embeddings).all()
    assert filenames[0] == "cats/chelsea-0.jpg" and sorted(set(labels)) == [0, 1, 2]
    assert "usage statistics" not in out.stderr  # Dagster's telemetry notice: off in the instance the CLI created
    assert (env["home"] / "dagster.yaml").read_text() == NEW_INSTANCE_YAML
    with DagsterInstance.get() as instance:  # the run is on the instance the UI reads
        runs = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
        assert [r.dagster_run.tags.get("dagster/partition") for r in runs] == ["labels"]
        metadata = latest_metadata(instance, "embeddings_csv", "labels")
        assert metadata["csv"].value == str(csv.resolve()) and "path" not in metadata  # no IO manager pickle
        assert metadata["rows"].value == 13 and metadata["dagster/size_bytes"].value == csv.stat().st_size
        assert [r.data["filenames"] for r in metadata["preview"].value.records][:2] == filenames[:2]
        assert metadata["map_full"].value.startswith("![labels: 13 samples, ")
        assert "data:image/png;base64," in metadata["map_full"].value
        assert len(metadata["map"].value) < INLINE_MARKDOWN_LIMIT  # the thumbnail shows inline in Dagster's UI
        n = np.bincount(labels)
        legend = f"**blue** cats ({n[0]}) · **orange** space ({n[1]}) · **green** textures ({n[2]})"
        assert metadata["map_legend"].value == legend
        for asset in ("file_index", "frame_index", "embeddings", "embeddings_csv", "duplicates", "selection"):
            undescribed = set(latest_metadata(instance, asset, "labels")) - set(FACTS) - {"dagster/column_schema"}
            assert asset in ("duplicates", "selection") or not undescribed, (asset, undescribed)  # curation's own
        upload = latest_metadata(instance, "uploaded_dataset", "labels")
        assert not set(upload) - set(FACTS)
        assert upload["target"].value == str((env["out"] / "lightly_studio.db").resolve())
        assert upload["browse"].value == "lightly-assets browse labels"
        assert "/datasets/" in upload["open"].value and "CLIP" in upload["text_search"].value
        recorded = latest_metadata(instance, "file_index", "labels")["fingerprint"].value
        assert recorded == fingerprint(env["data"] / "labels")
        # `dagster dev` started now: its sensor's first tick sees the folder already materialized (not "still
        # copying?"), so no run, then or later
        storage = {"storage": StorageResource(data_dir=str(env["data"]))}
        definitions = defs()
        context = build_sensor_context(instance=instance, definitions=definitions, resources=storage)
        first = dataset_folders_sensor(context)
        assert not first.run_requests and "already materialized" in first.skip_reason.skip_message
        assert "still copying" not in first.skip_reason.skip_message
        context = build_sensor_context(
            instance=instance, cursor=first.cursor, definitions=definitions, resources=storage
        )
        second = dataset_folders_sensor(context)
        assert not second.run_requests and "unchanged since their last run" in second.skip_reason.skip_message
    before = csv.read_bytes()
    again = run_cli("run", "labels")  # nothing changed: every vector comes from the cache, same CSV
    assert again.returncode == 0 and "reused from cache: 13" in again.stdout
    assert csv.read_bytes() == before


def latest_metadata(instance: DagsterInstance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.metadata


@pytest.mark.e2e  # the real command in a subprocess (a whole chain takes ~20 s)
def test_failing_run_exits_non_zero_and_names_the_folder(env) -> None:
    (env["data"] / "broken").mkdir()
    (env["data"] / "broken" / "notes.txt").write_text("no images here")
    out = run_cli("run", "broken")
    assert out.returncode == 1
    assert "[FAILED] broken" in out.stdout
    assert "broken: no usable image or video file (notes.txt: unsupported file type)" in out.stdout


def test_unknown_dataset_and_missing_root(env, tmp_path: Path, capsys) -> None:
    """Argument errors are found before any run starts: in-process, in milliseconds."""
    assert main(["run", "nope"]) == 2 and "no dataset folder nope" in capsys.readouterr().err
    assert main(["run", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "data root does not exist" in capsys.readouterr().err
    (env["data"] / ".hidden").mkdir()
    assert main(["run", ".hidden"]) == 2 and "hidden folders" in capsys.readouterr().err
    assert main(["run"]) == 2 and "no dataset folder under" in capsys.readouterr().err
    assert not env["home"].exists()  # no instance was touched


@pytest.mark.e2e  # the real command in a subprocess (a whole chain takes ~20 s)
def test_bucket_target_is_chosen_by_environment(env, tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(EXAMPLE_DATA / "images_flat", env["data"] / "flat")
    bucket = tmp_path / "bucket"
    monkeypatch.setenv("LIGHTLY_ASSETS_TARGET", "bucket")
    monkeypatch.setenv("LIGHTLY_ASSETS_BUCKET_URL", f"file://{bucket}")
    chosen = tmp_path / "chosen"  # the option beats LIGHTLY_ASSETS_OUTPUT_DIR
    out = run_cli("run", "flat", "--output-dir", str(chosen))
    assert out.returncode == 0, out.stdout + out.stderr
    published = bucket / "flat" / ".lightly" / "embeddings" / "flat.csv"
    assert published.read_bytes() == (chosen / "flat" / "embeddings.csv").read_bytes()
    assert not (env["out"] / "flat").exists()
    assert "uploaded_dataset.target_counts_match_csv=pass" in out.stdout


@pytest.mark.e2e  # the real command in a subprocess (a whole chain takes ~20 s)
def test_custom_embeddings_are_appended_and_renumbered(env) -> None:
    dataset = env["data"] / "flat"
    shutil.copytree(EXAMPLE_DATA / "images_flat", dataset)
    names = sorted(p.name for p in dataset.iterdir())
    (dataset / ".lightly").mkdir()
    rows = "\n".join(f"{n},{i}.5,-{i}" for i, n in enumerate(names))
    (dataset / ".lightly" / "custom_embeddings.csv").write_text(f"filenames,brightness,sharpness\n{rows}\n")
    out = run_cli("run", "flat")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dimension: 34" in out.stdout
    csv = env["out"] / "flat" / "embeddings.csv"
    header = csv.read_text().splitlines()[0].split(",")
    assert header == ["filenames", *[f"embedding_{i}" for i in range(34)], "labels"]
    embeddings, _, filenames = load_embeddings(str(csv))
    assert filenames == names
    assert embeddings[:, 32:].tolist() == [[i + 0.5, -i] for i in range(len(names))]


@pytest.mark.e2e  # the real command in a subprocess (a whole chain takes ~20 s)
def test_corrupt_files_are_skipped_and_a_failed_run_keeps_the_good_csv(env) -> None:
    dataset = env["data"] / "flat"
    shutil.copytree(EXAMPLE_DATA / "images_flat", dataset)
    good = (dataset / "img-0.jpg").read_bytes()
    (dataset / "half.jpg").write_bytes(good[: len(good) // 2])  # header intact, data cut
    (dataset / "text.png").write_text("not a png")
    out = run_cli("run", "flat")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "samples: 8," in out.stdout and "embeddings.all_samples_embedded=warn" in out.stdout
    assert "uploaded_dataset.target_counts_match_csv=pass" in out.stdout
    csv = env["out"] / "flat" / "embeddings.csv"
    before = csv.read_bytes()
    assert b"half.jpg" not in before and b"text.png" not in before
    for image in dataset.iterdir():  # now nothing in the dataset can be decoded
        image.write_bytes(b"garbage")
    out = run_cli("run", "flat")
    assert out.returncode == 1
    assert "no sample could be decoded" in out.stdout
    assert csv.read_bytes() == before


@pytest.mark.parametrize("existing", ["telemetry:\n  enabled: true\n", ""])
def test_the_users_instance_settings_are_kept(tmp_path: Path, monkeypatch, existing: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(existing)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert _prepare_home() == home.resolve()
    assert (home / "dagster.yaml").read_text() == existing


def test_runs_of_a_killed_cli_process_are_failed_by_the_next_one(tmp_path: Path) -> None:
    """A run left STARTED by a killed `lightly-assets run` (today's hidden tags, or an earlier version's) is marked
    failed by the next CLI run on the host; a run of a live process is left alone."""
    import os
    import socket

    from lightly_assets.defs.jobs import lightly_assets_job
    from lightly_assets.runner import HOST_TAG, LEGACY_TAGS, PID_TAG, fail_orphaned_runs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    job = defs().resolve_job_def(lightly_assets_job.name)
    with DagsterInstance.ephemeral() as instance:
        runs = {
            name: instance.create_run_for_job(job, status=DagsterRunStatus.STARTED, tags=tags).run_id
            for name, tags in {
                "killed": {PID_TAG: str(dead.pid), HOST_TAG: host},
                "killed_earlier_version": {LEGACY_TAGS[0][0]: str(dead.pid), LEGACY_TAGS[0][1]: host},
                "alive": {PID_TAG: str(os.getppid()), HOST_TAG: host},
            }.items()
        }
        assert sorted(fail_orphaned_runs(instance)) == sorted([runs["killed"], runs["killed_earlier_version"]])
        status = {name: instance.get_run_by_id(run_id).status for name, run_id in runs.items()}
        assert status == {
            "killed": DagsterRunStatus.FAILURE,
            "killed_earlier_version": DagsterRunStatus.FAILURE,
            "alive": DagsterRunStatus.STARTED,
        }
        assert PID_TAG.startswith(".dagster/") and HOST_TAG.startswith(".dagster/")  # hidden in Dagster's UI
