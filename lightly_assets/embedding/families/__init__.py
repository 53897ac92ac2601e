"""The networks, one module per family: a spec and its weights in, a `Network` out.

Every family returns a `Network`: a torch module in eval mode mapping normalised float NCHW (N, 3, H, W) to (N, D)
(for `onnx:` a module that runs the file, plus its path for an engine that takes ONNX directly), the
`Preprocessing` the model was trained with, the weights' provenance, and how to fingerprint what it computes.
`lightly` is built from the weights `weights.choose_weights` picked; the named families fetch their own
(`weights.fetch_named` / `fetch_hf`, into the library's cache) and never fall back to random weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
from types import ModuleType

from lightly_assets.embedding.engines.compiled_cache import LOADER_VERSION, lightly_identity
from lightly_assets.embedding.families import clip, lightly, onnx, timm, torchvision
from lightly_assets.embedding.families.base import Network
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import Weights

__all__ = ["BuildOptions", "Network", "build"]

# Each module imports its library (torchvision, timm, open_clip, onnxruntime) only when it builds a network.
_FAMILIES: dict[str, ModuleType] = {
    "torchvision": torchvision, "timm": timm, "open_clip": clip, "mobileclip": clip, "onnx": onnx,
}  # fmt: skip


def build(spec: ModelSpec, options: BuildOptions | None = None, weights: Weights | None = None) -> Network:
    """The network of `spec`; `weights` are those of the lightly family (the named ones fetch their own)."""
    options = options or BuildOptions()
    if spec.family == "lightly":
        return _lightly(weights or Weights("random"), options)
    network: Network = _FAMILIES[spec.family].build(spec, options)
    network.module.eval()
    identity = f"{lightly.FINGERPRINT_VERSION}|{spec}|{network.weights.sha256}|{network.preprocessing.describe()}|"
    return dataclasses.replace(
        network,
        fingerprint=lambda tag: hashlib.sha256(f"{identity}{tag}".encode()).hexdigest()[:32],
        engine_identity=lambda tag: f"{identity}{tag}|{LOADER_VERSION}",
    )


def _lightly(weights: Weights, options: BuildOptions) -> Network:
    module, description = lightly.network(weights, options.seed)
    size = options.input_size
    return Network(
        module,
        Preprocessing.stretch(size),
        description,
        weights,
        lightly.known_dim(module),
        fingerprint=lambda tag: lightly.fingerprint(module, description, size, tag),  # the weights as loaded
        engine_identity=lambda _tag: lightly_identity(weights, options.seed),
        fold=lightly.fold_batchnorms,
    )
