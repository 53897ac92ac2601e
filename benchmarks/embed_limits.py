"""The embedding step's limit on this machine: the network's forward-only rate and the decode cost per sample.

usage (bench_embed.py runs it in a process of its own):
  python benchmarks/embed_limits.py '{"checkpoint": CKPT, "input_size": 64, "batch_size": 64, "seconds": 8,
                                      "data": DIR}'

Prints one JSON line: forward-only samples/s per setting on ready pixels (OpenVINO f32/bf16, torch fp32/bf16 x
contiguous/channels-last, all cores), the best setting's rate on one core, CPU ms to decode one sample per kind,
and the embedding step (defaults) alternated twice with the best forward-only pass over the same data, so a
change of the machine's load skews both alike. With a CUDA GPU the forward-only settings are the torch engine's
on the GPU (fp32/bf16/fp16, at the pipeline's batch and 4x it), fed decoded uint8 batches from host memory as
the pipeline feeds it, and there is no one-core rate (the cores only decode).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("BENCH_CODE", str(REPO)))  # the code it was asked for


def load_as_the_resource(checkpoint: str, settings: dict):  # noqa: ANN202
    """The model as `embedding_model` loads it (engine auto, warm cache served without torch); an older
    checkout without the engine loads it with `load_model`."""
    try:
        from lightly_assets.embedding.download import sha256_of
        from lightly_assets.embedding.factory import load_model
        from lightly_assets.embedding.weights import Weights
    except ImportError:  # a checkout before the embedding factory
        from lightly_assets.embedding.model import load_model

        return load_model(checkpoint, **{k: v for k, v in settings.items() if k != "engine"})
    cache_dir = os.environ.get("LIGHTLY_ASSETS_ENGINE_CACHE")  # as definitions.py binds it to the resource
    weights = Weights("checkpoint", Path(checkpoint), sha256_of(Path(checkpoint)))
    return load_model(weights, **{"engine": "auto", "cache_dir": cache_dir, **settings})


def _engine_rate(engine, pixels: np.ndarray, seconds: float, at_least: int) -> float:  # noqa: ANN001
    """Samples/s of an engine (OpenVINO, or torch on CUDA: it returns host arrays, so each call has finished)
    on a ready uint8 batch (2 warm-up calls first)."""
    engine(pixels)
    engine(pixels)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < at_least:
        engine(pixels)
        n += len(pixels)
    return n / (time.perf_counter() - start)


def _forward_rate(module, x, precision: str, seconds: float, at_least: int) -> float:  # noqa: ANN001
    """Samples/s of `module` on the ready batch `x` (2 warm-up calls first)."""
    import torch

    def step() -> None:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            module(x)

    step()
    step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < at_least:
        step()
        n += len(x)
    return n / (time.perf_counter() - start)


def measure(job: dict) -> None:
    """Forward-only throughput on ready tensors (all cores, each precision x memory layout); then the
    embedding step with default settings and the best forward-only setting, alternated twice in this one
    process, so that a change of the machine's load between runs does not skew their ratio."""
    import torch

    from lightly_assets.embedding.factory import load_model
    from lightly_assets.workers import usable_cores

    cores, size = usable_cores(), job["input_size"]
    x = torch.randn(job["batch_size"], 3, size, size)
    pixels = np.random.default_rng(0).integers(0, 256, (job["batch_size"], size, size, 3), dtype=np.uint8)
    if torch.cuda.is_available():
        return _alternate(job, None, *_cuda_rates(job, size, pixels))
    results, modules, engines = {}, {}, {}
    for precision in ("fp32", "bf16"):
        model = load_model(job["checkpoint"], input_size=size, precision=precision, threads=cores, engine="openvino")
        if model.precision == precision and model.engine == "openvino":
            engines[precision] = model.runner
            results[f"openvino {precision}"] = _engine_rate(model.runner, pixels, job["seconds"], 3 * len(x))
    for precision in ("fp32", "bf16"):
        model = load_model(job["checkpoint"], input_size=size, precision=precision, threads=cores, engine="torch")
        if model.precision != precision:
            continue
        for layout in ("contiguous", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            module = model.module.to(memory_format=fmt)
            results[f"{precision} {layout}"] = _forward_rate(module, x.contiguous(memory_format=fmt), precision,
                                                             job["seconds"], 3 * len(x))  # fmt: skip
        modules[precision] = model.module
    best = max(results, key=results.get)
    first, precision = best.split()
    if first == "openvino":
        one = load_model(job["checkpoint"], input_size=size, precision=precision, threads=1, engine="openvino")
        one_core = _engine_rate(one.runner, pixels, job["seconds"], 3 * len(x))

        def forward_pass(n: int) -> float:
            return _engine_rate(engines[precision], pixels, 0.0, n)
    else:
        fmt = torch.channels_last if precision == "channels_last" else torch.contiguous_format
        precision, best_module, best_x = first, modules[first].to(memory_format=fmt), x.contiguous(memory_format=fmt)
        torch.set_num_threads(1)
        one_core = _forward_rate(best_module, best_x, precision, job["seconds"], 3 * len(x))

        def forward_pass(n: int) -> float:
            torch.set_num_threads(cores)
            return _forward_rate(best_module, best_x, precision, 0.0, n)

    _alternate(job, one_core, results, forward_pass, best)


def _alternate(job: dict, one_core: float | None, results: dict, forward_pass, best: str) -> None:  # noqa: ANN001
    """The embedding step (defaults) and the best forward-only pass in turn over the same data; the JSON line."""
    import torch

    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.embedding.pipeline import embed_samples

    data, size = Path(job["data"]), job["input_size"]
    frames = build_sample_index(scan_dataset(data).files, data).samples
    default = load_as_the_resource(job["checkpoint"], {"input_size": size})
    pairs = []
    for _ in range(job.get("rounds", 2)):
        forward = forward_pass(len(frames))
        if getattr(default, "engine", "torch") == "torch":
            torch.set_num_threads(default.threads)
        pairs.append((embed_samples(frames, data, default).samples_per_s, forward))
    report = {"forward": results, "one_core": one_core, "decode_ms": decode_cost(data, size), "interleaved": pairs,
              "best": best, "device": str(getattr(default, "device", "cpu"))}  # fmt: skip
    print(json.dumps(report))


def _cuda_rates(job: dict, size: int, pixels: np.ndarray):  # noqa: ANN202
    """The torch engine on the GPU per precision and batch (uint8 in host memory, vectors back: the pipeline's
    calls), and the best setting at the pipeline's batch with its pass for `_alternate`."""
    from lightly_assets.embedding.factory import load_model

    results, runners = {}, {}
    for precision in ("fp32", "bf16", "fp16"):
        model = load_model(job["checkpoint"], input_size=size, precision=precision, engine="torch", device="cuda")
        if model.precision != precision:
            continue
        runners[precision] = model.runner
        for batch in (len(pixels), 4 * len(pixels)):
            ready = np.resize(pixels, (batch, *pixels.shape[1:]))
            results[f"cuda {precision} b{batch}"] = _engine_rate(model.runner, ready, job["seconds"], 3 * batch)
    best = max((k for k in results if k.endswith(f"b{len(pixels)}")), key=results.get)
    runner = runners[best.split()[1]]

    def forward_pass(n: int) -> float:
        return _engine_rate(runner, pixels, 0.0, n)

    return results, forward_pass, best


def decode_cost(data: Path, size: int, limit: int = 120) -> dict[str, float]:
    """CPU milliseconds to decode one sample as the pipeline does, one thread, per kind (JPEG at draft scale,
    PNG and other images in full, video frames) and over all of them ("all", weighted as the data is)."""
    from lightly_assets.dataset.video import iter_frames
    from lightly_assets.embedding.decode import load_image

    videos = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
    files = sorted(f for f in data.rglob("*") if f.is_file())
    images, clips = (
        [f for f in files if f.suffix.lower() not in videos],
        [f for f in files if f.suffix.lower() in videos],
    )
    step = max(1, len(images) // limit)
    cost: dict[str, list[float]] = {}
    for path in images[::step][:limit]:
        start = time.thread_time()
        load_image(path, size)
        kind = "jpeg draft" if path.suffix.lower() in (".jpg", ".jpeg") else path.suffix.lower().lstrip(".")
        cost.setdefault(kind, []).append(time.thread_time() - start)
    for path in clips[:1]:
        start, n = time.thread_time(), 0
        for _ in iter_frames(path, size=(size, size), threads=False):
            n += 1
            if n >= limit:
                break
        cost["video frame"] = [(time.thread_time() - start) / max(1, n)] * n
    out = {kind: 1000 * sum(v) / len(v) for kind, v in cost.items()}
    every = [t for v in cost.values() for t in v]
    out["all"] = 1000 * sum(every) / max(1, len(every))
    return out


if __name__ == "__main__":
    measure(json.loads(sys.argv[1]))
