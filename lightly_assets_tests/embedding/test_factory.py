"""`factory.preload`: a model made ahead of time on another thread is the one `create_embedder` returns, with the
same vectors, and a model that fails to load fails where it is asked for, with its own one-line message."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.factory import create_embedder, discard, preload
from lightly_assets.embedding.settings import RunSettings
from lightly_assets.embedding.spec import BuildOptions
from lightly_assets.embedding.weights import Weights, file_weights

SETTINGS = RunSettings(device="cpu", precision="fp32")  # torch: no conversion, quick at 16 px
OPTIONS = BuildOptions(input_size=16, seed=5)
PIXELS = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-preload") as executor:
        yield executor


def test_the_preloaded_model_is_the_one_used_once_with_the_same_vectors(pool, made_on) -> None:
    started = preload(pool, "lightly", SETTINGS, OPTIONS, lambda: Weights("random"))
    assert started is not None
    # the log (the step's) and calibration (int8 only) make no other model
    model = create_embedder("lightly", SETTINGS, BuildOptions(input_size=16, seed=5, log=print), Weights("random"))
    assert model is started.embedder.result() and made_on == ["test-preload_0"]
    again = create_embedder("lightly", SETTINGS, OPTIONS, Weights("random"))  # taken once: made anew
    assert again is not model and made_on == ["test-preload_0", "MainThread"]
    assert np.array_equal(model.embed(PIXELS), again.embed(PIXELS))


def test_random_weights_of_another_provenance_take_the_random_network_and_keep_their_own(pool) -> None:
    started = preload(pool, "lightly", SETTINGS, OPTIONS, Weights("random"))
    assert started is not None
    offline = Weights("random", url="http://127.0.0.1:9/zoo.pth", note="pretrained download failed: refused")
    model = create_embedder("lightly", SETTINGS, OPTIONS, offline)
    assert model.weights == offline and model.runner is started.embedder.result().runner


def test_other_weights_or_settings_are_made_anew_without_waiting_for_the_preload(pool, made_on, tmp_path) -> None:
    gate = threading.Event()
    started = preload(pool, "lightly", SETTINGS, OPTIONS, Weights("random"), wanted=lambda: gate.wait(30))
    assert started is not None
    other_seed = create_embedder("lightly", SETTINGS, BuildOptions(input_size=16, seed=6), Weights("random"))
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        create_embedder("lightly", SETTINGS, OPTIONS, file_weights("checkpoint", tmp_path / "garbage.ckpt"))
    assert not started.embedder.done() and made_on == ["MainThread", "MainThread"]  # the preload still waits
    gate.set()
    assert started.embedder.result() is not other_seed
    discard([started])
    assert create_embedder("lightly", SETTINGS, OPTIONS, Weights("random")) is not started.embedder.result()


def test_a_failing_preload_raises_its_message_where_the_model_is_asked_for(pool, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"not a checkpoint")
    weights = file_weights("checkpoint", bad)
    with pytest.raises(ModelError) as direct:
        create_embedder("lightly", SETTINGS, OPTIONS, weights)
    started = preload(pool, "lightly", SETTINGS, OPTIONS, lambda: weights)
    assert started is not None and isinstance(started.embedder.exception(), ModelError)  # raised nowhere yet
    with pytest.raises(ModelError) as preloaded:
        create_embedder("lightly", SETTINGS, OPTIONS, weights)
    assert str(preloaded.value) == str(direct.value)
    assert "garbage.ckpt: not a readable PyTorch checkpoint" in str(preloaded.value)


def test_weights_that_cannot_be_chosen_leave_the_choice_to_the_caller(pool, tmp_path: Path) -> None:
    missing = tmp_path / "absent.ckpt"
    started = preload(pool, "lightly", SETTINGS, OPTIONS, lambda: file_weights("checkpoint", missing))
    assert started is not None and started.embedder.exception() is not None and started.weights.result() is None
    with pytest.raises(ModelError, match=r"absent\.ckpt: checkpoint file not found"):
        create_embedder("lightly", SETTINGS, OPTIONS, file_weights("checkpoint", missing))
    discard([started])


def test_nothing_is_preloaded_for_named_models_or_int8(pool) -> None:
    assert preload(pool, "torchvision:resnet18", SETTINGS, OPTIONS, lambda: None) is None
    int8 = RunSettings(device="cpu", precision="int8", engine="openvino")
    assert preload(pool, "lightly", int8, OPTIONS, Weights("random")) is None


def test_a_cancelled_preload_never_blocks_the_caller(monkeypatch, made_on) -> None:
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-preload") as busy:
        busy.submit(gate.wait, 30)
        queued = preload(busy, "lightly", SETTINGS, OPTIONS, lambda: Weights("random"))
        assert queued is not None and queued.embedder.cancel()
        model = create_embedder("lightly", SETTINGS, OPTIONS, Weights("random"))  # made here, not waited for
        gate.set()
    assert model.weights == Weights("random") and made_on == ["MainThread"]
    discard([queued])
