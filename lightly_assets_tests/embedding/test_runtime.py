"""How the network runs: precision choice, thread split, cheap start-up, honest rates."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_assets.embedding import runtime, settings
from lightly_assets.embedding.cache import EmbeddingCache
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.families.lightly import build_lightly_model
from lightly_assets.embedding.network import LightlyArch, build_backbone, lightly_keys
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets.embedding.runtime import bf16_supported
from lightly_assets.workers import usable_cores
from lightly_assets_tests.media import blocky_image
from lightly_assets_tests.reference import lightly_renamed_keys
from lightly_assets_tests.tables import frame_index_for

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("asked", "device", "native", "expected"),
    [
        ("auto", "cpu", True, "bf16"),  # AMX / AVX-512-BF16
        ("auto", "cpu", False, "fp32"),  # emulated bf16 would be slower than fp32
        ("auto", "cuda", True, "bf16"),
        ("auto", "cuda", False, "fp16"),  # pre-Ampere GPUs: fp16 tensor cores
        ("fp32", "cpu", True, "fp32"),  # one setting away, always honoured
        ("fp32", "cuda", True, "fp32"),
        ("bf16", "cpu", False, "fp32"),
        ("bf16", "cuda", True, "bf16"),
        ("fp16", "cuda", True, "fp16"),
        ("fp16", "cpu", True, "fp32"),
    ],
)
def test_precision_choice(asked: str, device: str, native: bool, expected: str) -> None:
    chosen, notes = settings.choose_precision(asked, device, native)
    assert chosen == expected
    fell_back = asked not in ("auto", chosen)
    assert bool(notes) == (fell_back or (asked == "auto" and chosen == "fp32"))


def test_native_bf16_from_cpu_flags() -> None:
    assert runtime.native_cpu_bf16(frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert runtime.native_cpu_bf16(frozenset({"amx_bf16", "amx_tile"}))
    assert not runtime.native_cpu_bf16(frozenset({"avx2", "avx512f"}))
    summary = runtime.cpu_summary()
    assert all(f"{flag} " in summary for flag in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni"))
    assert summary.endswith("cores")


def test_default_precision_is_auto_and_fp32_stays_exact() -> None:
    auto, fp32 = load_model(None, input_size=16), load_model(None, input_size=16, precision="fp32")
    assert auto.precision == ("bf16" if bf16_supported(torch.device("cpu")) else "fp32")
    assert fp32.precision == "fp32"
    pixels = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    a, b = auto.embed(pixels), fp32.embed(pixels)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"auto ({auto.precision}) vs fp32 cosine: min {cosine.min():.6f}")
    assert cosine.min() > 0.99


@pytest.mark.parametrize(
    ("device", "cores", "expected"),
    [
        ("cpu", 1, runtime.ThreadPlan(1, 2, low_priority_decode=True)),
        # decoding is ~15% of the work: no core to spare on 2, its threads fill the gaps at a lower priority
        ("cpu", 2, runtime.ThreadPlan(2, 2, low_priority_decode=True)),
        ("cpu", 8, runtime.ThreadPlan(7, 2, low_priority_decode=True)),
        ("cpu", 16, runtime.ThreadPlan(14, 3, low_priority_decode=True)),
        ("cuda", 16, runtime.ThreadPlan(1, 16, low_priority_decode=False)),  # the GPU computes, every core decodes
        ("cuda", 1, runtime.ThreadPlan(1, 2, low_priority_decode=False)),
    ],
)
def test_thread_plan(device: str, cores: int, expected: runtime.ThreadPlan) -> None:
    assert runtime.plan_threads(device, cores) == expected
    explicit = runtime.plan_threads(device, cores, threads=3, workers=5)
    assert (explicit.network_threads, explicit.decode_workers) == (3, 5)


@pytest.mark.parametrize(
    ("cores", "expected"),
    [
        (2, runtime.ThreadPlan(2, 2, low_priority_decode=True)),
        (8, runtime.ThreadPlan(6, 3, low_priority_decode=True)),  # the faster network leaves decoding more
        (16, runtime.ThreadPlan(12, 5, low_priority_decode=True)),
    ],
)
def test_thread_plan_for_openvino(cores: int, expected: runtime.ThreadPlan) -> None:
    assert runtime.plan_threads("cpu", cores, engine="openvino") == expected


@pytest.mark.parametrize(
    ("asked", "device", "expected"),
    [
        ("auto", "cpu", "openvino"),
        ("auto", "cuda", "torch"),
        ("torch", "cpu", "torch"),
        ("openvino", "cpu", "openvino"),
    ],
)
def test_engine_choice(asked: str, device: str, expected: str) -> None:
    assert settings.choose_engine(asked, device) == expected


def test_engine_choice_refuses_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="openvino runs on the CPU"):
        settings.choose_engine("openvino", "cuda")
    with pytest.raises(ValueError, match="engine must be one of"):
        settings.choose_engine("tensorrt", "cpu")


def test_int8_is_opt_in_and_only_on_openvino() -> None:
    assert settings.choose_precision("int8", "cpu", True, "openvino") == ("int8", [])
    chosen, notes = settings.choose_precision("int8", "cpu", True, "torch")
    assert chosen == "fp32" and "int8" in notes[0]
    assert settings.choose_precision("auto", "cpu", False, "openvino")[0] == "fp32"  # never int8 by default
    assert settings.choose_precision("auto", "cpu", True, "openvino")[0] == "bf16"


@pytest.mark.lightly_tools
def test_zoo_url_is_lightlys_without_importing_the_zoo() -> None:
    from lightly.models.zoo import ZOO

    from lightly_assets.embedding import weights

    assert weights.zoo_url() == weights.DEFAULT_ZOO_URL == ZOO[weights.DEFAULT_ZOO_KEY]
    assert weights.zoo_url("resnet-34/simclr/d16/w1.0") == ZOO["resnet-34/simclr/d16/w1.0"]
    code = (
        "import sys, os\n"
        "os.environ['TORCH_HOME'] = '/tmp/th'\n"
        "from lightly_assets.embedding import download, weights\n"
        "weights.zoo_url(); print(download.hub_checkpoints_dir(), 'torch' in sys.modules, 'lightly' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["/tmp/th/hub/checkpoints", "False", "False"]


def test_hub_dir_is_torchs() -> None:
    import torch.hub

    from lightly_assets.embedding import download

    assert download.hub_checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"


def test_load_model_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        m = load_model(None, input_size=16, threads=1, decode_workers=3)
        assert torch.get_num_threads() == m.threads == 1 and m.decode_workers == 3
        m = load_model(None, input_size=16)
        plan = runtime.plan_threads("cpu", usable_cores())
        assert m.threads == torch.get_num_threads() == plan.network_threads
        assert (m.decode_workers, m.low_priority_decode) == (plan.decode_workers, plan.low_priority_decode)
    finally:
        torch.set_num_threads(before)


def test_lower_priority_touches_only_the_calling_thread() -> None:
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def work() -> None:
        if runtime.lower_this_thread_priority(3):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main
    assert seen in ([], [min(19, main + 3)])


@pytest.mark.lightly_tools
@pytest.mark.parametrize("arch", [LightlyArch(), LightlyArch("resnet-9", 0.5, 16, 8), LightlyArch("resnet-50", 0.125)])
def test_backbone_without_lightly_is_lightlys(arch: LightlyArch) -> None:
    """Same keys, same seeded weights, same outputs as lightly's own classes."""
    torch.manual_seed(11)
    ours = build_backbone(arch).eval()
    torch.manual_seed(11)
    theirs = build_lightly_model(arch).backbone.eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.lightly_tools
