"""Lightly's CLI network (`lightly-embed`'s ResNet backbone) and its checkpoint keys, in plain torch.

`lightly-embed` builds `Sequential(BatchNorm2d(3), *ResNetGenerator(name, width).children()[:-1],
Conv2d(C, num_ftrs, 1), AdaptiveAvgPool2d(1))` and loads Lightning checkpoints after renaming their keys.
Importing `lightly.models` (timm, torchvision.ops, torch._dynamo) and `lightly.cli` (pytorch_lightning,
hydra) costs several seconds of start-up, so the same modules, parameter names, construction order (hence
the same seeded initialisation) and key renaming are written here with torch alone. Tests compare both
ways against lightly's own classes, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# lightly's ResNetGenerator names -> (block type, blocks per stage).
LIGHTLY_RESNETS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet-9": ("basic", (1, 1, 1, 1)),
    "resnet-18": ("basic", (2, 2, 2, 2)),
    "resnet-34": ("basic", (3, 4, 6, 3)),
    "resnet-50": ("bottleneck", (3, 4, 6, 3)),
    "resnet-101": ("bottleneck", (3, 4, 23, 3)),
    "resnet-152": ("bottleneck", (3, 8, 36, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}
_GENERATOR_CLASSES = 10  # ResNetGenerator's default linear layer; built (and dropped) to keep the RNG order


@dataclass(frozen=True)
class LightlyArch:
    """The settings `lightly-embed` takes from its config (`model.name`, `width`, `num_ftrs`, `out_dim`)."""

    name: str = "resnet-18"
    width: float = 1.0
    num_ftrs: int = 32
    out_dim: int = 128


class _Block(nn.Module):
    """lightly's BasicBlock / Bottleneck: same attribute names, so the same state-dict keys."""

    def __init__(self, kind: str, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * _EXPANSION[kind]
        self.bottleneck = kind == "bottleneck"
        if self.bottleneck:
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
        else:
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(F.relu(out)))
        out += self.shortcut(x)
        return F.relu(out)


def build_backbone(arch: LightlyArch = LightlyArch()) -> nn.Sequential:
    """`lightly-embed`'s backbone; under the same torch seed its initial weights equal lightly's."""
    if arch.name not in LIGHTLY_RESNETS:
        raise ValueError(f"unknown lightly ResNet {arch.name!r}; one of {', '.join(LIGHTLY_RESNETS)}")
    kind, blocks = LIGHTLY_RESNETS[arch.name]
    base = int(64 * arch.width)
    conv1 = nn.Conv2d(3, base, kernel_size=3, stride=1, padding=1, bias=False)
    bn1 = nn.BatchNorm2d(base)
    stages, in_planes = [], base
    for i, n in enumerate(blocks):
        planes = base * 2**i
        stage = []
        for stride in [1 if i == 0 else 2] + [1] * (n - 1):
            stage.append(_Block(kind, in_planes, planes, stride))
            in_planes = planes * _EXPANSION[kind]
        stages.append(nn.Sequential(*stage))
    nn.Linear(in_planes, _GENERATOR_CLASSES)  # ResNetGenerator's classifier: drawn from the RNG, never used
    # No ReLU after bn1: lightly's ResNet applies it in forward(), which the CLI's Sequential skips.
    return nn.Sequential(
        nn.BatchNorm2d(3), conv1, bn1, *stages, nn.Conv2d(in_planes, arch.num_ftrs, 1), nn.AdaptiveAvgPool2d(1)
    )


def lightly_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The key renaming of lightly's CLI loader (`_filter_state_dict` + `_fix_projection_head_keys`).

    Drops the first dotted part (`model.`), renames `features` to `backbone` (checkpoints before lightly
    1.0.6) and inserts `layers` into old projection/prediction head keys.
    """
    fixed = {}
    for key, value in state.items():
        parts = ["backbone" if p == "features" else p for p in key.split(".")[1:]]
        if any(head in key for head in ("projection_head", "prediction_head")) and "layers" not in key:
            parts.insert(1, "layers")
        fixed[".".join(parts)] = value
    return fixed


def projection_head_shapes(arch: LightlyArch) -> dict[str, tuple[int, ...]]:
    """`SimCLRProjectionHead(num_ftrs, num_ftrs, out_dim, batch_norm=False)`: Linear, ReLU, Linear."""
    d, out = arch.num_ftrs, arch.out_dim
    return {
        "projection_head.layers.0.weight": (d, d),
        "projection_head.layers.0.bias": (d,),
        "projection_head.layers.2.weight": (out, d),
        "projection_head.layers.2.bias": (out,),
    }
