"""How a model runs, asked (`RunSettings`) and decided (`Placement`): the one place that resolves the device, the
engine, the precision and the threads, for embedding, training and the Ray workers alike.

The rules, from measurements of the default network (see `runtime.py`): engine `auto` is OpenVINO on a CPU and torch
on CUDA; precision `auto` is bf16 where the hardware computes it natively (AMX / AVX-512-BF16 CPUs, CUDA with bf16),
fp16 on older GPUs, fp32 elsewhere; `fp32` always runs as asked (bit-level reproducibility); `int8` (opt-in) is
OpenVINO's post-training quantisation. Deciding never imports torch when the device is a CPU: a warm OpenVINO run
does without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from lightly_assets.embedding import runtime
from lightly_assets.embedding.errors import ModelError
from lightly_assets.workers import usable_cores

if TYPE_CHECKING:
    from lightly_assets.embedding.preprocessing import Preprocessing

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
ENGINES = ("auto", "openvino", "torch")
#: uint8 NHWC samples, or a function of the model's preprocessing that decodes them (called only when needed).
Calibration = Union[np.ndarray, Callable[["Preprocessing"], np.ndarray]]


@dataclass(frozen=True)
class RunSettings:
    """What the user asked for (the `embedding_model` resource's fields; `None`: sized for the machine).

    `engine` defaults to `torch`, the reference every parity test compares with; the resource asks for `auto`.
    `cache_dir`: converted OpenVINO models (None: `engines.compiled_cache.default_cache_dir()`).
    """

    device: str = "auto"
    precision: str = "auto"
    engine: str = "torch"
    threads: int | None = None
    decode_workers: int | None = None
    cache_dir: str | Path | None = None
    calibration: Calibration | None = None


@dataclass(frozen=True)
class Placement:
    """What runs: `device` (`cpu`, `cuda`, `cuda:1`), `engine` (`openvino`/`torch`), `precision`, the thread plan,
    and notes for whatever differs from what was asked."""

    device: str
    engine: str
    precision: str
    threads: runtime.ThreadPlan
    notes: tuple[str, ...] = ()

    @property
    def device_type(self) -> str:
        return self.device.split(":", 1)[0]

    @property
    def tag(self) -> str:
        """The precision as the fingerprint records it (`bf16`, `bf16 openvino`)."""
        return self.precision if self.engine == "torch" else f"{self.precision} openvino"


def place(settings: RunSettings) -> Placement:
    """Device, engine, precision and threads for these settings on this machine; a bad value is a ModelError."""
    device = resolve_device(settings.device)
    device_type = device.split(":", 1)[0]
    try:
        engine = choose_engine(settings.engine, device_type)
        precision, notes = choose_precision(settings.precision, device_type, _native_bf16(device, settings), engine)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    plan = runtime.plan_threads(device_type, usable_cores(), settings.threads, settings.decode_workers, engine)
    return Placement(device, engine, precision, plan, tuple(notes))


def _native_bf16(device: str, settings: RunSettings) -> bool:
    if settings.precision in ("fp32", "int8"):
        return False  # not asked: no probe
    return runtime.bf16_supported(device)


def resolve_device(asked: str) -> str:
    """`auto` is CUDA when there is one, else the CPU; a named device must exist. torch is asked only about GPUs."""
    if asked == "cpu" or (asked == "auto" and not runtime.nvidia_present()):
        return "cpu"
    import torch  # a GPU may be there: only torch can tell (a CPU-only run never gets here)

    if asked == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(asked)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {asked!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {asked!r} asked for, but CUDA is not available on this machine")
    return str(device)


def choose_engine(asked: str, device_type: str) -> str:
    """`auto`: OpenVINO on a CPU, torch on CUDA; `openvino` runs on the CPU only, `torch` anywhere."""
    if asked not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {asked!r}")
    if asked == "auto":
        return "openvino" if device_type == "cpu" else "torch"
    if asked == "openvino" and device_type != "cpu":
        raise ValueError(f"engine openvino runs on the CPU here, not on {device_type}: use engine torch there")
    return asked


def choose_precision(asked: str, device_type: str, native_bf16: bool, engine: str = "torch") -> tuple[str, list[str]]:
    """The precision that runs, and a note when it is not the one asked for (the rules in the module's docstring)."""
    if asked not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {asked!r}")
    if asked == "fp32":
        return "fp32", []
    if asked == "int8":
        if engine == "openvino":
            return "int8", []
        return "fp32", ["int8 asked for, but int8 runs only with engine openvino: falling back to fp32"]
    where = "this GPU" if device_type == "cuda" else f"this {device_type}"
    if asked == "auto":
        if native_bf16:
            return "bf16", []
        if device_type == "cuda":
            return "fp16", []
        return "fp32", [f"auto precision: no native bf16 on {where}, using fp32"]
    if asked == "bf16":
        if native_bf16:
            return "bf16", []
        return "fp32", [f"bf16 asked for, but {where} has no native bf16 support: falling back to fp32"]
    if device_type == "cuda":
        return "fp16", []
    return "fp32", [f"fp16 asked for, but fp16 runs only on a GPU here: falling back to fp32 on {where}"]


def precision_on(device: str, precision: str) -> str:
    """A model moved to another device (a Ray worker's) keeps its precision where that device computes it."""
    return precision if precision != "bf16" or runtime.bf16_supported(device) else "fp32"


def training_precision(asked: str, device: str) -> str:
    """Training computes in fp32 or bf16 (autocast) only: `auto` and `bf16` are bf16 where it is native."""
    if asked not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be fp32, bf16 or auto, got {asked!r}")
    return "bf16" if asked != "fp32" and runtime.bf16_supported(device) else "fp32"
