"""What runs a network on a batch: uint8 NHWC pixels in, float32 (N, D) vectors out.

`torch.TorchEngine` (CUDA, `engine: torch` on a CPU, and the reference of every engine test) and
`openvino.OpenVINOEngine` (the CPU default, its converted graphs kept by `compiled_cache`) share one call.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    """A network ready to run: `name` (`openvino` / `torch`), the `precision` it computes in."""

    name: str
    precision: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...
