"""The `lightly` family: `lightly-embed`'s ResNet backbone from a Lightly checkpoint, a torchvision ResNet file, or a
seeded random initialisation (the weights `weights.choose_weights` picked, in the documented order).

Checkpoints written by `lightly-ssl-train` / `lightly-magic` are PyTorch Lightning files whose `state_dict` holds
`model.backbone.*` and `model.projection_head.*`; `read_lightly` is the one reader of them (embedding, the cached
zoo file's check and training all call it), with the key handling of lightly's CLI loader applied to a plain
`torch.load` (see `network.py`: the same network and the same keys without the seconds of importing `lightly.cli`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from lightly_assets.embedding.checkpoint import check_fit, read_state_dict
from lightly_assets.embedding.errors import ModelError, WeightsError
from lightly_assets.embedding.network import LIGHTLY_RESNETS, LightlyArch, build_backbone, lightly_keys
from lightly_assets.embedding.network import projection_head_shapes as _projection_head_shapes
from lightly_assets.embedding.weights import Weights

if TYPE_CHECKING:
    from lightly.cli._cli_simclr import _SimCLR

PREPROCESSING = "PIL resize (s,s) bilinear + ToTensor + Normalize(ImageNet)"
FINGERPRINT_VERSION = "lightly-assets-model/2"  # 2: batch norms folded into the convolutions
_HINT = "delete it to download the pretrained weights again"
DEFAULT_ARCH = LightlyArch()  # lightly-embed's config: resnet-18, width 1, num_ftrs 32, out_dim 128

# (block type, blocks per stage) -> lightly / torchvision architecture names.
_LIGHTLY_NAMES = {spec: name for name, spec in LIGHTLY_RESNETS.items()}
_TORCHVISION_NAMES = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


class Backbone(nn.Module):
    """`model.backbone(x)` flattened, which is exactly what `SelfSupervisedEmbedding.embed` returns per image."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(start_dim=1)


@dataclass(frozen=True)
class LightlyCheckpoint:
    """A Lightly checkpoint as lightly's CLI reads it: its architecture and its tensors under the CLI's key names
    (`backbone.*`, `projection_head.layers.*`)."""

    path: Path
    arch: LightlyArch
    state: dict[str, torch.Tensor]

    @property
    def has_head(self) -> bool:
        return any(k.startswith("projection_head.") for k in self.state)


def zoo_arch(key: str) -> LightlyArch:
    """`resnet-18/simclr/d32/w1.0` -> the LightlyArch lightly-embed builds for that zoo entry."""
    name, _, ftrs, width = key.split("/")
    return LightlyArch(name=name, width=float(width.removeprefix("w")), num_ftrs=int(ftrs.removeprefix("d")))


def network(weights: Weights, seed: int = 0) -> tuple[nn.Module, str]:
    """The network of these weights (unfolded, eval mode) and its description; a file that does not fit is an error
    naming it (a cached zoo file: a WeightsError saying how to get it again)."""
    if weights.random or weights.path is None:
        module, description = _random_lightly_model(seed)
    elif weights.source == "pretrained" and weights.zoo_key:
        module, description = _pretrained(weights.path, weights.zoo_key)
    else:
        module, description = _from_checkpoint(weights.path)
    return module.eval(), description


def read_lightly(path: Path, what: str = "") -> LightlyCheckpoint:
    """The one reader of Lightly checkpoints: lightly's CLI key handling (`model.` prefix, old `features`, old
    projection heads) and the architecture the file was trained with."""
    return _as_lightly(path, read_state_dict(path, what))


def _as_lightly(path: Path, state: Mapping[str, torch.Tensor]) -> LightlyCheckpoint:
    if not all(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}
    fixed = lightly_keys(state)
    return LightlyCheckpoint(path, _lightly_arch(path, fixed), fixed)


