"""What every family returns: `Network`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.weights import Weights


@dataclass
class Network:
    """A built network and everything that identifies what it computes.

    `dim` is None where only a probe batch can tell (a torchvision ResNet file of the lightly family).
    `fingerprint(tag)` keys the embedding cache, `engine_identity(tag)` the converted-model cache; `tag` is the
    precision as `settings.Placement.tag` writes it. `fold`: a faster network computing the same (BN folding).
    """

    module: nn.Module
    preprocessing: Preprocessing
    description: str
    weights: Weights
    dim: int | None
    onnx_path: Path | None = None
    space_key: str | None = None  # LightlyStudio's embedding space for these vectors (its own name for MobileCLIP)
    fingerprint: Callable[[str], str] = lambda tag: _unset(tag)
    engine_identity: Callable[[str], str] = lambda tag: _unset(tag)
    fold: Callable[[nn.Module], nn.Module] = lambda module: module


def _unset(tag: str) -> str:
    raise AssertionError(f"families.build sets the network's identity (asked for {tag!r})")
