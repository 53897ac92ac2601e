"""The engines: OpenVINO agrees with torch fp32 on the same batch, for any network; conversions are cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightly_assets.embedding.engines import compiled_cache as eng
from lightly_assets.embedding.engines.compiled_cache import ModelCache
from lightly_assets.embedding.engines.openvino import OpenVINOEngine, openvino_engine, streams_for
from lightly_assets.embedding.engines.openvino_import import opted_in
from lightly_assets.embedding.engines.torch import TorchEngine
from lightly_assets.embedding.errors import EngineError
from lightly_assets.embedding.factory import from_compiled_cache, load_model
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.runtime import bf16_supported
from lightly_assets.embedding.settings import RunSettings
from lightly_assets.embedding.spec import BuildOptions
from lightly_assets.embedding.weights import Weights
from lightly_assets_tests.media import blocky_image, make_image, make_video
from lightly_assets_tests.tables import frame_index_for

pytestmark = pytest.mark.openvino  # the module's tests share the conversions of one network

REPO = Path(__file__).resolve().parents[2]
SIZE = 32


def _pixels(n: int = 6, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _never() -> nn.Module:
    raise AssertionError("converted again although the cache holds the model")


class _SmallNet(nn.Module):
    """Any NCHW -> (N, D) module: two convolutions, pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def lightly_ov(ov_cache: Path):
    """lightly-embed's network (seeded random init) on OpenVINO fp32, converted once for this module."""
    return load_model(None, input_size=SIZE, precision="fp32", engine="openvino", cache_dir=ov_cache)


def test_openvino_fp32_matches_torch_fp32_on_the_lightly_network(lightly_ov) -> None:
    torch_model = load_model(None, input_size=SIZE, precision="fp32", engine="torch")
    assert lightly_ov.engine == "openvino" and lightly_ov.runner.name == "openvino"
    assert lightly_ov.dim == torch_model.dim == 32
    pixels = _pixels(7)  # not a multiple of anything: any batch length runs
    ours, reference = lightly_ov.embed(pixels), torch_model.embed(pixels)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert _cosine(ours, reference).min() >= 0.9999
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-4 * np.abs(reference).max())


def test_two_streams_give_the_vectors_of_one(lightly_ov) -> None:
    """Two streams (two threads or more) split a single batch between them and keep one batch each in flight,
    with the vectors one stream gives, in the order the batches came."""
    assert (streams_for(0), streams_for(1), streams_for(2), streams_for(8)) == (1, 1, 2, 2)
    one = OpenVINOEngine(lightly_ov.runner.xml, "fp32", 1)
    two = OpenVINOEngine(lightly_ov.runner.xml, "fp32", 2)
    assert (one.streams, two.streams) == (1, 2)
    pixels = _pixels(9)
    np.testing.assert_allclose(two(pixels), one(pixels), rtol=1e-4, atol=1e-5)
    flight, got = two.in_flight(), []
    for batch in (pixels[:4], pixels[4:8], pixels[8:]):
        got += flight.put(batch)  # the third waits for the first: two requests
    assert len(got) >= 1
    got += flight.finish()
    assert [len(v) for v in got] == [4, 4, 1] and flight.finish() == []
    np.testing.assert_allclose(np.concatenate(got), one(pixels), rtol=1e-4, atol=1e-5)
    flight.put(pixels)
    flight.close()  # after an error: nothing left running, the requests free for the next call
    np.testing.assert_allclose(two(pixels[:1]), one(pixels[:1]), rtol=1e-4, atol=1e-5)


@pytest.mark.e2e  # a second OpenVINO compilation of the network, in bf16 (~6 CPU-s)
@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="no native bf16 on this CPU")
def test_openvino_bf16_stays_close_to_torch_fp32(ov_cache: Path) -> None:
    bf16 = load_model(None, input_size=SIZE, precision="bf16", engine="openvino", cache_dir=ov_cache)
    fp32 = load_model(None, input_size=SIZE, precision="fp32", engine="torch")
    assert bf16.precision == "bf16"
    assert _cosine(bf16.embed(_pixels()), fp32.embed(_pixels())).min() >= 0.99


