"""How the engines cut a batch: requests and forward passes sized to the CPU's caches, the same vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightly_assets.embedding.engines import openvino as ov_engine
from lightly_assets.embedding.engines import torch as torch_engine
from lightly_assets.embedding.engines.openvino import OpenVINOEngine
from lightly_assets.embedding.engines.torch import TorchEngine
from lightly_assets.embedding.factory import load_model

pytestmark = pytest.mark.openvino  # converts the network once for the module
SIZE = 32


def _pixels(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def lightly_ov(tmp_path_factory):
    """lightly-embed's network (seeded random init) on OpenVINO fp32, converted once for this module."""
    cache = tmp_path_factory.mktemp("openvino-cache")
    return load_model(None, input_size=SIZE, precision="fp32", engine="openvino", cache_dir=cache)


def test_a_request_holds_what_its_threads_keep_in_cache(lightly_ov, monkeypatch) -> None:
    """A batch is shared between the streams, and large samples go a few per request (the activations of a whole
    batch of 224 px photos leave the caches); one call of many requests gives the vectors of one request each."""
    two = OpenVINOEngine(lightly_ov.runner.xml, "fp32", 2)
    assert two.rows_per_request(64, 64 * 64) == 32  # the default network: half a batch per stream
    assert two.rows_per_request(3, 64 * 64) == 2 and two.rows_per_request(1, 64 * 64) == 1
    assert two.rows_per_request(64, 224 * 224) == 2 and two.rows_per_request(64, 1024 * 1024) == 1
    own_choice = OpenVINOEngine(lightly_ov.runner.xml, "fp32", 0)  # OpenVINO picks its threads: every core
    monkeypatch.setattr(ov_engine, "usable_cores", lambda: 1)
    assert own_choice.streams == 1 and own_choice.rows_per_request(64, 64 * 64) == 32
    monkeypatch.setattr(ov_engine, "usable_cores", lambda: 3)
    assert own_choice.rows_per_request(64, 64 * 64) == 64
    monkeypatch.setattr(ov_engine, "PIXELS_PER_THREAD", 3 * SIZE * SIZE)
    assert two.rows_per_request(64, SIZE * SIZE) == 3
    sizes: list[int] = []
    real_flight = two.in_flight

    def recording():  # noqa: ANN202
        flight = real_flight()
        put = flight.put
        flight.put = lambda pixels: sizes.append(len(pixels)) or put(pixels)  # type: ignore[method-assign]
        return flight

    monkeypatch.setattr(two, "in_flight", recording)
    pixels = _pixels(10)
    one = OpenVINOEngine(lightly_ov.runner.xml, "fp32", 1)
    np.testing.assert_allclose(two(pixels), np.concatenate([one(p[None]) for p in pixels]), rtol=1e-4, atol=1e-5)
    assert sizes == [3, 3, 3, 1]


def test_torch_on_a_cpu_runs_a_batch_in_cache_sized_passes(monkeypatch) -> None:
    """On a CPU a batch goes through the network a few samples at a time (CPU_PIXELS_PER_THREAD per thread), with
    the vectors of the whole batch; a GPU takes the batch whole."""
    model = load_model(None, input_size=SIZE, precision="fp32", engine="torch")
    engine = model.runner
    assert isinstance(engine, TorchEngine)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert engine.rows_per_request(64, 64 * 64) == 16 and engine.rows_per_request(64, 224 * 224) == 1
    assert model.rows_per_put(64) == 64  # 32 px: the whole batch fits
    gpu = TorchEngine(engine.module, torch.device("meta"), "fp32", engine.preprocessing)
    assert gpu.rows_per_request(64, 224 * 224) == 64
    monkeypatch.setattr(torch_engine, "CPU_PIXELS_PER_THREAD", SIZE * SIZE)
    passes: list[int] = []
    forward = engine._forward
    monkeypatch.setattr(engine, "_forward", lambda pixels: passes.append(len(pixels)) or forward(pixels))
    pixels = _pixels(5)
    whole = forward(pixels)
    np.testing.assert_allclose(engine(pixels), whole, rtol=1e-4, atol=1e-5)
    assert passes == [2, 2, 1] and model.rows_per_put(64) == 2
