"""The one torch runner: normalisation, channels-last layout, autocast for bf16/fp16, pinned CUDA transfers.

Production runs it (CUDA, `engine: torch` on a CPU, the fallback of `engine: auto`), and every engine test and
benchmark compares with it. The arithmetic is lightly's transform (`ToTensor` then `Normalize`) on uint8 NHWC
batches that are already resized.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from lightly_assets.embedding.preprocessing import Preprocessing

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Input pixels per forward pass and thread on a CPU: a batch whose activations leave the caches runs slower per
# sample. On 2 AVX-512 cores in bf16 (docs/benchmarks.md, 2026-12-04) the default network at 64 px ran 90-98
# samples/s with 16 per pass against 72-80 with 64; at 224 px 7.3-7.7 with 1-2 against 5.6-6.3 with 64.
CPU_PIXELS_PER_THREAD = 64 * 64 * 8


class TorchEngine:
    """`module` (eval, NCHW float in, (N, D) out) on `device`, computing in `precision`.

    On CUDA the uint8 batch goes through a reused pinned buffer and is copied without blocking; the float
    conversion and normalisation then run on the GPU (4x fewer bytes cross the bus than floats).
    """

    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, precision: str, preprocessing: Preprocessing):
        self.module, self.device, self.precision, self.preprocessing = module, device, precision, preprocessing
        self._autocast = _AUTOCAST.get(precision)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=device).view(shape)
        self._std = torch.tensor(preprocessing.std, dtype=torch.float32, device=device).view(shape)
        self._pinned: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW (a channels-last view, no copy on the CPU), lightly's arithmetic."""
        if self.device.type == "cuda":
            x = self._to_gpu(batch)
        else:
            pixels = batch if batch.flags.writeable else batch.copy()  # torch wants writable memory
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        return x.to(torch.float32).mul_(1.0 / 255).sub_(self._mean).div_(self._std)

    def _to_gpu(self, batch: np.ndarray) -> torch.Tensor:
        """Through page-locked memory allocated once per batch shape; the next batch waits for the copy (an event)
        before it overwrites the shared buffer."""
        if self._pinned is None or self._pinned.shape[1:] != batch.shape[1:] or len(self._pinned) < len(batch):
            self._pinned = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
            self._copied = None
        if self._copied is not None:
            self._copied.synchronize()  # the previous copy out of the shared buffer has finished
        pinned = self._pinned[: len(batch)]
        pinned.numpy()[...] = batch
        x = pinned.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return x.permute(0, 3, 1, 2)

    def rows_per_request(self, batch_size: int, pixels: int) -> int:
        """Samples of `pixels` each per forward pass: the whole batch on a GPU; on a CPU no more than
        CPU_PIXELS_PER_THREAD per thread (at least one)."""
        if self.device.type != "cpu":
            return batch_size
        budget = CPU_PIXELS_PER_THREAD * torch.get_num_threads()
        return max(1, min(batch_size, budget // max(1, pixels)))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """A batch's vectors, in forward passes of `rows_per_request` samples."""
        rows = self.rows_per_request(len(pixels), pixels.shape[1] * pixels.shape[2])
        if rows >= len(pixels):
            return self._forward(pixels)
        return np.concatenate([self._forward(pixels[i : i + rows]) for i in range(0, len(pixels), rows)])

    @torch.inference_mode()
    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        x = self.preprocess(pixels)
        if self._autocast is not None:
            with torch.autocast(device_type=self.device.type, dtype=self._autocast):
                y = self.module(x)
        else:
            y = self.module(x)
        return y.float().cpu().numpy()

    def to(self, device: str, precision: str) -> TorchEngine:
        """The same network on another device (a copy: the original keeps running where it is)."""
        target = torch.device(device)
        if target == self.device and precision == self.precision:
            return self
        module = copy.deepcopy(self.module).to(target) if target != self.device else self.module
        return TorchEngine(module, target, precision, self.preprocessing)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pinned"] = state["_copied"] = None  # page-locked buffers and CUDA events stay in their process
        return state