@pytest.mark.e2e  # converts the network twice through OpenVINO (~5 CPU-s)
def test_conversion_is_cached_and_a_corrupt_entry_is_rebuilt(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _SmallNet().eval()
    pre = Preprocessing.stretch(SIZE)
    identity = "test|weights sha256 " + "0" * 64
    cache = ModelCache(tmp_path)
    engine, meta = openvino_engine(net, identity, pre, "fp32", 1, cache, {"dim": 32})
    pixels = _pixels()
    expected = engine(pixels)
    again, meta2 = openvino_engine(_never, identity, pre, "fp32", 1, cache)  # warm: the source is never built
    np.testing.assert_array_equal(again(pixels), expected)
    assert meta2["dim"] == 32 and meta2["files"] == meta["files"]

    folder = cache.entry(eng.cache_key(identity, pre, "fp32"))
    blob = folder / "model.bin"
    blob.write_bytes(blob.read_bytes()[:-64])  # truncated weights: never trusted
    converted = []

    def source() -> nn.Module:
        converted.append(1)
        return net

    rebuilt, _ = openvino_engine(source, identity, pre, "fp32", 1, cache, {"dim": 32})
    assert converted == [1]
    np.testing.assert_array_equal(rebuilt(pixels), expected)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary folder was renamed into place

    (folder / "meta.json").write_text("{not json")
    assert cache.lookup(eng.cache_key(identity, pre, "fp32")) is None
    assert not folder.exists()


def test_an_entry_is_hashed_once_and_any_later_write_to_it_is_caught(tmp_path: Path, monkeypatch) -> None:
    """A warm run trusts the files an earlier run hashed while they are untouched; a rewrite (even of the same size,
    with the old modification time put back) is hashed again, and a mismatch rebuilds the entry."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([-1, 4], ov.Type.f32)
    model = ov.Model([ops.relu(ops.multiply(x, ops.constant(np.arange(4, dtype=np.float32))))], [x], "tiny")
    ModelCache(tmp_path).store("k", model, {"dim": 4})
    hashed: list[str] = []
    real = eng.sha256_of
    monkeypatch.setattr(eng, "sha256_of", lambda path: hashed.append(Path(path).name) or real(path))
    assert ModelCache(tmp_path).lookup("k") is not None and sorted(hashed) == ["model.bin", "model.xml"]
    hashed.clear()
    assert ModelCache(tmp_path).lookup("k") is not None and hashed == []  # the next run: no hashing

    blob = tmp_path / "k" / "model.bin"
    before, data = blob.stat(), bytearray(blob.read_bytes())
    data[0] ^= 0xFF
    blob.write_bytes(bytes(data))
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert ModelCache(tmp_path).lookup("k") is None and "model.bin" in hashed
    assert not (tmp_path / "k").exists()


def test_cache_key_changes_with_what_changes_the_graph() -> None:
    base = eng.cache_key("w", Preprocessing.stretch(64), "fp32")
    assert base == eng.cache_key("w", Preprocessing.stretch(64), "fp32")
    others = {
        eng.cache_key("w2", Preprocessing.stretch(64), "fp32"),
        eng.cache_key("w", Preprocessing.stretch(32), "fp32"),
        eng.cache_key("w", Preprocessing.stretch(64, mean=(0.5, 0.5, 0.5)), "fp32"),
        eng.cache_key("w", Preprocessing.stretch(64), "bf16"),
        eng.cache_key("w", Preprocessing.stretch(64), "int8"),
    }
    assert base not in others and len(others) == 5


def test_an_onnx_file_runs_on_openvino_like_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _SmallNet().eval()
    onnx_file = tmp_path / "small.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, SIZE, SIZE),),
        str(onnx_file),
        dynamo=False,
        input_names=["pixels"],
        output_names=["embedding"],
        dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
    )
    pre = Preprocessing.stretch(SIZE, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    engine, _ = openvino_engine(onnx_file, "onnx-test", pre, "fp32", 1, ModelCache(tmp_path / "cache"))
    reference = TorchEngine(net, torch.device("cpu"), "fp32", pre)(_pixels(5))
    ours = engine(_pixels(5))
    assert ours.shape == (5, 12)
    assert _cosine(ours, reference).min() >= 0.9999


def test_a_network_openvino_cannot_take_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "not.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(EngineError, match=r"not\.onnx"):
        openvino_engine(bad, "bad", Preprocessing.stretch(SIZE), "fp32", 1, ModelCache(tmp_path / "cache"))
    with pytest.raises(EngineError, match="int8 needs calibration"):
        openvino_engine(bad, "bad", Preprocessing.stretch(SIZE), "int8", 1, ModelCache(tmp_path / "cache"))


@pytest.mark.e2e
def test_torchvision_resnet18_on_openvino_matches_torch(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    net.eval()
    pre = Preprocessing.stretch(SIZE)
    engine, _ = openvino_engine(net, "torchvision resnet18 seed 0", pre, "fp32", 0, ModelCache(tmp_path))
    reference = TorchEngine(net, torch.device("cpu"), "fp32", pre)(_pixels())
    assert _cosine(engine(_pixels()), reference).min() >= 0.9999


def test_calibration_samples_are_spread_over_images_and_frames(tmp_path: Path) -> None:
    from lightly_assets.embedding.calibration import calibration_pixels

    names = [f"a/{i}.jpg" for i in range(6)] + ["b/x.png"]
    for i, name in enumerate(names):
        make_image(tmp_path / name, seed=i, size=(40, 30))
    (tmp_path / "a/broken.jpg").write_bytes(b"not a jpeg")
    make_video(tmp_path / "v.mp4", n_frames=6, size=(32, 32))
    index = frame_index_for(tmp_path, [*names, "a/broken.jpg"], {"v.mp4": 6})
    pixels = calibration_pixels(index, tmp_path, Preprocessing.stretch(16), n=10)
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (16, 16, 3)
    assert 8 <= len(pixels) <= 10  # the broken file is left out, the rest spread over images and frames
    assert len(calibration_pixels(index.iloc[:0], tmp_path, Preprocessing.stretch(16))) == 0


@pytest.mark.e2e
def test_int8_quantisation_stays_close(tmp_path: Path, lightly_ov) -> None:
    seen = []

    def calibration(pre: Preprocessing) -> np.ndarray:
        seen.append(pre)
        return _pixels(32, seed=1)

    int8 = load_model(
        None, input_size=SIZE, precision="int8", engine="openvino", cache_dir=tmp_path, calibration=calibration
    )
    assert int8.precision == "int8" and seen == [Preprocessing.stretch(SIZE)]
    cos = _cosine(int8.embed(_pixels()), lightly_ov.embed(_pixels()))
    print(f"int8 vs fp32 cosine min {cos.min():.4f}")
    assert cos.min() > 0.9
    again = load_model(None, input_size=SIZE, precision="int8", engine="openvino", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.embed(_pixels()), int8.embed(_pixels()))  # cached: no calibration needed


def test_a_warm_run_serves_the_cached_model_without_torch(lightly_ov, ov_cache: Path, tmp_path: Path) -> None:
    """The second run of a model reads the converted graph and embeds a folder: torch is never imported."""
    from lightly_assets.embedding.pipeline import embed_samples

    names = [f"a/{i}.jpg" for i in range(3)]
    for i, name in enumerate(names):
        make_image(tmp_path / name, seed=i, size=(40, 30))
    frame_index_for(tmp_path, names).to_pickle(tmp_path / "index.pkl")
    code = f"""
import sys, json, numpy as np, pandas as pd
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.weights import Weights
from lightly_assets.embedding.pipeline import embed_samples
m = load_model(Weights("random"), input_size={SIZE}, precision="fp32", engine="openvino", cache_dir={str(ov_cache)!r})
px = np.random.default_rng(0).integers(0, 256, (6, {SIZE}, {SIZE}, 3), dtype=np.uint8)
folder = embed_samples(pd.read_pickle({str(tmp_path / "index.pkl")!r}), {str(tmp_path)!r}, m)
print(json.dumps({{"torch": "torch" in sys.modules, "fp": m.fingerprint, "dim": m.dim, "random": m.random_init,
                  "v": m.embed(px).tolist(), "engine": m.engine, "folder": folder.matrix.tolist()}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, check=True
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["torch"] is False and got["engine"] == "openvino"
    assert got["fp"] == lightly_ov.fingerprint and got["dim"] == lightly_ov.dim and got["random"] is True
    np.testing.assert_allclose(np.asarray(got["v"], np.float32), lightly_ov.embed(_pixels()), rtol=1e-6, atol=1e-7)
    here = embed_samples(frame_index_for(tmp_path, names), tmp_path, lightly_ov).matrix
    np.testing.assert_allclose(np.asarray(got["folder"], np.float32), here, rtol=1e-6, atol=1e-7)


def test_a_warm_cache_is_only_used_for_the_same_weights(lightly_ov, ov_cache: Path) -> None:
    other_seed = load_model(Weights("random"), input_size=SIZE, seed=1, precision="fp32", engine="torch")
    assert other_seed.fingerprint != lightly_ov.fingerprint
    random = Weights("random")
    for seed, engine in ((1, "openvino"), (0, "torch")):
        run = RunSettings(device="cpu", engine=engine, cache_dir=ov_cache)
        assert from_compiled_cache(random, run, BuildOptions(input_size=SIZE, seed=seed)) is None
    run = RunSettings(device="cpu", precision="fp32", engine="auto", cache_dir=ov_cache)
    hit = from_compiled_cache(random, run, BuildOptions(input_size=SIZE, seed=0))
    assert hit is not None and hit.fingerprint == lightly_ov.fingerprint and hit.module is None


def test_a_warm_model_embeds_through_the_pipeline_like_the_model_it_was_cached_from(
    lightly_ov, ov_cache: Path, tmp_path: Path
) -> None:
    """The second run of a dataset gets the warm model: it must take the pipeline's path (`prep`) too."""
    from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples

    names = ["a/x.jpg", "b/y.png"]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 40, 30, seed=i)
    run = RunSettings(device="cpu", precision="fp32", engine="auto", cache_dir=ov_cache)
    warm = from_compiled_cache(Weights("random"), run, BuildOptions(input_size=SIZE))
    assert warm is not None and warm.prep == lightly_ov.prep
    assert (warm.spec, warm.space_key) == (lightly_ov.spec, lightly_ov.space_key)  # read by the embeddings asset
    got = embed_samples(frame_index_for(tmp_path, names), tmp_path, warm, options=EmbedOptions(workers=1))
    expected = embed_samples(frame_index_for(tmp_path, names), tmp_path, lightly_ov, options=EmbedOptions(workers=1))
    assert got.filenames == names
    np.testing.assert_allclose(got.matrix, expected.matrix, rtol=1e-6, atol=1e-7)


def test_a_user_who_never_opted_in_sends_nothing_to_openvinos_telemetry(tmp_path: Path) -> None:
    """`import openvino` and each conversion send usage events to Google Analytics (from a forked process each)
    unless the user opted out: in a fresh process (OpenVINO's telemetry is made once per process) on a machine whose
    user was never asked, our import and conversion send none and fork nothing."""
    script = f"""
import json, os, openvino_telemetry
events, forks, fork = [], [], os.fork
def send_event(self, *args, force_send=False, **kwargs):
    events.append(self.consent or force_send)
openvino_telemetry.Telemetry.send_event = send_event
os.fork = lambda: forks.append(1) or fork()
from lightly_assets.embedding.factory import load_model
model = load_model(None, input_size=16, precision="fp32", engine="openvino", cache_dir={str(tmp_path / "cache")!r})
converted = os.path.isdir({str(tmp_path / "cache")!r})
print(json.dumps({{"engine": model.engine, "converted": converted, "sent": any(events), "forks": len(forks)}}))
"""
    (tmp_path / "home").mkdir()  # no ~/intel/openvino_telemetry: never asked
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}  # as on a laptop
    home = {"HOME": str(tmp_path / "home")}
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO, env={**env, **home}
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout.splitlines()[-1]) == {
        "engine": "openvino",
        "converted": True,
        "sent": False,
        "forks": 0,
    }


@pytest.mark.parametrize(("answer", "opted"), [(None, False), ("0", False), ("1", True)])
def test_the_answer_to_openvinos_opt_in_out_decides(
    monkeypatch, tmp_path: Path, answer: str | None, opted: bool
) -> None:
    """OpenVINO's telemetry stays on for a user whose `opt_in_out` answer (~/intel/openvino_telemetry) is yes."""
    (tmp_path / "intel").mkdir()
    if answer is not None:
        (tmp_path / "intel" / "openvino_telemetry").write_text(answer)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert opted_in() is opted
