"""What the user asked for: `LIGHTLY_ASSETS_MODEL` / `embedding_model.model`, parsed once into a `ModelSpec`, and what
building its network may need beyond it (`BuildOptions`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lightly_assets.embedding.download import STALL_TIMEOUT_S
from lightly_assets.embedding.errors import ModelError

FAMILIES = ("lightly", "torchvision", "timm", "open_clip", "mobileclip", "onnx")
ACCEPTED = (
    "lightly (default), torchvision:NAME (e.g. torchvision:resnet50, torchvision:efficientnet_b0/IMAGENET1K_V1), "
    "timm:NAME (e.g. timm:vit_small_patch14_dinov2.lvd142m, timm:convnext_tiny.fb_in22k), "
    "open_clip:ARCH/PRETRAINED (e.g. open_clip:ViT-B-32/openai), mobileclip:s0 (LightlyStudio's own MobileCLIP), "
    "onnx:/path/model.onnx"
)


@dataclass(frozen=True)
class ModelSpec:
    """`family` is one of FAMILIES; `name` what follows the colon (empty for `lightly`)."""

    family: str
    name: str = ""

    def __str__(self) -> str:
        return self.family if not self.name else f"{self.family}:{self.name}"

    @property
    def named(self) -> bool:
        """A model the user named: it never falls back to random weights."""
        return self.family != "lightly"

    def slug(self) -> str:
        """A file- and key-safe form, e.g. `timm-resnet18.a1_in1k`."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", str(self).replace(":", "-")).strip("-")


def parse_spec(text: str | None) -> ModelSpec:
    """`timm:resnet18` -> ModelSpec("timm", "resnet18"); anything unknown is one line listing what is accepted."""
    text = (text or "lightly").strip()
    family, _, name = text.partition(":")
    family = family.strip().lower().replace("-", "_")
    name = name.strip()
    if family == "lightly" and not name:
        return ModelSpec("lightly")
    if family == "openclip":
        family = "open_clip"
    if family not in FAMILIES or family == "lightly" or not name:
        raise ModelError(f"model {text!r} is not understood; accepted: {ACCEPTED}")
    if family == "open_clip" and "/" not in name:
        raise ModelError(f"model {text!r}: open_clip needs ARCH/PRETRAINED (e.g. open_clip:ViT-B-32/openai)")
    return ModelSpec(family, name)


@dataclass(frozen=True)
class BuildOptions:
    """What a family may need beyond the spec: a download mirror, timeouts, the input size (lightly's, and ONNX's
    fallback), ONNX's statistics, the random initialisation's seed."""

    mirror: str | None = None
    stall_timeout: float = STALL_TIMEOUT_S
    log: Callable[[str], None] | None = None
    input_size: int = 64  # lightly-embed's; an ONNX file without a static size takes it too
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    seed: int = 0
