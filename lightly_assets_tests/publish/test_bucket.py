"""Bucket datasource publishing, against a real S3-compatible server (moto_server) on 127.0.0.1 (the local file
target and bad input: test_bucket_file.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3fs

from lightly_assets.publish.bucket import (
    MANIFEST_KEY,
    SCHEMA_KEY,
    BucketError,
    BucketTarget,
)
from lightly_assets_tests.media import make_image
from lightly_assets_tests.publish.bucket_data import (
    ACCESS_KEY,
    IMAGES,
    SECRET,
    VIDEO,
    assert_no_secret,
    bucket_keys,
    expected_keys,
)
from lightly_assets_tests.servers import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
VIDEO_FRAMES = 10


# ---------------------------------------------------------------- S3 server


@dataclass
class Moto:
    """One moto_server process, stopped by its own PID."""

    port: int
    proc: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it paused
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_moto(port: int | None = None, env: dict[str, str] | None = None) -> Moto:
    port = port or free_port()
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    server = Moto(port, proc)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1).close()
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto_server did not start on port {port}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], None]:
    """Point the environment at an endpoint, with test credentials and no machine-wide AWS config."""
    for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    def point_at(endpoint: str) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)  # AWS's own; ours is the resource's s3_endpoint

    return point_at


def s3(endpoint: str) -> s3fs.S3FileSystem:
    """An independent reader/admin client for the test server."""
    return s3fs.S3FileSystem(
        key=ACCESS_KEY, secret=SECRET, client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True
    )


def make_bucket(endpoint: str, name: str) -> s3fs.S3FileSystem:
    fs = s3(endpoint)
    fs.mkdir(name)
    return fs


# ---------------------------------------------------------------- tests


def test_publish_to_s3_writes_lightly_layout(moto, s3_env, dataset, caplog):
    s3_env(moto.endpoint)
    fs = make_bucket(moto.endpoint, "layout")
    caplog.set_level(logging.DEBUG, logger="lightly_assets")
    target = BucketTarget(url="s3://layout/datasets")

    result = dataset.publish(target)

    root = "layout/datasets/pets"
    keys = bucket_keys(fs, root)
    assert set(keys) == expected_keys(dataset)
    assert set(result.files_written) == expected_keys(dataset) - {MANIFEST_KEY}
    assert result.files_skipped == () and result.files_removed == ()
    for name in dataset.file_index["filename"]:
        assert fs.cat_file(f"{root}/{name}") == (dataset.root / name).read_bytes()
    assert fs.cat_file(f"{root}/.lightly/embeddings/pets.csv") == dataset.csv.read_bytes()

    schema = json.loads(fs.cat_file(f"{root}/{SCHEMA_KEY}"))
    assert {(e["path"], e["valueDataType"]) for e in schema} == {
        ("weak_label", "CATEGORICAL_INT"),
        ("label_name", "CATEGORICAL_STRING"),
    }
    assert all(set(e) == {"name", "path", "defaultValue", "valueDataType"} for e in schema)
    labels = dataset.file_index.set_index("filename")
    image = json.loads(fs.cat_file(f"{root}/.lightly/metadata/dogs/sub/d.json"))
    assert image == {
        "file_name": "dogs/sub/d.png",
        "type": "image",
        "metadata": {"weak_label": int(labels.loc["dogs/sub/d.png", "label"]), "label_name": "dogs"},
    }
    video = json.loads(fs.cat_file(f"{root}/.lightly/metadata/clips/walk.json"))
    assert video["file_name"] == VIDEO and video["type"] == "video"
    assert video["metadata"]["weak_label"] == int(labels.loc[VIDEO, "label"])

    assert result.url == "s3://layout/datasets"
    assert result.dataset_url == "s3://layout/datasets/pets"
    assert result.embeddings == result.samples == len(dataset.frame_index) == len(IMAGES) + VIDEO_FRAMES
    assert result.embedding_dim == 8
    assert result.metadata_files == result.data_files == len(IMAGES) + 1
    everything = b"".join(fs.cat([f"{root}/{k}" for k in keys]).values())
    assert SECRET.encode() not in everything and ACCESS_KEY.encode() not in everything
    assert_no_secret(repr(result), json.dumps(result.as_metadata()), repr(target), caplog.text)
    assert "pets" in caplog.text


def test_publish_again_is_idempotent(moto, s3_env, dataset):
    s3_env(moto.endpoint)
    fs = make_bucket(moto.endpoint, "again")
    target = BucketTarget(url="s3://again")
    dataset.publish(target)
    before = bucket_keys(fs, "again/pets")
    events: list[tuple[str, str]] = []

    result = dataset.publish(target, on_progress=lambda event, key: events.append((event, key)))

    assert result.files_written == () and result.files_removed == ()
    assert set(result.files_skipped) == expected_keys(dataset) - {MANIFEST_KEY}
    assert {event for event, _ in events} == {"skipped"}
    after = bucket_keys(fs, "again/pets")
    assert {k: v["ETag"] for k, v in after.items()} == {k: v["ETag"] for k, v in before.items()}
    assert {k: v["LastModified"] for k, v in after.items()} == {k: v["LastModified"] for k, v in before.items()}
    assert result.embeddings == result.samples == len(dataset.frame_index)

    csv_key = "again/pets/.lightly/embeddings/pets.csv"
    fs.pipe_file(csv_key, dataset.csv.read_bytes().replace(b"cats", b"CATS"))  # same size, other bytes
    repaired = dataset.publish(target)
    assert repaired.files_written == (".lightly/embeddings/pets.csv",)
    assert fs.cat_file(csv_key) == dataset.csv.read_bytes()


def test_removed_and_changed_files_follow_the_dataset_but_foreign_keys_stay(moto, s3_env, dataset):
    s3_env(moto.endpoint)
    fs = make_bucket(moto.endpoint, "changes")
    fs.pipe_file("changes/pets/notes.txt", b"not ours")
    fs.pipe_file("changes/pets/cats/b.png", (dataset.root / "cats/b.png").read_bytes())  # already there
    target = BucketTarget(url="s3://changes")
    first = dataset.publish(target)
    assert "cats/b.png" in first.files_skipped  # same size, not ours: left alone and not claimed

    (dataset.root / "dogs/c.png").unlink()
    (dataset.root / "cats/b.png").unlink()
    make_image(dataset.root / "cats/a.png", seed=9, size=(40, 30))
    dataset.refresh()
    result = dataset.publish(target)

    keys = bucket_keys(fs, "changes/pets")
    assert set(result.files_removed) == {"dogs/c.png", ".lightly/metadata/dogs/c.json", ".lightly/metadata/cats/b.json"}
    assert "dogs/c.png" not in keys and ".lightly/metadata/dogs/c.json" not in keys
    assert "notes.txt" in keys and "cats/b.png" in keys  # keys this module never wrote stay
    assert {"cats/a.png", ".lightly/embeddings/pets.csv"} <= set(result.files_written)
    assert fs.cat_file("changes/pets/cats/a.png") == (dataset.root / "cats/a.png").read_bytes()
    assert fs.cat_file("changes/pets/.lightly/embeddings/pets.csv") == dataset.csv.read_bytes()
    assert result.embeddings == result.samples == len(IMAGES) - 2 + VIDEO_FRAMES


def test_missing_bucket_is_a_clear_error(moto, s3_env, dataset):
    s3_env(moto.endpoint)
    with pytest.raises(BucketError) as info:
        dataset.publish(BucketTarget(url="s3://no-such-bucket/x"))
    message = str(info.value)
    assert "bucket 'no-such-bucket' does not exist" in message and moto.endpoint in message
    assert_no_secret(message, "".join(traceback.format_exception(info.value)))


def test_auth_failure_is_a_clear_error_without_secrets(s3_env, dataset):
    server = start_moto(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # this server checks credentials
    try:
        s3_env(server.endpoint)
        with pytest.raises(BucketError) as info:
            dataset.publish(BucketTarget(url="s3://locked", retries=1))
    finally:
        server.stop()
    message = str(info.value)
    assert message.startswith("authentication failed") and "AWS_SECRET_ACCESS_KEY" in message
    assert_no_secret(message, repr(info.value), "".join(traceback.format_exception(info.value)))


@pytest.mark.e2e  # a real server killed or paused mid-way
def test_server_killed_mid_way_then_next_run_completes(s3_env, dataset):
    server = start_moto()
    try:
        s3_env(server.endpoint)
        make_bucket(server.endpoint, "flaky")
        target = BucketTarget(url="s3://flaky", timeout_s=2, retries=1)
        written: list[str] = []

        def kill_after_first(event: str, key: str) -> None:
            written.append(key)
            if len(written) == 1:
                server.stop()

        with pytest.raises(BucketError) as info:
            dataset.publish(target, on_progress=kill_after_first)
        message = str(info.value)
        assert message.startswith("storage endpoint unreachable") and server.endpoint in message
        assert "AWS_ENDPOINT_URL_S3" in message
        assert_no_secret(message, "".join(traceback.format_exception(info.value)))

        server = start_moto(port=server.port)  # a fresh, empty server on the same endpoint
        fs = make_bucket(server.endpoint, "flaky")
        result = dataset.publish(target)
        assert set(bucket_keys(fs, "flaky/pets")) == expected_keys(dataset)
        assert result.embeddings == result.samples == len(dataset.frame_index)
    finally:
        server.stop()


@pytest.mark.e2e  # a real server killed or paused mid-way
def test_server_paused_mid_way_times_out_and_next_run_resumes(moto, s3_env, dataset):
    s3_env(moto.endpoint)
    make_bucket(moto.endpoint, "paused")
    target = BucketTarget(url="s3://paused", timeout_s=1, retries=1, checkpoint_s=0)
    written: list[str] = []

    def pause_after_two(event: str, key: str) -> None:
        written.append(key)
        if len(written) == 2:
            os.kill(moto.proc.pid, signal.SIGSTOP)

    try:
        with pytest.raises(BucketError) as info:
            dataset.publish(target, on_progress=pause_after_two)
    finally:
        os.kill(moto.proc.pid, signal.SIGCONT)
    assert "unreachable" in str(info.value) and "timeout" in str(info.value).lower()
    assert_no_secret(str(info.value))

    result = dataset.publish(BucketTarget(url="s3://paused"))
    assert set(written[:2]) <= set(result.files_skipped)  # what made it before the stall is not sent again
    assert result.embeddings == result.samples == len(dataset.frame_index)
