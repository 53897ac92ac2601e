"""The embedding network: lightly CLI checkpoints and torchvision ResNets load, bad ones fail up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.families.lightly import build_lightly_model
from lightly_assets.embedding.network import LightlyArch
from lightly_assets.embedding.runtime import bf16_supported
from lightly_assets_tests.reference import lightly_backbone_vectors, lightly_training_state

pytestmark = pytest.mark.lightly_tools  # lightly's own classes build the checkpoints


def _pixels(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _randomise_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics, so a checkpoint that is loaded wrongly cannot look right."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


DEFAULT_ARCH = LightlyArch()  # lightly-embed's config: resnet-18, width 1, num_ftrs 32, out_dim 128


def _lightly_cli_checkpoint(path: Path, arch: LightlyArch = DEFAULT_ARCH, seed: int = 7) -> Path:
    """What lightly-ssl-train writes: a Lightning checkpoint of SelfSupervisedEmbedding (keys `model.*`)."""
    torch.manual_seed(seed)
    model = build_lightly_model(arch)
    _randomise_batchnorm(model, seed)
    state = {
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": lightly_training_state(model),
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    torch.save(state, path)
    return path


def test_default_model_is_seeded_random_init_and_says_so() -> None:
    a = load_model(None, input_size=32, seed=3)
    assert a.random_init and a.checkpoint is None
    assert a.dim == 32 and "resnet-18" in a.description and "random" in a.description
    assert any("RANDOM" in note for note in a.notes)
    assert not a.module.training
    state = torch.get_rng_state()
    b = load_model(None, input_size=32, seed=3)
    assert torch.equal(state, torch.get_rng_state()), "loading must not disturb the caller's RNG"
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.embed(_pixels()), b.embed(_pixels()))
    assert load_model(None, input_size=32, seed=4).fingerprint != a.fingerprint
    assert load_model(None, input_size=40, seed=3).fingerprint != a.fingerprint


def test_lightly_cli_checkpoint_loads_unchanged(tmp_path: Path) -> None:
    ckpt = _lightly_cli_checkpoint(tmp_path / "lightly_epoch_1.ckpt")
    m = load_model(str(ckpt), input_size=32, precision="fp32")
    assert not m.random_init and m.dim == 32 and m.checkpoint == str(ckpt)
    pixels = _pixels()
    ours = m.embed(pixels)
    reference = lightly_backbone_vectors(ckpt, DEFAULT_ARCH, m.preprocess(pixels))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    # Other weights give other vectors: the checkpoint really was used.
    assert not np.allclose(ours, load_model(None, input_size=32).embed(pixels), atol=1e-3)


def test_lightly_checkpoint_with_other_settings_is_recognised(tmp_path: Path) -> None:
    arch = LightlyArch(name="resnet-9", width=0.5, num_ftrs=16, out_dim=8)
    ckpt = _lightly_cli_checkpoint(tmp_path / "small.ckpt", arch)
    m = load_model(str(ckpt), input_size=16, precision="fp32")
    assert m.dim == 16 and "resnet-9" in m.description and "width 0.5" in m.description
    reference = lightly_backbone_vectors(ckpt, arch, m.preprocess(_pixels(size=16)))
    np.testing.assert_allclose(m.embed(_pixels(size=16)), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_torchvision_resnet18_state_dict(tmp_path: Path) -> None:
    import torchvision  # ~2.5 s on its own: imported by the two tests that build its ResNet

    torch.manual_seed(1)
    net = torchvision.models.resnet18(weights=None)
    _randomise_batchnorm(net, 1)
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    m = load_model(str(tmp_path / "resnet18.pth"), input_size=32, precision="fp32")
    assert m.dim == 512 and "resnet18" in m.description
    net.fc = torch.nn.Identity()
    net.eval()
    pixels = _pixels()
    with torch.no_grad():
        reference = net(m.preprocess(pixels).contiguous()).numpy()
    np.testing.assert_allclose(m.embed(pixels), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_wrong_architecture_fails_before_any_work(tmp_path: Path) -> None:
    import torchvision  # ~2.5 s on its own: imported by the two tests that build its ResNet

    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer2.1.conv1.weight"]
    state["layer2.1.conv9.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ModelError, match=r"broken\.pth.*missing keys: \['layer2\.1\.conv1\.weight'\]") as info:
        load_model(str(tmp_path / "broken.pth"))
    assert "unexpected keys: ['layer2.1.conv9.weight']" in str(info.value)

    ckpt = torch.load(_lightly_cli_checkpoint(tmp_path / "x.ckpt"), weights_only=True)
    ckpt["state_dict"]["model.backbone.7.weight"] = torch.zeros(32, 256, 1, 1)
    torch.save(ckpt, tmp_path / "shape.ckpt")
    with pytest.raises(ModelError, match=r"shape\.ckpt.*shape mismatches.*backbone\.7\.weight"):
        load_model(str(tmp_path / "shape.ckpt"))

    torch.save({"state_dict": {"encoder.blocks.0.attn.weight": torch.zeros(2)}}, tmp_path / "vit.ckpt")
    with pytest.raises(ModelError, match=r"vit\.ckpt: neither a lightly checkpoint.*encoder\.blocks"):
        load_model(str(tmp_path / "vit.ckpt"))
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"garbage\.ckpt: not a readable PyTorch checkpoint"):
        load_model(str(tmp_path / "garbage.ckpt"))
    with pytest.raises(ModelError, match=r"absent\.ckpt: checkpoint file not found"):
        load_model(str(tmp_path / "absent.ckpt"))


def test_bad_settings() -> None:
    with pytest.raises(ModelError, match="precision"):
        load_model(None, precision="fp8")
    with pytest.raises(ModelError, match="unknown device"):
        load_model(None, device="warp-drive")
    with pytest.raises(ModelError, match="input_size"):
        load_model(None, input_size=2)


def test_bf16_close_to_fp32() -> None:
    fp32 = load_model(None, input_size=32, precision="fp32")
    bf16 = load_model(None, input_size=32, precision="bf16")
    assert fp32.fingerprint != bf16.fingerprint or bf16.precision == "fp32"
    if not bf16_supported(bf16.device):
        assert bf16.precision == "fp32" and any("falling back to fp32" in n for n in bf16.notes)
        return
    assert bf16.precision == "bf16"
    a, b = fp32.embed(_pixels(8)), bf16.embed(_pixels(8))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"bf16 vs fp32 cosine similarity: min {cosine.min():.6f}, mean {cosine.mean():.6f}")
    assert cosine.min() > 0.99