def _pretrained(path: Path, key: str) -> tuple[nn.Module, str]:
    """A cached zoo file must hold exactly the backbone of `key`: anything else is an error naming it."""
    try:
        checkpoint = read_lightly(path, "cached pretrained weights are")
    except ModelError as exc:
        raise WeightsError(f"{exc}; {_HINT}") from None
    want = zoo_arch(key)
    got = checkpoint.arch
    if (got.name, got.width, got.num_ftrs) != (want.name, want.width, want.num_ftrs):
        raise WeightsError(
            f"{path}: cached pretrained weights do not fit {key} (the file holds a {got.name} width {got.width:g} "
            f"with {got.num_ftrs} features); {_HINT}"
        )
    return _load_lightly(checkpoint)


def build_lightly_model(arch: LightlyArch = DEFAULT_ARCH) -> _SimCLR:
    """The network of `lightly.cli._helpers.get_model_from_config`, built from lightly's own classes.

    For writing checkpoints in lightly's format (training, tests, benchmarks); embedding does not need it
    and does not pay for its imports (`network.build_backbone` is the same backbone).
    """
    from lightly.cli._cli_simclr import _SimCLR  # lightly's CLI classes import Lightning and hydra: seconds
    from lightly.models import ResNetGenerator
    from lightly.models.batchnorm import get_norm_layer

    resnet = ResNetGenerator(arch.name, arch.width)
    last: Any = list(resnet.children())[-1]  # the classifier, a Linear
    last_conv_channels = int(last.in_features)
    features = nn.Sequential(
        get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.Conv2d(last_conv_channels, arch.num_ftrs, 1),
        nn.AdaptiveAvgPool2d(1),
    )
    return _SimCLR(features, num_ftrs=arch.num_ftrs, out_dim=arch.out_dim)


