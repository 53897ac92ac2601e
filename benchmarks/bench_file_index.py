"""file_index speed on many small files, side by side with a bare os.scandir walk and LightlyDataset.

usage: python benchmarks/bench_file_index.py [--files 100000] [--folders 100] [--dir /tmp/bench_file_index]
       python benchmarks/bench_file_index.py --quick   # 2,000 files in 10 folders

The files are tiny valid PNGs (the same bytes, hard-linked would hide stat costs, so they are copies). Each
tool runs once after a warm-up walk, so all three see a warm page cache.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

from PIL import Image


def make_tree(root: Path, files: int, folders: int) -> None:
    if (root / ".done").exists():
        return
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 30, 60)).save(buf, format="PNG")
    data = buf.getvalue()
    per = files // folders
    for f in range(folders):
        d = root / f"weak-label-{f:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            (d / f"img-{i:06d}.png").write_bytes(data)
    (root / ".done").touch()


def bare_walk(root: Path) -> int:
    n = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir():
                    stack.append(e.path)
                else:
                    n += 1
    return n


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - start, n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--folders", type=int, default=100)
    p.add_argument("--dir", default="/tmp/bench_file_index")
    p.add_argument("--quick", action="store_true", help="2,000 files in 10 folders")
    a = p.parse_args()
    if a.quick:
        a.files, a.folders = 2000, 10
    root = Path(a.dir) / f"{a.files}_{a.folders}"
    make_tree(root, a.files, a.folders)
    from lightly.data import LightlyDataset

    from lightly_assets.dataset.roots import fingerprint
    from lightly_assets.dataset.scan import scan_dataset

    bare_walk(root)  # warm the page cache
    rows = [
        ("bare os.scandir walk", *timed(bare_walk, root)),
        (
            "file_index (stat only, with its fingerprint)",
            *timed(lambda r: len(scan_dataset(r, verify=False).files), root),
        ),
        ("folder fingerprint (the sensor's walk)", *timed(lambda r: len(fingerprint(r)) and a.files, root)),
        ("file_index (+ image headers)", *timed(lambda r: len(scan_dataset(r, verify=True).files), root)),
        ("LightlyDataset(input_dir)", *timed(lambda r: len(LightlyDataset(str(r))), root)),
    ]
    base = rows[0][1]
    print(f"{a.files:,} files in {a.folders} folders")
    print(f"{'tool':42s} {'seconds':>9s} {'files':>9s} {'x bare walk':>12s}")
    for name, seconds, n in rows:
        print(f"{name:42s} {seconds:9.3f} {n:9d} {seconds / base:12.2f}")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
