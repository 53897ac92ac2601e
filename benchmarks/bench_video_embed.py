"""Video-frame embedding: our pipeline beside Lightly's own `VideoDataset` (`lightly-embed`), and its memory bound.

usage:
  python benchmarks/bench_video_embed.py                 # 3 videos x 300 frames 640x480, lightly + ours fp32/bf16
  python benchmarks/bench_video_embed.py --data DIR      # an existing folder of videos instead
  python benchmarks/bench_video_embed.py --memory        # our peak RSS: 1 x 3000 frames against 1 x 300 frames

Videos are made by shared/bench/make_data.py (mp4 h264, mov h264, avi mpeg4, in turn). Both sides load one
checkpoint file in lightly's CLI format (bench_embed.py's seeded init), at the same input size and batch size.
Each run is its own process, timed from the outside from start to CSV written (imports, scan, frame index,
model load, decoding, embedding, CSV); frames/s is the CSV's row count over that wall time. Peak RSS is the
largest process of the run's tree (`wait4`). The load average (1 min) is read before and after each run,
because the machine may be shared.

Lightly 1.6 reads videos only through torchvision.io (removed in torchvision 0.26), so `lightly-embed` runs
from its own virtual environment (--lightly-venv), made here once with pip from PyPI:
torch 2.9.1, torchvision 0.24.1, lightly 1.6.0, av. PyPI has no CPU-only torch wheel for x86_64, so that
environment holds the CUDA build (several GB); it runs on the CPU like ours (`trainer.gpus=0`). It runs with
`loader.num_workers=0`: with DataLoader workers it has hung on videos on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# Run as a script, so this folder is on sys.path: the checkpoint writer and our child run are bench_embed's.
from bench_embed import _make_data_script, _run_measured, _run_ours, _write_checkpoint

from lightly_assets.lightly_csv import read_embeddings_csv

LIGHTLY_REQUIREMENTS = ("torch==2.9.1", "torchvision==0.24.1", "lightly==1.6.0", "av")
TARGET_SPEEDUP = 3.0
MEMORY_LIMIT = 1.5
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _lightly_embed(venv: Path) -> Path:
    """`lightly-embed` of a venv where lightly can read videos; the venv is made once and reused."""
    exe, python = venv / "bin" / "lightly-embed", venv / "bin" / "python"
    probe = "import lightly.data._video as v, sys; sys.exit(0 if v.VIDEO_SUPPORT_AVAILABLE else 1)"
    if exe.is_file() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return exe
    print(f"making {venv}: pip install {' '.join(LIGHTLY_REQUIREMENTS)} (once; several GB)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *LIGHTLY_REQUIREMENTS], check=True)
    if subprocess.run([str(python), "-c", probe]).returncode != 0:
        raise SystemExit(f"{venv}: lightly still cannot read videos (VIDEO_SUPPORT_AVAILABLE is False)")
    return exe


def _make_videos(out: Path, videos: int, frames: int) -> Path:
    cmd = [sys.executable, str(_make_data_script()), str(out), "--images", "0", "--videos", str(videos),
           "--frames", str(frames)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out / "videos"


def _load() -> float:
    return os.getloadavg()[0]


def _run_lightly(data: Path, ckpt: Path, work: Path, exe: Path, args: argparse.Namespace) -> dict:
    work.mkdir()
    cmd = [
        str(exe),
        f"input_dir={data}",
        f"checkpoint={ckpt}",
        f"collate.input_size={args.input_size}",
        f"loader.batch_size={args.batch_size}",
        "loader.num_workers=0",
        "trainer.gpus=0",
        f"hydra.run.dir={work / 'hydra'}",
    ]
    load0 = _load()
    wall, rss, text = _run_measured(cmd, work)
    stored = re.findall(r"Embeddings are stored at (\S+)", _ANSI.sub("", text))
    csv = Path(stored[-1]) if stored else work / "embeddings.csv"
    if not csv.is_file():
        raise SystemExit(f"lightly-embed wrote no CSV where it said ({csv}):\n{text[-2000:]}")
    names, _, _ = read_embeddings_csv(csv)
    return {"name": "lightly-embed fp32", "wall": wall, "rss": rss, "csv": csv, "n": len(names),
            "loadavg": (load0, _load())}  # fmt: skip


def _run_our(data: Path, ckpt: Path, work: Path, args: argparse.Namespace, precision: str) -> dict:
    load0 = _load()
    run = _run_ours(data, ckpt, work, args, precision, draft=False)  # draft only concerns JPEGs
    run["loadavg"] = (load0, _load())
    return run


def _compare(reference: Path, other: Path) -> str:
    """Same sample names? Row order? Cosine of the embeddings of the frames both have."""
    ref_names, ref, _ = read_embeddings_csv(reference)
    names, m, _ = read_embeddings_csv(other)
    if names == ref_names:
        verdict = "same filenames, same order"
    elif sorted(names) == sorted(ref_names):
        verdict = "same filenames, other order"
    else:
        only_ref = sorted(set(ref_names) - set(names))
        only_other = sorted(set(names) - set(ref_names))
        verdict = (f"FILENAMES DIFFER: {len(only_ref)} only in {reference.name} of lightly {only_ref[:3]}, "
                   f"{len(only_other)} only in ours {only_other[:3]}")  # fmt: skip
    pos = {n: i for i, n in enumerate(names)}
    common = [i for i, n in enumerate(ref_names) if n in pos]
    if common:
        a, b = ref[common], m[[pos[ref_names[i]] for i in common]]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        verdict += f"; cosine to lightly over {len(common)} frames: min {cos.min():.4f}, mean {cos.mean():.4f}"
    return verdict


def _table(runs: list[dict], base: dict | None) -> None:
    print(f"{'run':<20} {'frames':>7} {'wall s':>8} {'frames/s':>9} {'x lightly':>10} {'peak RSS MiB':>13} "
          f"{'load1 start>end':>16}")  # fmt: skip
    for run in runs:
        rate = run["n"] / run["wall"]
        ratio = f"{rate / (base['n'] / base['wall']):.2f}" if base else "-"
        load = f"{run['loadavg'][0]:.2f}>{run['loadavg'][1]:.2f}"
        print(f"{run['name']:<20} {run['n']:>7} {run['wall']:>8.1f} {rate:>9.1f} {ratio:>10} {run['rss']:>13.0f} "
              f"{load:>16}")  # fmt: skip
    for run in runs:
        if "embed" in run:
            print(f"{run['name']}: import {run['import']:.1f}s, scan+index {run['scan']:.2f}s, "
                  f"model {run['load']:.1f}s, embed {run['embed']:.1f}s, csv {run['csv_s']:.2f}s, "
                  f"unreadable {run['unreadable']}")  # fmt: skip


def _speed(args: argparse.Namespace, tmp: Path) -> None:
    data = args.data or _make_videos(tmp / "made", args.videos, args.frames)
    if not data.is_dir():
        raise SystemExit(f"{data}: not a folder of videos")
    exe = None if args.skip_lightly else _lightly_embed(args.lightly_venv)
    ckpt = _write_checkpoint(tmp / "model.ckpt", seed=0)
    n_files = sum(1 for f in data.iterdir() if f.is_file())
    print(f"data: {data} ({n_files} videos), input {args.input_size}px, batch {args.batch_size}, "
          f"{args.workers} decode threads (ours), {os.cpu_count()} CPUs")  # fmt: skip
    runs = [] if exe is None else [_run_lightly(data, ckpt, tmp / "lightly", exe, args)]
    for precision in args.precisions.split(","):
        runs.append(_run_our(data, ckpt, tmp / f"ours-{precision}", args, precision))
    base = runs[0] if exe is not None else None
    _table(runs, base)
    if base is None:
        return
    for run in runs[1:]:
        print(f"{run['name']}: {_compare(base['csv'], run['csv'])}")
    best = max(run["n"] / run["wall"] for run in runs[1:]) / (base["n"] / base["wall"])
    verdict = "PASS" if best >= TARGET_SPEEDUP else "FAIL"
    print(f"target ours >= {TARGET_SPEEDUP:g}x lightly frames/s: best {best:.2f}x -> {verdict}")


def _memory(args: argparse.Namespace, tmp: Path) -> None:
    ckpt = _write_checkpoint(tmp / "model.ckpt", seed=0)
    precision = args.precisions.split(",")[0]
    runs = []
    for frames in (args.frames, args.frames * 10):
        data = _make_videos(tmp / f"made-{frames}", 1, frames)
        run = _run_our(data, ckpt, tmp / f"ours-{frames}", args, precision)
        run["name"] = f"ours {precision} 1x{frames}"
        runs.append(run)
    _table(runs, None)
    short, long = runs
    ratio = long["rss"] / short["rss"]
    verdict = "PASS" if ratio <= MEMORY_LIMIT else "FAIL"
    print(f"peak RSS 1x{args.frames * 10} frames {long['rss']:.0f} MiB / 1x{args.frames} frames {short['rss']:.0f} "
          f"MiB = {ratio:.3f} (limit {MEMORY_LIMIT:g}) -> {verdict}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="an existing folder of videos (default: make them)")
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--frames", type=int, default=300, help="frames per video (--memory: the short video)")
    p.add_argument("--memory", action="store_true", help="peak RSS of ours, 1 video of 10x --frames against 1x")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="our decode threads")
    p.add_argument("--precisions", default="fp32,bf16", help="ours; --memory uses the first")
    p.add_argument("--skip-lightly", action="store_true")
    p.add_argument("--lightly-venv", type=Path, default=Path("/tmp/lightly_video_venv"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_video_embed_") as tmp_name:
        (_memory if args.memory else _speed)(args, Path(tmp_name))


if __name__ == "__main__":
    main()
