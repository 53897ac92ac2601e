"""Self-supervised training: a checkpoint lightly-embed loads with the same vectors, bad input, a killed run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets.embedding.training import TrainingError, TrainSettings, train
from lightly_assets.embedding.weights import TRAINED_NAME, choose_weights
from lightly_assets_tests import REPO
from lightly_assets_tests.media import blocky_image, shaded_video
from lightly_assets_tests.reference import lightly_embed
from lightly_assets_tests.tables import frame_index_for

pytestmark = pytest.mark.lightly_tools  # training builds lightly's own network

SIZE = 16
TINY = TrainSettings(epochs=1, batch_size=4, input_size=32, max_minutes=5)


def test_too_few_samples_for_a_batch(tmp_path: Path) -> None:
    blocky_image(tmp_path / "a.png", 20, 20, seed=0)
    with pytest.raises(TrainingError, match=r"1 samples, too few to form one batch of 4; lower batch_size"):
        train(frame_index_for(tmp_path, ["a.png"]), tmp_path, tmp_path / "m.ckpt", TINY)
    assert not (tmp_path / "m.ckpt").exists()


def test_time_budget_stops_after_the_current_step(tmp_path: Path) -> None:
    names = [f"{i}.png" for i in range(4)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 20, 20, seed=i)
    budget = TrainSettings(epochs=50, batch_size=2, input_size=16, max_minutes=1e-5)
    result = train(frame_index_for(tmp_path, names), tmp_path, tmp_path / "m.ckpt", budget)
    assert result.steps == 1 and result.epochs == 1 and result.partial_last_epoch
    assert result.stopped_by.startswith("time budget") and (tmp_path / "m.ckpt").is_file()


@pytest.mark.e2e  # a training run, then lightly-embed on its checkpoint (~10 s)
def test_tiny_run_writes_a_checkpoint_that_lightly_embed_loads(tmp_path: Path) -> None:
    root = tmp_path / "data"
    names = sorted(f"{'ab'[i % 2]}/{i}.jpg" for i in range(5))
    for i, name in enumerate(names):
        blocky_image(root / name, 40 + 4 * i, 30, seed=i)
    (root / "v").mkdir()
    shaded_video(root / "v/clip.avi", n_frames=3)
    index = frame_index_for(root, names, {"v/clip.avi": 3})
    lines: list[str] = []
    out = tmp_path / "out" / TRAINED_NAME
    result = train(index, root, out, TINY, progress=lines.append)
    assert result.epochs == 1 and len(result.losses) == 1 and np.isfinite(result.losses[0])
    assert result.samples == 8 and result.steps == 2 and result.images_seen == 8  # the 3 video frames streamed in
    assert result.device == "cpu" and result.stopped_by == "epochs" and not result.unreadable
    assert any("epoch 1/1 done: mean loss" in line for line in lines)
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "optimizer_states"} <= set(saved)
    keys = list(saved["state_dict"])
    assert all(k.startswith(("model.backbone.", "model.projection_head.layers.")) for k in keys)
    assert sorted(p.name for p in out.parent.iterdir()) == [TRAINED_NAME]

    images = tmp_path / "images"  # lightly-embed reads image folders
    for name in names:
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, images / name)
    expected, _, filenames = lightly_embed(images, out, SIZE)
    ours = embed_samples(
        frame_index_for(images, names),
        images,
        load_model(str(out), input_size=SIZE, precision="fp32"),
        options=EmbedOptions(draft=False),
    )
    assert ours.filenames == filenames
    np.testing.assert_allclose(ours.matrix, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    start = load_model(None, input_size=SIZE).embed(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert not np.allclose(start, load_model(str(out), input_size=SIZE).embed(np.zeros((1, SIZE, SIZE, 3), np.uint8)))


@pytest.mark.e2e
def test_cli_train_then_a_killed_run_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for i in range(6):
        blocky_image(data / "ds" / "ab"[i % 2] / f"{i}.jpg", 40, 30, seed=i)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "LIGHTLY_ASSETS_DATA_DIR": str(data),
           "LIGHTLY_ASSETS_OUTPUT_DIR": str(out), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "lightly_assets", "train", "ds", "--batch-size", "2"]
    done = subprocess.run([*cmd, "--epochs", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ckpt = out / "ds" / TRAINED_NAME
    assert "[OK] train ds" in done.stdout and f"checkpoint: {ckpt}" in done.stdout
    assert "epochs: 1 (epochs), samples: 6" in done.stdout and "kNN agreement after:" in done.stdout
    assert "started from: RANDOM (pretrained download failed" in done.stdout  # tests are offline
    before = ckpt.read_bytes()

    proc = subprocess.Popen([*cmd, "--epochs", "1000"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:  # Dagster's console log: the first training step is reported at once
            if "epoch 1/1000 step 1 loss" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "the training run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert ckpt.read_bytes() == before
    assert [p.name for p in ckpt.parent.iterdir() if p.name.startswith(f".{TRAINED_NAME}")] == []
    still = choose_weights(trained=ckpt)  # the next `run` embeds with the previous checkpoint
    assert still.source == "trained" and still.sha256 == hashlib.sha256(before).hexdigest()
