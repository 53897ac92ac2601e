"""`Embedder`: a model ready to turn uint8 pixels into vectors, whatever built it and whatever runs it.

`factory.create_embedder` makes every one of them (a named model, the lightly network, the random baseline, a
graph served warm from the converted-model cache); the pipeline, the Ray workers, the quality figure and text
search use them alike. This module imports neither torch nor OpenVINO: a warm run has no torch network at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.settings import precision_on
from lightly_assets.embedding.weights import Weights

if TYPE_CHECKING:
    from torch import nn


class Runner(Protocol):
    """An engine (`engines.torch.TorchEngine`, `engines.openvino.OpenVINOEngine`): uint8 NHWC in, (N, D) out."""

    name: str
    precision: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...

    def to(self, device: str, precision: str) -> Runner: ...


class InFlight(Protocol):
    """Batches handed to an engine that runs several at once (`engines.openvino.InFlight`); vectors come back in the
    order the batches went in: `put` may wait for the oldest, `ready` never waits, `finish` waits for all, `close`
    leaves nothing running."""

    def put(self, pixels: np.ndarray) -> list[np.ndarray]: ...

    def ready(self) -> list[np.ndarray]: ...

    def finish(self) -> list[np.ndarray]: ...

    def close(self) -> None: ...


class _OneAtATime:
    """`InFlight` of an engine that runs one batch at a time (torch): each batch runs when it is put."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def put(self, pixels: np.ndarray) -> list[np.ndarray]:
        return [self.runner(pixels)]

    def ready(self) -> list[np.ndarray]:
        return []

    def finish(self) -> list[np.ndarray]:
        return []

    def close(self) -> None:
        pass


@dataclass
class Embedder:
    """A ready embedding model: `embed` maps a uint8 NHWC batch of `prep.shape` images to float32 (N, dim).

    `threads` are the network's threads (torch's intra-op threads, set process-wide when it was made, or
    OpenVINO's), `decode_workers` the decode threads the pipeline runs beside them, `low_priority_decode` whether
    those threads yield to the network (CPU: the cores are shared) or not (GPU: decoding is the bottleneck).
    `module` is the torch network (None when served warm from the converted-model cache); `fingerprint` keys the
    embedding cache.
    """

    runner: Runner
    dim: int
    description: str
    prep: Preprocessing
    weights: Weights
    precision: str
    fingerprint: str
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    threads: int = 0
    decode_workers: int = 2
    low_priority_decode: bool = True
    spec: str = "lightly"  # what the user asked for (`LIGHTLY_ASSETS_MODEL`)
    space_key: str | None = None  # LightlyStudio's embedding space of these vectors; None: ours per dimension
    module: nn.Module | None = None

    @property
    def engine(self) -> str:
        """What runs `embed`: `openvino` or `torch`."""
        return self.runner.name

    @property
    def input_size(self) -> int:
        return self.prep.height

    @property
    def random_init(self) -> bool:
        return self.weights.random

    @property
    def checkpoint(self) -> str | None:
        """The weights file (None for the random initialisation)."""
        return str(self.weights.path) if self.weights.path else None

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a uint8 NHWC batch of `prep.shape` images; returns float32 (N, dim)."""
        return self.runner(batch)

    @property
    def streams(self) -> int:
        """Batches the engine runs at once (OpenVINO's streams); 1 for torch."""
        return int(getattr(self.runner, "streams", 1))

    def rows_per_put(self, batch_size: int) -> int:
        """Samples per `in_flight().put`: the engine's `rows_per_request` (OpenVINO: a stream's share, cut to the
        caches; torch: cut to the caches on a CPU, whole on a GPU), else the whole batch."""
        share = getattr(self.runner, "rows_per_request", None)
        return batch_size if share is None else int(share(batch_size, self.prep.height * self.prep.width))

    def in_flight(self) -> InFlight:
        """Where to put batches one after the other: an engine with streams (OpenVINO) runs the next batches while
        the caller fills another; any other runs each batch when it is put."""
        make = getattr(self.runner, "in_flight", None)
        return make() if make is not None else _OneAtATime(self.runner)

    def preprocess(self, batch: np.ndarray) -> Any:
        """The normalised float NCHW tensor the torch network takes (torch runners only: the reference in tests)."""
        preprocess = getattr(self.runner, "preprocess", None)
        if preprocess is None:
            raise ModelError(f"{self.description}: runs in {self.engine}, which normalises inside its graph")
        return preprocess(batch)

    @property
    def has_text(self) -> bool:
        """Whether the model has a text tower (CLIP): phrases and images share one space."""
        return hasattr(self.module, "embed_text")

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim) text embeddings of a CLIP model."""
        if not self.has_text:
            raise ModelError(f"{self.description}: this model has no text tower (use a CLIP model for text search)")
        return self.module.embed_text(texts)  # type: ignore[union-attr,operator]

    def to(self, device: str, precision: str | None = None) -> Embedder:
        """This model on another device (a Ray worker's): OpenVINO stays on the CPU, a torch network moves (a copy),
        in `precision`, by default its own where that device computes it natively, else fp32."""
        if self.engine == "openvino" and device == "cpu":
            return self
        precision = precision or precision_on(device, self.precision)
        if self.engine == "openvino":  # a GPU worker: the torch network runs there instead
            import torch  # see above: the warm OpenVINO path never gets here

            from lightly_assets.embedding.engines.torch import TorchEngine  # torch only where a GPU asks for it

            if self.module is None:
                raise ModelError(f"{self.description}: served from the OpenVINO cache, it cannot move to {device}")
            runner: Runner = TorchEngine(self.module, torch.device("cpu"), precision, self.prep).to(device, precision)
        else:
            runner = self.runner.to(device, precision)
        module = getattr(runner, "module", self.module)
        return dataclasses.replace(self, runner=runner, device=device, precision=precision, module=module)
