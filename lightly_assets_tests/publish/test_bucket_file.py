"""Bucket datasource publishing to a local folder (`file://`): atomic and idempotent, bad input refused before
anything is written, secrets never shown, curation files kept (the S3 server tests: test_bucket.py)."""

from __future__ import annotations

import json
import os
import traceback

import pandas as pd
import pytest

from lightly_assets.publish.bucket import (
    MANIFEST_KEY,
    BucketError,
    BucketTarget,
    publish_curation_files,
    publish_to_bucket,
)
from lightly_assets_tests.media import make_image
from lightly_assets_tests.publish.bucket_data import (
    ACCESS_KEY,
    IMAGES,
    SECRET,
    assert_no_secret,
    expected_keys,
)


def test_file_target_is_atomic_and_idempotent(tmp_path, dataset, monkeypatch):
    bucket = tmp_path / "bucket"
    target = BucketTarget(url=bucket.as_uri())
    first = dataset.publish(target)
    root = bucket / "pets"
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == expected_keys(dataset)
    assert (root / ".lightly/embeddings/pets.csv").read_bytes() == dataset.csv.read_bytes()
    assert first.embeddings == first.samples == len(dataset.frame_index)
    assert dataset.publish(target).files_written == ()

    # A failing rename must leave the published CSV as it was and no temporary file behind.
    old_csv = (root / ".lightly/embeddings/pets.csv").read_bytes()
    (dataset.root / "dogs/sub/d.png").unlink()
    dataset.refresh()

    def broken_replace(src, dst):
        if str(dst).endswith(".csv"):
            raise OSError(28, "No space left on device")
        return os.rename(src, dst)

    monkeypatch.setattr("lightly_assets.publish.bucket.session.os.replace", broken_replace)
    with pytest.raises(BucketError, match="writing .lightly/embeddings/pets.csv failed"):
        dataset.publish(target)
    assert (root / ".lightly/embeddings/pets.csv").read_bytes() == old_csv
    assert not [p for p in root.rglob("*") if p.name.endswith(".lightly-assets-tmp")]

    monkeypatch.undo()
    result = dataset.publish(target)
    assert (root / ".lightly/embeddings/pets.csv").read_bytes() == dataset.csv.read_bytes()
    assert "dogs/sub/d.png" in result.files_removed
    assert not (root / "dogs/sub").exists()  # emptied folders go too


def test_copy_files_false_writes_only_lightly_keys(tmp_path, dataset):
    target = BucketTarget(url=f"memory://{tmp_path.name}/only-lightly")
    result = dataset.publish(target, copy_files=False)
    assert all(key.startswith(".lightly/") for key in result.files_written)
    assert result.data_files == 0 and result.metadata_files == len(IMAGES) + 1
    assert result.samples == result.embeddings == len(dataset.frame_index)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("csv_row", "name samples missing from frame_index"),
        ("collision", "both map to the Lightly metadata file .lightly/metadata/cats/a.json"),
        ("missing_file", "cannot read input file"),
        ("bad_name", "not usable as a bucket folder"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(tmp_path, dataset, change, expected):
    target = BucketTarget(url=(tmp_path / "bucket").as_uri())
    name = "pets"
    files, frames = dataset.file_index, dataset.frame_index
    if change == "csv_row":
        frames = frames[frames["filename"] != "cats/b.png"]
    elif change == "collision":
        make_image(dataset.root / "cats/a.jpg")
        files = pd.concat([files, files[files["filename"] == "cats/a.png"].assign(filename="cats/a.jpg")])
        # Both used (a sample each): an unused file never blocks a dataset.
        extra = frames[frames["filename"] == "cats/a.png"].assign(filename="cats/a.jpg", source="cats/a.jpg")
        frames = pd.concat([frames, extra])
    elif change == "missing_file":
        (dataset.root / "dogs/c.png").unlink()
    else:
        name = "../escape"
    with pytest.raises(BucketError, match=expected.replace(".", r"\.")) as info:
        publish_to_bucket(target, name, dataset.root, frames, files, dataset.csv)
    if change == "csv_row":
        assert str(dataset.csv) in str(info.value)
    assert not (tmp_path / "bucket").exists()


def test_target_never_shows_secret_values(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    target = BucketTarget(url="s3://bucket/prefix", endpoint_url="https://user:hunter2@minio.local:9000")
    described = target.describe()
    assert described["endpoint"] == "https://***@minio.local:9000"
    assert "AWS_SECRET_ACCESS_KEY" in described["credential_env_vars"]
    assert described["credentials_set"] == "key, secret"
    assert_no_secret(repr(target), json.dumps(described))
    assert "hunter2" not in repr(target) + json.dumps(described)
    assert "p4ss" not in repr(BucketTarget(url="https://me:p4ss@host/data?sig=abc"))


def test_error_text_is_masked_whatever_the_storage_layer_says(tmp_path, dataset, monkeypatch):
    monkeypatch.setenv("LIGHTLY_ASSETS_TEST_PASSWORD", SECRET)
    target = BucketTarget(
        url=f"memory://{tmp_path.name}/masked", storage_options_env={"password": "LIGHTLY_ASSETS_TEST_PASSWORD"}
    )

    def failing(event: str, key: str) -> None:
        raise RuntimeError(f"server rejected password {SECRET} for {key}")

    with pytest.raises(BucketError) as info:
        dataset.publish(target, on_progress=failing)
    assert "server rejected password *** for" in str(info.value)
    assert_no_secret(str(info.value), "".join(traceback.format_exception(info.value)))


def test_curation_files_are_written_after_the_dataset_and_kept_by_a_later_publish(dataset, tmp_path):
    target = BucketTarget(url=f"file://{tmp_path / 'bucket'}")
    with pytest.raises(BucketError, match="materialize uploaded_dataset first"):
        publish_curation_files(target, "pets", {"duplicates.csv": b"filenames,group,kind,similarity\n"})
    dataset.publish(target)
    files = {"duplicates.csv": b"filenames,group,kind,similarity\n", "selection.txt": b"cats/a.png\n"}
    assert publish_curation_files(target, "pets", files) == {"duplicates.csv": "written", "selection.txt": "written"}
    assert publish_curation_files(target, "pets", files) == {
        "duplicates.csv": "unchanged",
        "selection.txt": "unchanged",
    }
    lightly = tmp_path / "bucket" / "pets" / ".lightly"
    again = dataset.publish(target)  # the chain alone, after curation: the curation's files stay
    assert not {".lightly/duplicates.csv", ".lightly/selection.txt"} & set(again.files_removed)
    assert (lightly / "selection.txt").read_bytes() == b"cats/a.png\n"
    manifest = json.loads((lightly / MANIFEST_KEY.split("/", 1)[1]).read_text())
    assert ".lightly/selection.txt" in manifest["keys"]
    with pytest.raises(BucketError, match="not a curation file"):
        publish_curation_files(target, "pets", {"../escape.txt": b""})
