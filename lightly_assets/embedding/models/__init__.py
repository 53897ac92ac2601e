"""Loading a model has one path: a spec (what the user asked for) -> its weights (`weights.py`, the library's own
cache) -> the network (one module per family here) -> `model.load_network`, which hands it to the engine.

Every family returns a `Network`: a torch module in eval mode mapping normalised float NCHW (N, 3, H, W) to
(N, D) (for `onnx:` a module that runs the file, plus its path for an engine that takes ONNX directly), the
`Preprocessing` the model was trained with, and the weights' provenance.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from lightly_assets.embedding.models.spec import ACCEPTED, FAMILIES, ModelError, ModelSpec, parse_spec
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.weights import STALL_TIMEOUT_S, Weights

__all__ = ["ACCEPTED", "FAMILIES", "BuildOptions", "ModelError", "ModelSpec", "Network", "build", "parse_spec"]


_MODULES = {"open_clip": "clip", "mobileclip": "clip"}  # family -> module, where they differ


@dataclass(frozen=True)
class BuildOptions:
    """What a family may need beyond the spec: a download mirror, timeouts, ONNX's fallback size and statistics."""

    mirror: str | None = None
    stall_timeout: float = STALL_TIMEOUT_S
    log: Callable[[str], None] | None = None
    input_size: int = 224
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass
class Network:
    """A built network and everything that identifies what it computes."""

    module: nn.Module
    preprocessing: Preprocessing
    description: str
    weights: Weights
    dim: int
    onnx_path: Path | None = None
    space_key: str | None = None  # LightlyStudio's embedding space for these vectors (its own name for MobileCLIP)


def build(spec: ModelSpec, options: BuildOptions = BuildOptions()) -> Network:
    """The network of a named model (every family but `lightly`, which `model.load_model` builds)."""
    if not spec.named:
        raise ModelError("the lightly model is built by embedding.model.load_model")
    module = _MODULES.get(spec.family, spec.family)
    family = importlib.import_module(f"lightly_assets.embedding.models.{module}")
    network = family.build(spec, options)
    network.module.eval()
    return network
