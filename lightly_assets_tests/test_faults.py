"""Fault injection: messy folders, partly readable videos, kills, concurrent runs and a full disk.

Every case runs the real command (`python -m lightly_assets.cli run`) or the real assets on data it builds,
and holds the product to one rule: a sample is either embedded and published, or listed as skipped with
its reason, the same in the summary, the CSV and the target.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from lightly.utils.io import load_embeddings

from lightly_assets.defs.publishing import STUDIO_POOL
from lightly_assets_tests import REPO
from lightly_assets_tests.media import make_image, make_video, noise_frames

TINY = (32, 24)


# --- builders ----------------------------------------------------------------------------------------


def noisy_video(path: Path, n_frames: int = 8, size: tuple[int, int] = (48, 32)) -> Path:
    """A small MPEG-4 video of noise frames (noise, so that damage cannot be hidden by prediction)."""
    return make_video(path, n_frames, size, frames=noise_frames())


def corrupt_middle(path: Path, n_bytes: int = 400) -> Path:
    """Overwrite bytes in the middle of the stream: the index is intact, the decoder fails part-way."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n_bytes] = np.random.default_rng(5).integers(0, 255, n_bytes, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def messy_dataset(root: Path, outside: Path) -> dict[str, str]:
    """Every kind of entry a real folder holds; returns {skipped path: reason fragment}."""
    a = root / "a"
    make_image(a / "img0.png", 0, TINY)
    make_image(a / "img1.jpg", 1, TINY)
    os.symlink("img0.png", a / "link.png")  # a symlink to a file: used, like Lightly does
    make_image(outside / "b" / "far.png", 2, TINY)
    make_image(outside / "x.png", 3, TINY)
    os.symlink(outside / "b", root / "b")  # a folder outside the dataset: followed, its own weak label
    os.symlink(outside / "x.png", a / "out.png")  # a file outside the dataset: used
    os.symlink("nothing.jpg", a / "dangling.jpg")
    os.symlink("loop.jpg", a / "loop.jpg")
    os.symlink("..", a / "up")
    os.mkfifo(a / "fifo.jpg")  # must never be opened: that would hang the scan
    (a / "empty.png").write_bytes(b"")
    (a / "notes.txt").write_text("not an image")
    (a / "fake.png").write_text("text, not a PNG")
    cut(make_image(a / "trunc.jpg", 4, (64, 48)), 0.5)
    bad = os.fsencode(a) + b"/bad\xff.jpg"
    with open(bad, "wb") as handle:
        handle.write((a / "img0.png").read_bytes())
    noisy_video(root / "v" / "good.mp4", 8)
    corrupt_middle(noisy_video(root / "v" / "mid.mp4", 30))
    cut(noisy_video(root / "v" / "tail.mkv", 30, (64, 48)), 0.6)
    cut(noisy_video(root / "v" / "noindex.mp4", 30), 0.5)  # the moov index is written at the end
    return {
        "a/bad\\xff.jpg": "name is not valid UTF-8",
        "a/dangling.jpg": "broken symlink",
        "a/loop.jpg": "symlink loop",
        "a/up": "symlink loop",
        "a/fifo.jpg": "not a regular file",
        "a/empty.png": "empty file",
        "a/notes.txt": "unsupported file type",
        "a/fake.png": "cannot identify image file",
        "a/trunc.jpg": "truncated",
        "v/mid.mp4": "a video is published whole or not at all",
        "v/tail.mkv": "truncated",
        "v/noindex.mp4": "cannot be opened",
    }


# --- running the command -----------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    paths = {"home": tmp_path / "home", "data": tmp_path / "data", "out": tmp_path / "out", "tmp": tmp_path}
    paths["data"].mkdir()
    return paths


