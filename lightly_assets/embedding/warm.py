"""A model served straight from the converted-model cache: no torch import, no network built, no conversion.

`load_model` (model.py) builds the torch network, converts it once and stores, beside the converted graph, what
describes the model (its fingerprint, dimension, description). The next run with the same weights and settings
finds that entry here by the weights file's sha256 (or the random seed) and runs it with OpenVINO alone: about
0.2 s instead of the seconds of importing torch, building and converting the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightly_assets.embedding import runtime
from lightly_assets.embedding.engine import ModelCache, OpenVINOEngine, cache_key, openvino_engine
from lightly_assets.embedding.preprocessing import Preprocessing

# Bump when the way a weights file becomes a network changes (key handling, folded batch norms, ...).
LOADER_VERSION = "lightly-assets-loader/1"
DEFAULT_NETWORK = "lightly resnet-18 width 1 num_ftrs 32"  # what `load_model(None)` seeds


def identity(weights_sha256: str | None, seed: int) -> str:
    """Who the network is, without building it: the weights file's bytes, or the seed of the random init."""
    if weights_sha256:
        return f"{LOADER_VERSION}|weights sha256 {weights_sha256}"
    return f"{LOADER_VERSION}|random {DEFAULT_NETWORK} seed {seed}"


@dataclass(frozen=True)
class CpuDevice:
    """Stands in for `torch.device("cpu")` where torch is not imported (`.type`, `str()`)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


@dataclass
class WarmModel:
    """The interface of `LoadedModel` that the pipeline and the assets use, run by a cached OpenVINO graph."""

    compiled: OpenVINOEngine
    dim: int
    description: str
    checkpoint: str | None
    random_init: bool
    precision: str
    fingerprint: str
    input_size: int
    notes: list[str] = field(default_factory=list)
    threads: int = 0
    decode_workers: int = 2
    low_priority_decode: bool = True
    engine: str = "openvino"
    module: None = None
    device: CpuDevice = field(default_factory=CpuDevice)
    preprocessing: Preprocessing | None = None
    spec: str = "lightly"
    space_key: str | None = None
    onnx_path: str | None = None
    has_text: bool = False

    @property
    def prep(self) -> Preprocessing:
        return self.preprocessing or Preprocessing.stretch(self.input_size)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.compiled(batch)


def nvidia_present() -> bool:
    """A CUDA device may be there (then `device: auto` asks torch, which is the GPU path anyway)."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def warm_model(
    checkpoint: str | os.PathLike[str] | None,
    weights_sha256: str | None,
    input_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    decode_workers: int | None = None,
    engine: str = "torch",
    cache_dir: str | os.PathLike[str] | None = None,
    **_: object,
) -> WarmModel | None:
    """The cached OpenVINO model for these weights and settings, or None (then `load_model` builds it)."""
    on_cpu = device == "cpu" or (device == "auto" and not nvidia_present())
    if not on_cpu or engine not in ("auto", "openvino") or (checkpoint and not weights_sha256):
        return None
    effective, notes = runtime.choose_precision(precision, "cpu", runtime.native_cpu_bf16(), "openvino")
    pre = Preprocessing.stretch(input_size)  # lightly-embed's, as `LoadedModel.prep`
    cache = ModelCache(cache_dir)
    ident = identity(weights_sha256 if checkpoint else None, seed)
    if cache.lookup(cache_key(ident, pre, effective)) is None:
        return None
    plan = runtime.plan_threads("cpu", runtime.usable_cores(), threads, decode_workers, engine="openvino")
    compiled, meta = openvino_engine(lambda: None, ident, pre, effective, plan.network_threads, cache)
    return WarmModel(
        compiled=compiled,
        dim=int(meta["dim"]),
        description=meta["description"],
        checkpoint=str(checkpoint) if checkpoint else None,
        random_init=bool(meta["random_init"]),
        precision=effective,
        fingerprint=meta["fingerprint"],
        input_size=input_size,
        notes=notes + list(meta.get("notes", [])),
        threads=plan.network_threads,
        decode_workers=plan.decode_workers,
        low_priority_decode=plan.low_priority_decode,
        preprocessing=pre,
    )