def _random_lightly_model(seed: int) -> tuple[nn.Module, str]:
    """Seeded without touching the caller's global RNG state; the same weights as lightly's classes give."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(LightlyArch())
    return Backbone(backbone), _describe_lightly(LightlyArch(), "random init")


def _describe_lightly(arch: LightlyArch, origin: str) -> str:
    width = f" width {arch.width:g}" if arch.width != 1 else ""
    return f"lightly {arch.name}{width} SimCLR backbone, {arch.num_ftrs}-d ({origin})"


def _from_checkpoint(path: Path) -> tuple[nn.Module, str]:
    state = read_state_dict(path)
    keys = list(state)
    if any(k.startswith("module.") for k in keys):
        state = {k.removeprefix("module."): v for k, v in state.items()}
        keys = list(state)
    if any(re.match(r"^(model\.)?(backbone|features)\.", k) for k in keys):
        return _load_lightly(_as_lightly(path, state))
    if any(k.startswith("layer1.") for k in keys) and "conv1.weight" in state:
        return _load_torchvision(path, state)
    raise ModelError(
        f"{path}: neither a lightly checkpoint (keys 'model.backbone.*') nor a torchvision ResNet state dict "
        f"(keys 'conv1.weight', 'layer1.*'); first keys: {keys[:5]}"
    )


def _stage_blocks(keys: list[str], stage_prefixes: list[str]) -> tuple[str, tuple[int, ...]]:
    """Block type and blocks per stage, read from key names such as `layer3.5.conv2.weight`."""
    counts = []
    for prefix in stage_prefixes:
        found = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
        counts.append(max(found) + 1 if found else 0)
    bottleneck = any(re.match(re.escape(stage_prefixes[0]) + r"\d+\.conv3\.", k) for k in keys)
    return ("bottleneck" if bottleneck else "basic"), tuple(counts)


def _lightly_arch(path: Path, state: Mapping[str, torch.Tensor]) -> LightlyArch:
    """Recover the `lightly-embed` config (name, width, num_ftrs, out_dim) the checkpoint was trained with."""
    keys = list(state)
    block, counts = _stage_blocks(keys, [f"backbone.{i}." for i in (3, 4, 5, 6)])
    name = _LIGHTLY_NAMES.get((block, counts))  # type: ignore[call-overload]
    conv1, head = state.get("backbone.1.weight"), state.get("backbone.7.weight")
    if name is None or conv1 is None or head is None:
        raise ModelError(
            f"{path}: not a lightly ResNet checkpoint: {block} blocks per stage {counts} "
            f"(expected one of {sorted(set(_LIGHTLY_NAMES.values()))}); "
            f"backbone.1.weight {'found' if conv1 is not None else 'missing'}, "
            f"backbone.7.weight {'found' if head is not None else 'missing'}"
        )
    proj = state.get("projection_head.layers.2.weight")
    return LightlyArch(
        name=name,
        width=conv1.shape[0] / 64,
        num_ftrs=int(head.shape[0]),
        out_dim=int(proj.shape[0]) if proj is not None else 128,
    )


def _load_lightly(checkpoint: LightlyCheckpoint) -> tuple[nn.Module, str]:
    """A strict load, as lightly's CLI does: the projection head is not used for embedding, but a SimCLR
    checkpoint must carry a head of the right shapes; a backbone-only file loads too."""
    path, arch, fixed = checkpoint.path, checkpoint.arch, checkpoint.state
    with torch.device("meta"):  # no random init of weights that the checkpoint replaces
        backbone = build_backbone(arch)
    expected: dict[str, torch.Tensor] = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    origin = "backbone"
    if checkpoint.has_head:
        origin = "SimCLR"
        expected |= {k: torch.empty(shape) for k, shape in _projection_head_shapes(arch).items()}
    check_fit(path, _describe_lightly(arch, origin), expected, fixed)
    weights = {  # float32 like the network lightly builds (a half-precision file is converted, as copy_ would)
        k.removeprefix("backbone."): v.float() if v.is_floating_point() else v
        for k, v in fixed.items()
        if k.startswith("backbone.")
    }
    backbone.load_state_dict(weights, strict=True, assign=True)
    return Backbone(backbone), _describe_lightly(arch, f"checkpoint {path.name}")


def _load_torchvision(path: Path, state: Mapping[str, torch.Tensor]) -> tuple[nn.Module, str]:
    """A torchvision ResNet with `fc` dropped: the output is the pooled feature vector (512 or 2048-d)."""
    block, counts = _stage_blocks(list(state), [f"layer{i}." for i in (1, 2, 3, 4)])
    name = _TORCHVISION_NAMES.get((block, counts))  # type: ignore[call-overload]
    if name is None:
        raise ModelError(
            f"{path}: not a torchvision ResNet state dict: {block} blocks per stage {counts} "
            f"(expected one of {sorted(_TORCHVISION_NAMES.values())})"
        )
    import torchvision.models  # only for torchvision checkpoints: its import costs start-up

    model = getattr(torchvision.models, name)(weights=None)
    model.fc = nn.Identity()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_fit(path, f"torchvision {name}", model.state_dict(), state)
    model.load_state_dict(state, strict=True)
    return model, f"torchvision {name} (fc dropped), checkpoint {path.name}"


def fingerprint(module: nn.Module, description: str, input_size: int, precision: str) -> str:
    """Stable over runs: every tensor's name, dtype, shape and bytes, plus everything that changes the output."""
    h = hashlib.sha256()
    arch = re.sub(r"\(.*\)$", "", description)  # the file name is not part of the identity, its weights are
    h.update(f"{FINGERPRINT_VERSION}|{arch}|{PREPROCESSING}|{input_size}|{precision}".encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def fold_batchnorms(module: nn.Module) -> nn.Module:
    """lightly's backbone with each eval-mode BatchNorm folded into the convolution before it (torch.fx).

    One pass over memory less per layer: ~8% faster in fp32 and bf16 on CPU; outputs differ from the
    unfolded network by ~1e-7 (relative) in fp32. Other networks are returned as they are.
    """
    if not (isinstance(module, Backbone) and isinstance(module.backbone, nn.Sequential)):
        return module
    return Backbone(fuse(module.backbone)).eval()


def known_dim(module: nn.Module) -> int | None:
    """The output size of lightly's backbone (its last conv's channels, pooled over any input >= 8 px).

    Known without running the network, so start-up does not pay for a probe batch of another shape than
    the real batches (the first call of each shape builds the CPU kernels, 0.1-0.5 s).
    """
    if isinstance(module, Backbone) and isinstance(module.backbone, nn.Sequential):
        last_conv = module.backbone[-2]
        if isinstance(last_conv, nn.Conv2d) and isinstance(module.backbone[-1], nn.AdaptiveAvgPool2d):
            return int(last_conv.out_channels)
    return None
