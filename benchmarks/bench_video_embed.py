"""Video-frame embedding: our pipeline beside Lightly's own `VideoDataset` (`lightly-embed`), and its memory bound.

usage:
  python benchmarks/bench_video_embed.py                 # 3 videos x 200 frames 640x360, lightly + ours
  python benchmarks/bench_video_embed.py --before main   # also our code at git ref `main` ("before")
  python benchmarks/bench_video_embed.py --data DIR      # an existing folder of videos instead
  python benchmarks/bench_video_embed.py --memory        # our peak RSS: 1 x 2000 frames against 1 x 200 frames

  python benchmarks/bench_video_embed.py --quick         # validate the script: 3 x 30 frames 160x120, no lightly

Videos are made by benchmarks/make_data.py (mp4 h264, mov h264, avi mpeg4, in turn). Both sides load one
checkpoint file in lightly's CLI format (bench_embed.py's seeded init), defaults on both sides. Each run is
its own process, timed from the outside from start to CSV written (imports, scan, frame index, model load,
decoding, embedding, CSV); the table is bench_embed.py's (ratio of wall times, start-up to the first batch,
the embedding step's rate, peak RSS, cosine to lightly and to our fp32), plus the efficiency against the
forward-only rate of the same network measured here.

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

# Run as a script, so this folder is on sys.path: the checkpoint writer and our child run are bench_embed's.
from bench_embed import (
    _checkout,
    _forward_only,
    _run_measured,
    _run_ours,
    _write_checkpoint,
    machine_line,
    report,
)
from make_data import make_videos, parse_size

from lightly_assets.lightly_csv import read_embeddings_csv

LIGHTLY_REQUIREMENTS = ("torch==2.9.1", "torchvision==0.24.1", "lightly==1.6.0", "av")
TARGET_SPEEDUP = 10.0  # issue 26: whole process, ours (defaults, warm engine cache) over lightly's VideoDataset
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


def _make_videos(out: Path, videos: int, frames: int, size: str) -> Path:
    return make_videos(out, videos, frames, parse_size(size))


def _run_lightly(data: Path, ckpt: Path, work: Path, exe: Path) -> dict:
    work.mkdir()
    cmd = [
        str(exe),
        f"input_dir={data}",
        f"checkpoint={ckpt}",
        "loader.num_workers=0",
        "trainer.gpus=0",
        f"hydra.run.dir={work / 'hydra'}",
    ]
    wall, rss, text, _ = _run_measured(cmd, work)
    stored = re.findall(r"Embeddings are stored at (\S+)", _ANSI.sub("", text))
    csv = Path(stored[-1]) if stored else work / "embeddings.csv"
    if not csv.is_file():
        raise SystemExit(f"lightly-embed wrote no CSV where it said ({csv}):\n{text[-2000:]}")
    names, _, _ = read_embeddings_csv(csv)
    return {"name": "lightly-embed VideoDataset", "wall": wall, "rss": rss, "csv": csv, "n": len(names)}


def _same_names(reference: Path, other: Path) -> str:
    ref_names, _, _ = read_embeddings_csv(reference)
    names, _, _ = read_embeddings_csv(other)
    if names == ref_names:
        return "same filenames, same order"
    if sorted(names) == sorted(ref_names):
        return "same filenames, other order"
    only_ref, only_other = sorted(set(ref_names) - set(names)), sorted(set(names) - set(ref_names))
    return (f"FILENAMES DIFFER: {len(only_ref)} only in lightly's {only_ref[:3]}, "
            f"{len(only_other)} only in ours {only_other[:3]}")  # fmt: skip


def _speed(args: argparse.Namespace, tmp: Path) -> None:
    data = args.data or _make_videos(tmp / "made", args.videos, args.frames, args.size)
    if not data.is_dir():
        raise SystemExit(f"{data}: not a folder of videos")
    exe = None if args.skip_lightly else _lightly_embed(args.lightly_venv)
    ckpt = _write_checkpoint(tmp / "model.ckpt", seed=0)
    n_files = sum(1 for f in data.iterdir() if f.is_file())
    print(f"data: {data} ({n_files} videos)")
    print(machine_line())
    base = None if exe is None else _run_lightly(data, ckpt, tmp / "lightly", exe)
    runs = [base] if base else []
    if args.before:
        code = _checkout(args.before, tmp / "before-code")
        runs.append(_run_ours(data, ckpt, tmp / "before", f"ours before ({args.before})", {}, code))
    os.environ["LIGHTLY_ASSETS_ENGINE_CACHE"] = str(tmp / "engine-cache")  # empty: the first run converts
    runs.append(_run_ours(data, ckpt, tmp / "cold", "ours defaults, cold cache", {}))
    runs.append(_run_ours(data, ckpt, tmp / "after", "ours defaults", {}))
    fp32 = None if args.no_fp32 else _run_ours(data, ckpt, tmp / "fp32", "ours precision=fp32",
                                               {"model": {"precision": "fp32"}})  # fmt: skip
    runs += [fp32] if fp32 else []
    measured = _forward_only(ckpt, tmp, args, data)
    print(machine_line())
    report(runs, base, fp32, measured, f"{n_files} videos")
    if base is None:
        return
    for run in runs[1:]:
        print(f"{run['name']}: {_same_names(base['csv'], run['csv'])}")
    after = next(r for r in runs if r["name"] == "ours defaults")
    speedup = base["wall"] / after["wall"]
    print(f"speed-up whole process, ours defaults over lightly-embed (VideoDataset, num_workers=0): {speedup:.2f}x "
          f"(goal >= {TARGET_SPEEDUP:g}x)")  # fmt: skip


def _memory(args: argparse.Namespace, tmp: Path) -> None:
    ckpt = _write_checkpoint(tmp / "model.ckpt", seed=0)
    runs = []
    for frames in (args.frames, args.frames * 10):
        data = _make_videos(tmp / f"made-{frames}", 1, frames, args.size)
        runs.append(_run_ours(data, ckpt, tmp / f"ours-{frames}", f"ours defaults 1x{frames}", {}))
    print(machine_line())
    short, long = runs
    for run in runs:
        print(f"{run['name']}: {run['n']} frames, wall {run['wall']:.1f}s, peak RSS {run['rss']:.0f} MiB")
    ratio = long["rss"] / short["rss"]
    verdict = "PASS" if ratio <= MEMORY_LIMIT else "FAIL"
    print(f"peak RSS 1x{args.frames * 10} frames {long['rss']:.0f} MiB / 1x{args.frames} frames {short['rss']:.0f} "
          f"MiB = {ratio:.3f} (limit {MEMORY_LIMIT:g}) -> {verdict}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="an existing folder of videos (default: make them)")
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--frames", type=int, default=200, help="frames per video (--memory: the short video)")
    p.add_argument("--size", default="640x360", help="frame size of the videos made")
    p.add_argument("--memory", action="store_true", help="peak RSS of ours, 1 video of 10x --frames against 1x")
    p.add_argument("--before", metavar="GIT_REF", help="also run our code at this git ref (e.g. main)")
    p.add_argument("--no-fp32", action="store_true", help="skip our precision=fp32 run")
    p.add_argument("--forward-seconds", type=float, default=8.0)
    p.add_argument("--quick", action="store_true", help="validate the script: small videos, short timings, no lightly")
    p.add_argument("--skip-lightly", action="store_true")
    p.add_argument("--lightly-venv", type=Path, default=Path("/tmp/lightly_video_venv"))
    args = p.parse_args()
    if args.quick:
        args.forward_seconds = 1.0
        args.videos, args.frames, args.size, args.skip_lightly = 3, 30, "160x120", True
    with tempfile.TemporaryDirectory(prefix="bench_video_embed_") as tmp_name:
        (_memory if args.memory else _speed)(args, Path(tmp_name))


if __name__ == "__main__":
    main()
