"""What this machine offers the network: CPU flags, native bf16, usable cores, and the split of threads.

`settings.place` decides with these facts (engine `auto`: OpenVINO on a CPU, about 2x torch's fp32 rate on AVX2
and 1.4x torch bf16 on AVX-512-BF16; torch on CUDA).

Choices follow measurements of the default network (lightly resnet-18, 64 px, batch 64): bf16 autocast in
channels-last is 2x (AVX-512-BF16) to 4x (AMX) faster than fp32 where the CPU does bf16 natively, and
slower than fp32 where it would be emulated; decoding a 640x480+ photo (JPEG at draft scale ~1.7 ms, PNG
in full ~8 ms) costs about a sixth of its bf16 forward pass on such CPUs. So on a CPU the network gets the
cores that decoding does not need (on small machines: all of them, and decoding fills the gaps at a lower
priority); on a GPU every core decodes. With AMX, OpenVINO's bf16 pass (~3.6 CPU-ms) costs about as much as
decoding such a photo; the decode threads then take the cores that the network's threads leave while they wait
for pixels (on 2 cores the step ran at 0.76-0.95 of what decode plus forward allow, docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lightly_assets.workers import usable_cores

if TYPE_CHECKING:  # torch is imported only where a torch device is asked about: a warm OpenVINO run skips it
    import torch

# Share of the CPU work of one sample spent decoding it (JPEG draft / PNG / video frame to 64 px) when the
# network runs in torch bf16; measured ~0.14 on 800x600 photos (20% PNG) with AVX-512-BF16.
DECODE_SHARE = 0.15
# The same with OpenVINO, whose forward pass is ~1.4x (bf16) to 2x (AVX2 f32) faster than torch's.
OPENVINO_DECODE_SHARE = 0.25
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# What bf16 and int8 run on (AMX tiles, AVX-512 bf16 and VNNI dot products): printed beside every speed figure.
_SPEED_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_summary() -> str:
    """`AMD EPYC; amx_bf16 no, amx_int8 no, avx512_bf16 yes, avx512_vnni yes; 2 cores` — beside every speed figure."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    flags = ", ".join(f"{flag} {'yes' if flag in cpu_flags() else 'no'}" for flag in _SPEED_FLAGS)
    return f"{model}; {flags}; {usable_cores()} cores"


def native_cpu_bf16(flags: frozenset[str] | None = None) -> bool:
    """bf16 maths in hardware (AMX or AVX-512-BF16), from the CPU flags (torch's own probe where none are read)."""
    if any(flag in (cpu_flags() if flags is None else flags) for flag in _BF16_FLAGS):
        return True
    if flags is not None or cpu_flags():  # the flags were read: they say no
        return False
    import torch  # only where /proc/cpuinfo cannot be read (macOS): torch probes the CPU

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def bf16_supported(device: str | torch.device) -> bool:
    """Native bf16 maths only: emulated bf16 on an old CPU is slower than fp32."""
    kind = device if isinstance(device, str) else device.type
    kind = kind.split(":", 1)[0]
    if kind == "cuda":
        import torch  # only a GPU's bf16 needs torch to tell

        return bool(torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return native_cpu_bf16()
    return False


def nvidia_present() -> bool:
    """A CUDA device may be there (then `device: auto` asks torch); decided without importing torch."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


@dataclass(frozen=True)
class ThreadPlan:
    """Threads of the network (torch intra-op or OpenVINO's `INFERENCE_NUM_THREADS`), decode threads for the
    pipeline, and whether decoding yields to the network."""

    network_threads: int
    decode_workers: int
    low_priority_decode: bool


def plan_threads(
    device_type: str, cores: int, threads: int | None = None, workers: int | None = None, engine: str = "torch"
) -> ThreadPlan:
    """Cores left after decoding go to the network (CPU); on a GPU every core decodes.

    On a CPU decoding needs `DECODE_SHARE` of the work (`OPENVINO_DECODE_SHARE` with the faster OpenVINO
    network): `floor(cores * share)` cores are kept for it (none
    on a 2-core machine) and torch gets the rest. The decode threads (one more than the cores kept, at
    least two so a slow PNG does not hold up the queue) run at a lower priority: they use the kept cores
    and whatever the network leaves idle, and yield to torch's threads rather than preempt them mid-layer.
    Measured on 2 cores under load, this ran as fast as decode threads at normal priority and faster than
    decoding only between batches (which loses the cores to other processes). Explicit values win.
    """
    cores = max(1, cores)
    if device_type == "cuda":
        return ThreadPlan(threads or 1, workers or max(2, cores), low_priority_decode=False)
    reserved = math.floor(cores * (OPENVINO_DECODE_SHARE if engine == "openvino" else DECODE_SHARE))
    return ThreadPlan(threads or max(1, cores - reserved), workers or max(2, reserved + 1), low_priority_decode=True)


def apply_torch_threads(n: int) -> None:
    """Set torch's intra-op threads (process-wide) when they differ; cheap to call again."""
    import torch  # only the torch engine has torch threads (a warm OpenVINO run never calls this)

    if n >= 1 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def lower_this_thread_priority(step: int = 5) -> bool:
    """Nice the calling thread only (Linux threads have their own nice value); False where not possible."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
        return True
    except (AttributeError, OSError):
        return False
