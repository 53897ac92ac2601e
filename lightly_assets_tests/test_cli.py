"""`lightly-assets run`: the whole chain on a dataset, on the instance in DAGSTER_HOME, with a summary and exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from lightly.utils.io import check_embeddings, load_embeddings

from lightly_assets_tests.conftest import EXAMPLE_DATA, REPO


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
        [sys.executable, "-m", "lightly_assets.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_run_materializes_the_chain_and_prints_a_summary(env) -> None:
    shutil.copytree(EXAMPLE_DATA / "images_weak_labels", env["data"] / "labels")
    out = run_cli("run")
    assert out.returncode == 0, out.stdout + out.stderr
    csv = env["out"] / "labels" / "embeddings.csv"
    assert "[OK] labels" in out.stdout
    assert f"csv: {csv}" in out.stdout.replace(str(csv.resolve()), str(csv))
    assert "samples: 13, dimension: 32, reused from cache: 0" in out.stdout
    assert "lightly-studio" in out.stdout  # where to browse it
    assert "weights: RANDOM (pretrained download failed: http://127.0.0.1:9/" in out.stdout  # tests are offline
    assert "kNN agreement with weak labels: 0." in out.stdout and "13 samples" in out.stdout
    assert "embeddings.trained_weights=warn" in out.stdout and "embeddings.knn_better_than_chance=" in out.stdout
    check_embeddings(str(csv))
    embeddings, labels, filenames = load_embeddings(str(csv))
    assert embeddings.shape == (13, 32) and np.isfinite(embeddings).all()
    assert filenames[0] == "cats/chelsea-0.jpg" and sorted(set(labels)) == [0, 1, 2]
    with DagsterInstance.get() as instance:  # the run is on the instance the UI reads
        runs = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
        assert [r.dagster_run.tags.get("dagster/partition") for r in runs] == ["labels"]
    before = csv.read_bytes()
    again = run_cli("run", "labels")  # nothing changed: every vector comes from the cache, same CSV
    assert again.returncode == 0 and "reused from cache: 13" in again.stdout
    assert csv.read_bytes() == before


def test_failing_run_exits_non_zero_and_names_the_folder(env) -> None:
    (env["data"] / "broken").mkdir()
    (env["data"] / "broken" / "notes.txt").write_text("no images here")
    out = run_cli("run", "broken")
    assert out.returncode == 1
    assert "[FAILED] broken" in out.stdout
    assert "broken: no usable image or video file (notes.txt: unsupported file type)" in out.stdout


def test_unknown_dataset_and_missing_root(env, tmp_path: Path) -> None:
    out = run_cli("run", "nope")
    assert out.returncode == 2 and "no dataset folder nope" in out.stderr
    out = run_cli("run", "--data-dir", str(tmp_path / "missing"))
    assert out.returncode == 2 and "data root does not exist" in out.stderr


def test_bucket_target_is_chosen_by_environment(env, tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(EXAMPLE_DATA / "images_flat", env["data"] / "flat")
    bucket = tmp_path / "bucket"
    monkeypatch.setenv("LIGHTLY_ASSETS_TARGET", "bucket")
    monkeypatch.setenv("LIGHTLY_ASSETS_BUCKET_URL", f"file://{bucket}")
    out = run_cli("run", "flat")
    assert out.returncode == 0, out.stdout + out.stderr
    published = bucket / "flat" / ".lightly" / "embeddings" / "flat.csv"
    assert published.read_bytes() == (env["out"] / "flat" / "embeddings.csv").read_bytes()
    assert "uploaded_dataset.target_counts_match_csv=pass" in out.stdout


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