def test_checkpoint_keys_renamed_as_lightlys_cli_does() -> None:
    t = torch.zeros(1)
    old = {
        "model.features.0.weight": t,  # before lightly 1.0.6
        "model.backbone.3.0.conv1.weight": t,
        "model.projection_head.0.weight": t,  # before the head refactoring
        "model.projection_head.layers.2.bias": t,
        "model.prediction_head.1.bias": t,
    }
    assert lightly_keys(old) == lightly_renamed_keys(old)


@pytest.mark.e2e  # a fresh Python process imports the package (~5 CPU-s)
def test_embedding_imports_no_lightly_cli_and_no_torchvision(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_lightly_model()
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    code = (
        "import sys, numpy as np\n"
        "from lightly_assets.embedding.factory import load_model\n"
        "from lightly_assets.embedding.pipeline import embed_samples\n"
        f"m = load_model({str(ckpt)!r}, input_size=16)\n"
        "m.embed(np.zeros((2, 16, 16, 3), np.uint8))\n"
        "heavy = [n for n in ('lightly.cli', 'lightly.models', 'torchvision', 'pytorch_lightning', 'timm', 'dagster')"
        " if n in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_rate_counts_this_run_only_and_cached_run_has_none(tmp_path: Path) -> None:
    names = [f"a/{i}.jpg" for i in range(5)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 40, 30, seed=i)
    index = frame_index_for(tmp_path, names)
    model = load_model(None, input_size=16)
    cache = EmbeddingCache(tmp_path / "cache.npz")
    first = embed_samples(index, tmp_path, model, options=EmbedOptions(batch_size=2), cache=cache)
    assert first.embedded == 5 and first.samples_per_s > 0 and first.first_batch_at is not None
    assert first.workers == model.decode_workers
    again = embed_samples(index, tmp_path, model, options=EmbedOptions(batch_size=2), cache=cache)
    assert again.reused == 5 and again.embedded == 0
    assert again.samples_per_s == 0.0 and again.first_batch_at is None and again.workers == 0
    np.testing.assert_array_equal(first.matrix, again.matrix)


@pytest.mark.parametrize("low", [True, False])
def test_decode_threads_at_any_priority_give_the_same_rows(tmp_path: Path, low: bool) -> None:
    """Decode threads at a lower priority (CPU) or not (GPU plan): same vectors, same order."""
    names = [f"a/{i}.{'png' if i % 3 == 0 else 'jpg'}" for i in range(9)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 64, 48, seed=i)
    index = frame_index_for(tmp_path, names)
    model = load_model(None, input_size=16, precision="fp32")
    reference = embed_samples(index, tmp_path, model, options=EmbedOptions(batch_size=4, workers=1))
    model.low_priority_decode = low
    result = embed_samples(index, tmp_path, model, options=EmbedOptions(batch_size=4, workers=3))
    assert result.filenames == reference.filenames == names
    np.testing.assert_allclose(result.matrix, reference.matrix, rtol=1e-5, atol=1e-6)


@pytest.mark.lightly_tools
def test_half_precision_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    torch.manual_seed(2)
    net = build_lightly_model()
    full, half = tmp_path / "full.ckpt", tmp_path / "half.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, full)
    torch.save({"state_dict": {f"model.{k}": v.half() if v.is_floating_point() else v
                               for k, v in net.state_dict().items()}}, half)  # fmt: skip
    a, b = load_model(str(full), 16, precision="fp32"), load_model(str(half), 16, precision="fp32")
    assert all(p.dtype == torch.float32 for p in b.module.parameters())
    pixels = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(a.embed(pixels), b.embed(pixels), rtol=0.05, atol=0.02)


@pytest.mark.lightly_tools
def test_batchnorms_folded_for_inference_same_vectors(tmp_path: Path) -> None:
    """The network that runs has no BatchNorm after a convolution, and gives lightly's vectors (fp32)."""
    torch.manual_seed(4)
    net = build_lightly_model(LightlyArch("resnet-9", 0.5, 16, 8))
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    net.eval()
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    m = load_model(str(ckpt), input_size=16, precision="fp32")
    batchnorms = [mod for mod in m.module.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert len(batchnorms) == 1  # only the input normalisation, which no convolution precedes
    assert not any(mod.training for mod in m.module.modules())
    pixels = np.random.default_rng(3).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        reference = net.backbone(m.preprocess(pixels).contiguous()).flatten(1).numpy()
    np.testing.assert_allclose(m.embed(pixels), reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())