def cli_env(paths: dict[str, Path], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(paths["home"]),
        LIGHTLY_ASSETS_DATA_DIR=str(paths["data"]),
        LIGHTLY_ASSETS_OUTPUT_DIR=str(paths["out"]),
        LIGHTLY_STUDIO_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def start(paths: dict[str, Path], *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lightly_assets", "run", *args],
        cwd=REPO,
        env=cli_env(paths, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(paths: dict[str, Path], *args: str, **extra: str) -> tuple[int, str]:
    proc = start(paths, *args, **extra)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def no_traceback(out: str) -> None:
    for noise in ("Stack Trace", "Traceback", "dagster._core"):
        assert noise not in out, out


def studio_counts(paths: dict[str, Path], name: str) -> tuple[int, int]:
    from lightly_assets.publish.studio import StudioTarget, count_in_studio

    return count_in_studio(StudioTarget(db_file=paths["out"] / "lightly_studio.db", dataset_name=name), name)


def skipped_section(out: str) -> dict[str, str]:
    """The summary's `skipped:` lines as {path: reason}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  skipped: "))
    found = {}
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        path, _, reason = line.strip().partition(": ")
        found[path] = reason
    return found


# --- the cases ---------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_messy_folder_every_sample_is_published_or_listed(env) -> None:
    expected_skips = messy_dataset(env["data"] / "messy", env["tmp"] / "outside")
    (env["data"] / "empty").mkdir()
    (env["data"] / "empty" / "notes.txt").write_text("no images here")
    os.mkdir(os.fsencode(env["data"]) + b"/bad\xfe")  # a dataset folder that cannot be a partition key
    code, out = run(env, "messy", "empty")
    assert "warning: skipping folder 'bad\\udcfe': folder name is not valid UTF-8" in out, out
    assert code == 1, out  # the empty dataset fails, the messy one does not
    assert "[OK] messy" in out and "[FAILED] empty" in out, out
    assert "error: " + str(env["data"] / "empty") + ": no usable image or video file (notes.txt" in out
    no_traceback(out)  # a user error is one line; the event log keeps the detail
    skipped = skipped_section(out)
    for path, reason in expected_skips.items():
        assert path in skipped and reason in skipped[path], (path, out)
    assert len(skipped) == len(expected_skips) and f"skipped: {len(expected_skips)} " in out, skipped
    _, labels, filenames = load_embeddings(str(env["out"] / "messy" / "embeddings.csv"))
    good_frames = [f"v/good-{i}-mp4.png" for i in range(8)]
    assert sorted(filenames) == sorted(
        ["a/img0.png", "a/img1.jpg", "a/link.png", "a/out.png", "b/far.png", *good_frames]
    )
    assert not any(name.startswith("v/mid") for name in filenames)
    assert studio_counts(env, "messy") == (len(filenames), len(filenames))  # the target holds exactly the CSV
    assert "uploaded_dataset.target_counts_match_csv=pass" in out


@pytest.mark.e2e
def test_hidden_folder_is_named_as_ignored(env) -> None:
    (env["data"] / ".hidden").mkdir()
    make_image(env["data"] / ".hidden" / "x.png")
    code, out = run(env, ".hidden")
    assert code == 2 and "hidden folders" in out and "ignored" in out, out


def _image_folder(folder: Path, n: int) -> None:
    for i in range(n):
        make_image(folder / f"img-{i:04d}.png", i, TINY)


@pytest.mark.e2e
def test_kill_during_embedding_and_upload_then_resume(env) -> None:
    """SIGKILL while embedding (after a checkpoint) and while uploading; the rerun resumes and is consistent."""
    _image_folder(env["data"] / "big", 8)
    noisy_video(env["data"] / "big" / "long.mp4", 150, (32, 32))
    cache = env["out"] / "big" / "embedding_cache.npz"
    journal = env["out"] / "big" / "embedding_cache.journal.npz"  # a checkpoint: the run's vectors so far
    with instance_at(env["home"]) as instance:  # one LightlyStudio writer: a killed upload must not keep the slot
        instance.event_log_storage.set_concurrency_slots(STUDIO_POOL, 1)
    proc = start(env, "big")
    assert _wait_for(lambda: journal.exists(), proc), "no checkpoint before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not cache.exists()  # the cache is written at the run's end
    n_saved = len(np.load(journal)["vectors"])
    assert 0 < n_saved < 158, n_saved  # the vectors of the killed run are there, not all of them
    db = env["out"] / "lightly_studio.db"
    proc = start(env, "big")
    assert _wait_for(lambda: db.exists(), proc), "the upload never started"
    time.sleep(0.2)  # LightlyStudio has created its database and is writing into it
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL and "reused from cache" not in out, out  # killed before its summary
    code, out = run(env, "big")
    assert code == 0, out
    assert "samples: 158" in out and "reused from cache: 158" in out, out  # every vector came from the kills
    _, _, filenames = load_embeddings(str(env["out"] / "big" / "embeddings.csv"))
    assert len(filenames) == 158 and studio_counts(env, "big") == (158, 158) and not journal.exists()
    with instance_at(env["home"]) as instance:  # the killed runs are failed, not STARTED forever
        started = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        failed = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        assert not started and len(failed) == 2
        assert not instance.event_log_storage.get_concurrency_info(STUDIO_POOL).claimed_slots


@contextlib.contextmanager
def instance_at(home: Path) -> Iterator[DagsterInstance]:
    home.mkdir(parents=True, exist_ok=True)
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            yield instance
    finally:
        if before is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = before


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.e2e
def test_three_runs_at_once_on_a_fresh_instance(env) -> None:
    """Three CLI processes on one new DAGSTER_HOME, one dataset, bucket target with a 250-character file name."""
    folder = env["data"] / "shared"
    long_name = "n" * 246 + ".png"  # 250 bytes: legal, and no temporary name may add to it
    make_image(folder / long_name, 0, TINY)
    make_image(folder / "b.png", 1, TINY)
    for name in ("clip.mp4", "clip.avi"):  # unusable videos that would share one metadata name
        (folder / name).write_bytes(b"not a video at all" * 10)
    bucket = env["tmp"] / "bucket"
    extra = {"LIGHTLY_ASSETS_TARGET": "bucket", "LIGHTLY_ASSETS_BUCKET_URL": f"file://{bucket}"}
    procs = [start(env, "shared", **extra) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out
        assert "[OK] shared" in out, out
        assert "clip.avi" in skipped_section(out), out
    published = bucket / "shared"
    assert (published / long_name).read_bytes() == (folder / long_name).read_bytes()
    assert not (published / "clip.mp4").exists()
    _, _, filenames = load_embeddings(str(published / ".lightly" / "embeddings" / "shared.csv"))
    assert sorted(filenames) == sorted([long_name, "b.png"])
    assert not [p for p in published.rglob("*") if p.name.endswith(".lightly-assets-tmp")]


RACE = """
import sys
from lightly_assets.runner import add_partitions, open_instance
instance = open_instance()
add_partitions(instance, ["one", "two"])
print(sorted(instance.get_dynamic_partitions("datasets")))
"""


@pytest.mark.e2e
def test_first_use_of_an_instance_by_three_processes(env) -> None:
    """The racy part of a start (creating the SQLite storages, adding partitions), several trials."""
    for trial in range(3):
        home = env["tmp"] / f"home{trial}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACE],
                cwd=REPO,
                env={**cli_env(env), "DAGSTER_HOME": str(home)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0 and "['one', 'two']" in out, out


@pytest.mark.e2e
def test_full_disk_names_the_file(env) -> None:
    out_dir = env["out"]
    out_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(out_dir)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        _image_folder(env["data"] / "full", 60)
        bucket = env["tmp"] / "bucket"
        code, out = run(env, "full", LIGHTLY_ASSETS_TARGET="bucket", LIGHTLY_ASSETS_BUCKET_URL=f"file://{bucket}")
    finally:
        subprocess.run(["umount", str(out_dir)], check=True)
    assert code == 1, out
    assert "No space left on device" in out and str(out_dir / "full") in out, out
    summary = out[out.index("[FAILED] full") :]
    # The first output that does not fit is named: the CSV, or curation's state, whichever step writes first.
    named = re.search(r"error: (\S+): No space left on device", summary)
    assert named and Path(named.group(1)).is_relative_to(out_dir / "full"), summary
    no_traceback(summary)


# --- units on the real assets and domain code ---------------------------------------------------------


def test_a_frame_that_fails_to_convert_skips_its_whole_video(tmp_path: Path, monkeypatch) -> None:
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.embedding.cache import EmbeddingCache
    from lightly_assets.embedding.factory import load_model
    from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples

    make_image(tmp_path / "ds" / "x.png", 0, TINY)
    noisy_video(tmp_path / "ds" / "bad.mp4", 6)
    noisy_video(tmp_path / "ds" / "ok.mp4", 4, (64, 48))
    files = scan_dataset(tmp_path / "ds").files
    samples = build_sample_index(files, tmp_path / "ds").samples
    from lightly_assets.dataset import video

    real = video._rgb  # the frame's conversion to RGB (swscale)
    converted = {"bad": 0}

    def flaky(frame, *args, **kwargs):
        if frame.width == 48:  # bad.mp4: its fourth frame cannot be converted
            converted["bad"] += 1
            if converted["bad"] == 4:
                raise ValueError("cannot convert this frame")
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(video, "_rgb", flaky)
    cache = EmbeddingCache(tmp_path / "cache.npz")
    result = embed_samples(
        samples, tmp_path / "ds", load_model(None, input_size=16), options=EmbedOptions(workers=1), cache=cache
    )
    bad = [name for name, _ in result.unreadable]
    assert len(bad) == 6 and all(name.startswith("bad-") for name in bad), result.unreadable
    assert all("whole or not at all" in reason or "cannot convert" in reason for _, reason in result.unreadable)
    assert sorted(result.filenames) == sorted(["x.png", *[f"ok-{i}-mp4.png" for i in range(4)]])
    monkeypatch.setattr(video, "_rgb", real)
    converted["bad"] = -100  # now every frame converts, and the cached frames of bad.mp4 were not kept
    again = embed_samples(
        samples, tmp_path / "ds", load_model(None, input_size=16), options=EmbedOptions(workers=1), cache=cache
    )
    assert again.reused == 5 and len(again.filenames) == 11 and not again.unreadable
