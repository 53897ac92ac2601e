"""torch against OpenVINO, model by model: images/s of each engine, conversion time, cosine between them.

usage:
  python benchmarks/bench_engines.py                    # every family, short timings
  python benchmarks/bench_engines.py --models lightly,torchvision:resnet18 --seconds 5
  python benchmarks/bench_engines.py --int8 PHOTOS_DIR  # also int8 (NNCF) on real photos: cosine and kNN cost

Each model of the models issue, one per family (lightly's network, torchvision, timm, a CLIP image tower, an
ONNX file exported here), with seeded random weights: nothing is downloaded, and speed and engine agreement do
not depend on the weights. Both engines get the same uint8 batch and the same thread count (all cores); the
torch side runs as `engine: torch` does (channels-last, bf16 autocast where the CPU has it natively, else fp32).
Cosine: min over the batch between OpenVINO's vectors and torch fp32's.

`--int8 DIR`: lightly's network (seeded weights; with `--checkpoint`, yours) on the photos in DIR: NNCF
quantisation calibrated on every 2nd photo, then on all of them the cosine of int8 to fp32 vectors and the
agreement of each photo's 5 nearest neighbours (share of the fp32 neighbours that int8 keeps), and the rate of
fp32, int8 and (where the CPU has it natively) bf16 on batches of 64, alternated.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightly_assets.embedding.engines.compiled_cache import ModelCache
from lightly_assets.embedding.engines.openvino import openvino_engine
from lightly_assets.embedding.engines.torch import TorchEngine
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.runtime import cpu_summary, native_cpu_bf16
from lightly_assets.workers import usable_cores

DEFAULT_MODELS = "lightly,torchvision:resnet18,timm:vit_tiny_patch16_224,clip:ViT-B-32,onnx:resnet18"


class _ClipImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


def build(name: str, tmp: Path) -> tuple[nn.Module | Path, nn.Module, int]:
    """(what OpenVINO converts, the torch module, input size), seeded random weights."""
    torch.manual_seed(0)
    family, _, arch = name.partition(":")
    if family == "lightly":
        from lightly_assets.embedding.factory import load_model

        module = load_model(None, input_size=64, precision="fp32").module
        return module, module, 64
    if family in ("torchvision", "onnx"):
        import torchvision

        module = getattr(torchvision.models, arch)(weights=None)
        module.fc = nn.Identity()
        module.eval()
        if family == "torchvision":
            return module, module, 224
        path = tmp / f"{arch}.onnx"
        axes = {"x": {0: "n"}, "y": {0: "n"}}
        torch.onnx.export(module, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes=axes)  # fmt: skip
        return path, module, 224
    if family == "timm":
        import timm

        module = timm.create_model(arch, pretrained=False, num_classes=0).eval()
        return module, module, module.default_cfg["input_size"][-1]
    if family == "clip":
        import open_clip

        model = open_clip.create_model(arch, pretrained=None).eval()
        module = _ClipImage(model).eval()
        return module, module, model.visual.image_size[0]
    raise SystemExit(f"unknown model family in {name!r}")


def rate(fn, pixels: np.ndarray, seconds: float) -> float:  # noqa: ANN001
    fn(pixels)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2 * len(pixels):
        fn(pixels)
        n += len(pixels)
    return n / (time.perf_counter() - start)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def compare(names: list[str], batch: int, seconds: float, tmp: Path) -> None:
    cores = usable_cores()
    torch.set_num_threads(cores)
    native = native_cpu_bf16()
    precision = "bf16" if native else "fp32"
    print(f"{'model':<30} {'px':>4} {'convert s':>9} {'torch fp32':>10} {'torch ' + precision:>10} "
          f"{'ov f32':>7} {'ov ' + precision:>7} {'cos f32':>8} {'cos ' + precision:>8}  (img/s)")  # fmt: skip
    for name in names:
        source, module, size = build(name, tmp)
        pre = Preprocessing.stretch(size)
        pixels = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        cache = ModelCache(tmp / "cache")
        start = time.perf_counter()
        ov32, _ = openvino_engine(source, f"bench {name}", pre, "fp32", cores, cache)
        convert_s = time.perf_counter() - start
        t32 = TorchEngine(module.to(memory_format=torch.channels_last), torch.device("cpu"), "fp32", pre)
        reference = t32(pixels)
        row = {"torch fp32": rate(t32, pixels, seconds), "ov f32": rate(ov32, pixels, seconds)}
        cos = {"f32": cosine(ov32(pixels), reference).min()}
        if native:
            tbf = TorchEngine(module, torch.device("cpu"), "bf16", pre)
            ovbf, _ = openvino_engine(source, f"bench {name}", pre, "bf16", cores, cache)
            row |= {"torch bf16": rate(tbf, pixels, seconds), "ov bf16": rate(ovbf, pixels, seconds)}
            cos["bf16"] = cosine(ovbf(pixels), reference).min()
        t_low = row.get("torch bf16", row["torch fp32"])
        ov_low, cos_low = row.get("ov bf16", row["ov f32"]), cos.get("bf16", cos["f32"])
        print(f"{name:<30} {size:>4} {convert_s:>9.1f} {row['torch fp32']:>10.1f} {t_low:>10.1f} "
              f"{row['ov f32']:>7.1f} {ov_low:>7.1f} {cos['f32']:>8.6f} {cos_low:>8.6f}")  # fmt: skip


def int8_cost(photos: Path, checkpoint: str | None, tmp: Path) -> None:
    from lightly_assets.embedding.decode import load_image
    from lightly_assets.embedding.factory import load_model

    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < 10:
        raise SystemExit(f"{photos}: need at least 10 photos, found {len(files)}")
    pixels = np.stack([load_image(p, 64) for p in files])
    common = {"input_size": 64, "engine": "openvino", "cache_dir": tmp / "int8-cache"}
    fp32 = load_model(checkpoint, precision="fp32", **common)
    start = time.perf_counter()
    int8 = load_model(checkpoint, precision="int8", calibration=pixels[::2], **common)
    quantise_s = time.perf_counter() - start
    a, b = fp32.embed(pixels), int8.embed(pixels)
    cos = cosine(a, b)
    k = 5
    agree = np.mean([len(set(x) & set(y)) / k for x, y in zip(_knn(a, k), _knn(b, k), strict=True)])
    models = {"fp32": fp32, "int8": int8}
    if native_cpu_bf16():  # there int8 competes with bf16, the default
        models["bf16"] = load_model(checkpoint, precision="bf16", **common)
    rates = dict.fromkeys(models, 0.0)
    for _ in range(3):  # alternated: a change of the machine's load skews every precision alike
        for name, model in models.items():
            rates[name] = max(rates[name], rate(model.embed, pixels[:64], 1.0))
    print(f"int8 on {len(files)} real photos ({photos}), weights {checkpoint or 'seeded random'}: quantise "
          f"{quantise_s:.1f}s; cosine to fp32 min {cos.min():.4f} mean {cos.mean():.4f}; {k}-NN kept {agree:.3f}; "
          f"img/s (batch 64, best of 3 alternated): {', '.join(f'{n} {r:.1f}' for n, r in rates.items())}; "
          f"int8 {rates['int8'] / rates['fp32']:.2f}x fp32"
          + (f", {rates['int8'] / rates['bf16']:.2f}x bf16" if "bf16" in rates else ""))  # fmt: skip


def _knn(x: np.ndarray, k: int) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--int8", type=Path, metavar="PHOTOS_DIR")
    p.add_argument("--checkpoint", help="--int8: a lightly checkpoint instead of seeded random weights")
    args = p.parse_args()
    import os

    print(f"machine: {cpu_summary()}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp_name:
        tmp = Path(tmp_name)
        if args.models:
            compare([m for m in args.models.split(",") if m], args.batch, args.seconds, tmp)
        if args.int8:
            int8_cost(args.int8, args.checkpoint, tmp)


if __name__ == "__main__":
    main()
