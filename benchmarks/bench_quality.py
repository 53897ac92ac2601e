"""kNN agreement with the weak labels for random, served-pretrained and self-supervised-trained weights, and
SimCLR training throughput in fp32 and bf16, on scikit-learn's bundled digits rendered as image folders.

    PYTHONPATH=. python benchmarks/bench_quality.py [--per-class 30] [--epochs 5] [--max-minutes 5]

Lightly's real zoo file cannot be downloaded on an offline machine: the "served pretrained" row serves, from a
127.0.0.1 HTTP server through the same download/hub-cache route, whatever checkpoint is at hand (by default the
one this script just trained, so that row must equal the trained row; pass --served FILE to serve another file).
The data is not tuned: the first `--per-class` digits of each class, upscaled to `--pixels` pixels.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def cpu_flags() -> str:
    flags = set(re.findall(r"\w+", Path("/proc/cpuinfo").read_text()))
    return ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))


def build_digits(root: Path, per_class: int, pixels: int) -> Path:
    """digits/<label>/<i>.png: 8x8 scikit-learn digits (0..16) scaled to 0..255 and upscaled, as RGB PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if seen.get(int(label), 0) >= per_class:
            continue
        seen[int(label)] = seen.get(int(label), 0) + 1
        pixels8 = (image / 16.0 * 255).astype(np.uint8)
        big = Image.fromarray(pixels8, mode="L").resize((pixels, pixels), Image.Resampling.BILINEAR).convert("RGB")
        path = root / "digits" / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        big.save(path)
    return root / "digits"


def frame_index_of(folder: Path):
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset

    return build_sample_index(scan_dataset(folder).files, folder).samples


def serve(directory: Path) -> tuple[ThreadingHTTPServer, int]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            """Quiet: the benchmark's table stays readable."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--pixels", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1.0)
    parser.add_argument("--max-minutes", type=float, default=5.0)
    parser.add_argument("--throughput-samples", type=int, default=64)
    parser.add_argument("--served", help="checkpoint to serve as the pretrained file (default: the trained one)")
    args = parser.parse_args()

    from lightly_assets.embedding.factory import load_model
    from lightly_assets.embedding.quality import knn_of_model
    from lightly_assets.embedding.training import TrainSettings, train
    from lightly_assets.embedding.weights import choose_weights, zoo_url

    print(f"cpu flags: {cpu_flags()}; torch threads {torch.get_num_threads()}; figures taken UNDER LOAD")
    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    folder = build_digits(work, args.per_class, args.pixels)
    index = frame_index_of(folder)
    print(f"dataset: {len(index)} digits ({args.pixels}x{args.pixels}), 10 weak labels, in {folder}")
    measure = partial(knn_of_model, index, folder, max_samples=len(index), batch_size=64, workers=2)

    rows: list[tuple[str, str]] = []
    random_q = measure(load_model(None))
    rows.append(("random (seeded init)", random_q.describe()))

    ckpt = work / "out" / "embedding_model.ckpt"
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, max_minutes=args.max_minutes
    )
    result = train(index, folder, ckpt, settings, progress=lambda line: print("  " + line, flush=True))
    print(
        f"training: {result.epochs} epochs ({result.stopped_by}), {result.images_seen} images "
        f"in {result.seconds:.0f} s "
        f"= {result.images_per_s:.1f} img/s on {result.device} {result.precision}; loss per epoch "
        f"{[round(v, 3) for v in result.losses]}"
    )
    trained_q = measure(load_model(str(ckpt)))

    served = Path(args.served) if args.served else ckpt
    site = work / "site" / "models"
    site.mkdir(parents=True)
    name = Path(zoo_url()).name
    shutil.copyfile(served, site / name)
    httpd, port = serve(work / "site")
    os.environ["TORCH_HOME"] = str(work / "torch_home")
    try:
        weights = choose_weights(url=f"http://127.0.0.1:{port}/models/{name}")
    finally:
        httpd.shutdown()
    assert weights.source == "pretrained", weights.note
    served_q = measure(load_model(weights))
    what = "the checkpoint trained above" if served == ckpt else str(served)
    rows.append((f"served 'pretrained' file ({what}; the real zoo file is not downloadable here)", served_q.describe()))
    rows.append((f"self-supervised, {result.epochs} epochs from random on this CPU", trained_q.describe()))

    print("\nkNN agreement with the weak labels (leave-one-out, cosine, k=5), under load:")
    for label, figure in rows:
        print(f"  {label:<95} {figure}")
    gain = trained_q.knn.agreement - random_q.knn.agreement
    print(f"  trained - random: {gain:+.3f} ({'helps' if gain > random_q.knn.margin else 'no clear gain'})")

    n, b = args.throughput_samples, args.batch_size
    print(f"\nSimCLR training throughput ({n} samples, batch {b}, 64 px), under load:")
    small = index.iloc[: args.throughput_samples]
    rates = {}
    for precision in ("fp32", "bf16", "fp32", "bf16"):  # the second of each is the warm figure
        run = TrainSettings(epochs=1, batch_size=args.batch_size, precision=precision, max_minutes=None)
        rates[precision] = train(small, folder, work / f"tp-{precision}.ckpt", run).images_per_s
    from lightly_assets.embedding.runtime import bf16_supported

    native = bf16_supported(torch.device("cpu"))
    print(f"  fp32 {rates['fp32']:.1f} img/s, bf16 {rates['bf16']:.1f} img/s (native bf16: {native}), "
          f"bf16/fp32 = {rates['bf16'] / rates['fp32']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
