"""LightlyStudio's load alone: `upload_dataset` of N small JPEGs with their vectors, cold, then with 0.1% new files.

usage:
  python benchmarks/bench_studio_load.py --files 10000
  python benchmarks/bench_studio_load.py --quick                 # 500 files
  PYTHONPATH=/path/to/other/checkout python benchmarks/bench_studio_load.py --files 10000   # another version's code

The JPEGs come from benchmarks/make_data.py (kept under --dir and reused); the vectors are seeded per file name (32-d),
so a rerun stores the same vectors and only new files are new. The DuckDB file is new for every call. Printed: wall
and CPU seconds of each upload (LightlyStudio's import paid before, apart), samples per second, peak RSS.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from bench_scale import cpu_flags, load_average
from make_data import make_small_jpegs


def _index_and_csv(folder: Path, csv: Path):
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.lightly_csv import write_embeddings_csv

    index = build_sample_index(scan_dataset(folder).files, folder).samples
    names = index["filename"].tolist()
    vectors = np.stack([np.random.default_rng(zlib.crc32(n.encode())).standard_normal(32) for n in names])
    write_embeddings_csv(csv, names, vectors.astype(np.float32), index["label"].tolist())
    return index


def _upload(target, folder: Path, index, csv: Path) -> tuple[float, float, object]:
    from lightly_assets.publish.studio import upload_dataset

    wall, cpu = time.perf_counter(), time.process_time()
    result = upload_dataset(target, folder, index, csv)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_studio_load")
    p.add_argument("--quick", action="store_true", help="500 files")
    a = p.parse_args()
    files = 500 if a.quick else a.files
    new = max(1, math.ceil(files * 0.001))
    folder = a.dir / f"jpegs-{files}"
    if not (folder / ".done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_small_jpegs(folder, files)
        (folder / ".done").touch()
    for extra in folder.glob("*/img-*.jpg"):
        if int(extra.stem.split("-")[1]) >= files:
            extra.unlink()
    os.environ["LIGHTLY_STUDIO_ANALYTICS_ENABLED"] = "false"
    from lightly_assets.publish.studio import StudioTarget
    from lightly_assets.publish.studio.database import import_studio

    start = time.perf_counter()
    import_studio()
    print(f"import lightly_studio: {time.perf_counter() - start:.1f} s; CPU: {cpu_flags()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_studio_load_") as tmp:
        work = Path(tmp)
        target = StudioTarget(db_file=work / "studio.db", dataset_name="load")
        index = _index_and_csv(folder, work / "embeddings.csv")
        cold = _upload(target, folder, index, work / "embeddings.csv")
        make_small_jpegs(folder, new, start=files)
        index = _index_and_csv(folder, work / "embeddings.csv")
        warm = _upload(target, folder, index, work / "embeddings.csv")
    print(f"{'':14}{'samples':>9}{'added':>7}{'wall s':>9}{'CPU s':>8}{'samples/s':>11}")
    for name, (wall, cpu, result) in (("cold", cold), (f"+{new} files", warm)):
        print(f"{name:14}{result.samples:9d}{result.added:7d}{wall:9.2f}{cpu:8.2f}{result.samples / wall:11.0f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"incremental / cold: {warm[0] / cold[0]:.3f}; peak RSS {rss:.0f} MiB")
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
