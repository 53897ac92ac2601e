"""Embedding on Ray: the same dataset embedded locally and on a two-node loopback Ray cluster, and the per-run
overhead of reaching the cluster.

usage:
  python benchmarks/bench_ray.py [--images 192] [--videos 2] [--frames 48]
  python benchmarks/bench_ray.py --quick   # 32 images, 1 video x 16 frames: checks the script

Both nodes run on this one machine (1 CPU each, in a network namespace of their own with loopback only), so this
proves the path and shows Ray's overhead here; it is not a speed-up. A real cluster adds nodes (and GPUs).
Each Ray run is a new Ray job, as each Dagster run is: its worker processes start, import torch and fetch the
model, which is the per-run overhead measured here with a one-image dataset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_dataset(root: Path, images: int, videos: int, frames: int) -> Path:
    """The benchmark's dataset (benchmarks/make_data.py, 160x120) and a one-image dataset for the per-run overhead."""
    from make_data import make_images, make_videos

    folder = make_images(root / "bench", images, (160, 120), classes=1, png_every=0, flat=False)
    make_videos(folder, videos, frames, (160, 120))
    make_images(root / "tiny", 1, (160, 120), classes=1, png_every=0, flat=False, seed=1)
    return folder


def embed(folder: Path, executor=None) -> tuple[float, int, set[str]]:
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.embedding.factory import load_model
    from lightly_assets.embedding.pipeline import embed_samples

    index = build_sample_index(scan_dataset(folder).files, folder).samples
    model = load_model(None, input_size=64, seed=0, precision="fp32")
    start = time.perf_counter()
    result = embed_samples(index, folder, model, executor=executor)
    return time.perf_counter() - start, len(result.filenames), result.nodes


def inside(work: Path) -> None:
    """In the namespace: start the cluster, time connect, a one-image run and the dataset, stop it all."""
    from lightly_assets.embedding.distributed import RayExecutor
    from lightly_assets_tests import ray_cluster

    out: dict = {}
    cluster = None
    try:
        start = time.perf_counter()
        cluster = ray_cluster.start()
        out["cluster_start_s"] = time.perf_counter() - start
        import ray

        connects = []
        for _ in range(3):
            start = time.perf_counter()
            ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
            ray.shutdown()
            connects.append(time.perf_counter() - start)
        out["connect_s"] = connects
        out["tiny_s"], _, _ = embed(work / "tiny", RayExecutor(address=cluster.address))
        seconds, samples, nodes = embed(work / "bench", RayExecutor(address=cluster.address))
        out.update(ray_s=seconds, ray_samples=samples, ray_nodes=len(nodes))
    finally:
        out["left_running"] = ray_cluster.stop_all(cluster)
        (work / "ray.json").write_text(json.dumps(out))


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
    return ", ".join(f"{f}={'yes' if f in flags.split() else 'no'}" for f in ("amx_bf16", "avx512_bf16"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="32 images, 1 video x 16 frames")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.images, args.videos, args.frames = 32, 1, 16
    if args.inside:
        inside(Path(args.inside))
        return
    from lightly_assets_tests import ray_cluster

    if not ray_cluster.namespaces_available():
        raise SystemExit("needs `unshare -n` (root or user namespaces) to keep the cluster on loopback")
    with tempfile.TemporaryDirectory(prefix="bench_ray") as tmp:
        work = Path(tmp)
        folder = make_dataset(work, args.images, args.videos, args.frames)
        local_s, samples, _ = embed(folder)
        env_cmd = ray_cluster.in_namespace([sys.executable, __file__, "--inside", str(work)])
        subprocess.run(env_cmd, cwd=REPO, check=True)
        ray_out = json.loads((work / "ray.json").read_text())
    assert ray_out["ray_samples"] == samples and not ray_out["left_running"], ray_out
    overhead = ray_out["tiny_s"]
    print(f"embedding {samples} samples ({args.images} images, {args.videos} videos x {args.frames} frames), 64 px,")
    print(f"resnet-18 fp32; CPU flags: {cpu_flags()}; figures taken UNDER LOAD (machine shared with other jobs)")
    print("one machine: this proves the Ray path and shows its overhead, it is not a speed-up")
    print(f"{'':34}{'seconds':>10}{'samples/s':>12}{'vs local':>10}")
    print(f"{'local (in-process, 2 cores)':34}{local_s:10.2f}{samples / local_s:12.1f}{1.0:10.2f}")
    ray_s = ray_out["ray_s"]
    print(f"{'ray, 2 nodes x 1 CPU (whole run)':34}{ray_s:10.2f}{samples / ray_s:12.1f}{local_s / ray_s:10.2f}")
    net = max(ray_s - overhead, 1e-9)
    print(f"{'ray, minus per-run overhead':34}{net:10.2f}{samples / net:12.1f}{local_s / net:10.2f}")
    print(f"ray nodes that embedded: {ray_out['ray_nodes']}; cluster start {ray_out['cluster_start_s']:.1f} s")
    connects = ", ".join(f"{c:.2f}" for c in ray_out["connect_s"])
    print(
        f"per-run overhead: ray.init+shutdown {connects} s; a one-image run (connect, cold workers, model) "
        f"{overhead:.2f} s"
    )


if __name__ == "__main__":
    main()
