"""Embedding throughput and memory: our pipeline beside `lightly-embed`, same model, same images, same input size.

usage:
  python benchmarks/bench_embed.py --data OUT/images_sub
  python benchmarks/bench_embed.py --make 1000          # runs shared/bench/make_data.py first (--videos 0)

Both sides load one checkpoint file written here in lightly's CLI format (a seeded random init), so
`lightly-embed` downloads nothing and both compute the same network. Each side runs as its own process,
end to end (imports, folder scan, model load, embedding, CSV), and is timed from the outside; peak RSS is
the largest single process of its tree (`wait4`), e.g. lightly's main process or one DataLoader worker.
Our runs cover fp32/bf16 and JPEG draft decoding on/off; every CSV is compared with lightly's (cosine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _make_data_script() -> Path:
    for candidate in (REPO / "shared/bench/make_data.py", REPO.parent / "shared/bench/make_data.py"):
        if candidate.is_file():
            return candidate
    raise SystemExit("cannot find shared/bench/make_data.py next to the repository; pass --data instead")


def _write_checkpoint(path: Path, seed: int) -> Path:
    """A checkpoint as lightly-ssl-train writes it (`{"state_dict": {"model.backbone...": ...}}`)."""
    import torch

    from lightly_assets.embedding.model import build_lightly_model

    torch.manual_seed(seed)
    model = build_lightly_model()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the largest process in the tree, and the combined output."""
    log = cwd / "output.log"
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text


def _run_lightly(data: Path, ckpt: Path, work: Path, args: argparse.Namespace) -> dict:
    work.mkdir()
    exe = Path(sys.executable).with_name("lightly-embed")
    cmd = [
        str(exe) if exe.exists() else "lightly-embed",
        f"input_dir={data}",
        f"checkpoint={ckpt}",
        f"collate.input_size={args.input_size}",
        f"loader.batch_size={args.batch_size}",
        f"loader.num_workers={args.workers}",
        "trainer.gpus=0",
        f"hydra.run.dir={work / 'hydra'}",
    ]
    wall, rss, text = _run_measured(cmd, work)
    rates = re.findall(r"([\d.]+)imgs/s", text)
    return {"name": "lightly-embed", "wall": wall, "rss": rss, "loop": float(rates[-1]) if rates else None,
            "csv": work / "embeddings.csv"}  # fmt: skip


def _run_ours(data: Path, ckpt: Path, work: Path, args: argparse.Namespace, precision: str, draft: bool) -> dict:
    work.mkdir()
    job = {"data": str(data), "checkpoint": str(ckpt), "input_size": args.input_size, "precision": precision,
           "batch_size": args.batch_size, "workers": args.workers, "draft": draft,
           "csv": str(work / "embeddings.csv")}  # fmt: skip
    wall, rss, text = _run_measured([sys.executable, __file__, "--child", json.dumps(job)], work)
    report = json.loads(text.strip().splitlines()[-1])
    name = f"ours {report['precision']}{' draft' if draft else ''}"
    return {"name": name, "wall": wall, "rss": rss, "loop": report["loop"], "csv": work / "embeddings.csv", **report}


def _child(job: dict) -> None:
    """One end-to-end run of our pipeline; prints a JSON line with the stage times."""
    t0 = time.perf_counter()
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.embedding.model import load_model
    from lightly_assets.embedding.pipeline import embed_samples
    from lightly_assets.lightly_csv import write_embeddings_csv

    data = Path(job["data"])
    t1 = time.perf_counter()
    frames = build_sample_index(scan_dataset(data).files, data).samples
    t2 = time.perf_counter()
    model = load_model(job["checkpoint"], input_size=job["input_size"], precision=job["precision"])
    t3 = time.perf_counter()
    result = embed_samples(frames, data, model, job["batch_size"], job["workers"], draft=job["draft"])
    t4 = time.perf_counter()
    write_embeddings_csv(job["csv"], result.filenames, result.matrix, result.labels)
    t5 = time.perf_counter()
    report = {"n": len(result.filenames), "unreadable": len(result.unreadable), "precision": model.precision,
              "import": t1 - t0, "scan": t2 - t1, "load": t3 - t2, "embed": t4 - t3, "csv_s": t5 - t4,
              "loop": result.samples_per_s}  # fmt: skip
    print(json.dumps(report))


def _cosine_to(reference: Path, other: Path) -> tuple[float, bool]:
    from lightly_assets.lightly_csv import read_embeddings_csv

    ref_names, ref, ref_labels = read_embeddings_csv(reference)
    names, m, labels = read_embeddings_csv(other)
    same = names == ref_names and labels == ref_labels
    if names != ref_names:
        pos = {n: i for i, n in enumerate(names)}
        m = m[[pos[n] for n in ref_names]]
    cos = (ref * m).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(m, axis=1) + 1e-12)
    return float(cos.min()), same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="folder of images (e.g. make_data.py OUT/images_sub)")
    p.add_argument("--make", type=int, metavar="N", help="make N 640x480 images with shared/bench/make_data.py")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--draft", choices=["both", "on", "off"], default="both")
    p.add_argument("--skip-lightly", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if args.make:
            subprocess.run([sys.executable, str(_make_data_script()), str(tmp / "made"), "--images", str(args.make),
                            "--videos", "0"], check=True)  # fmt: skip
            data = tmp / "made" / "images_sub"
        if data is None or not data.is_dir():
            raise SystemExit("give --data DIR (an existing folder) or --make N")
        n_files = sum(1 for f in data.rglob("*") if f.is_file())
        ckpt = _write_checkpoint(tmp / "model.ckpt", seed=0)
        print(f"data: {data} ({n_files} files), input {args.input_size}px, batch {args.batch_size}, "
              f"{args.workers} workers, {os.cpu_count()} CPUs")  # fmt: skip
        runs = [] if args.skip_lightly else [_run_lightly(data, ckpt, tmp / "lightly", args)]
        drafts = {"both": [False, True], "on": [True], "off": [False]}[args.draft]
        for precision in args.precisions.split(","):
            for draft in drafts:
                runs.append(_run_ours(data, ckpt, tmp / f"ours-{precision}-{int(draft)}", args, precision, draft))
        base = runs[0] if not args.skip_lightly else None
        print(f"{'run':<20} {'wall s':>8} {'img/s e2e':>10} {'img/s loop':>11} {'peak RSS MiB':>13} "
              f"{'x lightly':>10} {'min cos':>8} {'same rows':>10}")  # fmt: skip
        for run in runs:
            rate = n_files / run["wall"]
            ratio = f"{base['wall'] / run['wall']:.2f}" if base else "-"
            cos, same = _cosine_to(base["csv"], run["csv"]) if base else (float("nan"), False)
            loop = f"{run['loop']:.1f}" if run["loop"] else "?"
            print(f"{run['name']:<20} {run['wall']:>8.1f} {rate:>10.1f} {loop:>11} {run['rss']:>13.0f} "
                  f"{ratio:>10} {cos:>8.5f} {str(same) if base else '-':>10}")  # fmt: skip
        for run in runs[1 if base else 0 :]:
            print(f"{run['name']}: import {run['import']:.1f}s, scan+index {run['scan']:.1f}s, "
                  f"model {run['load']:.1f}s, embed {run['embed']:.1f}s, csv {run['csv_s']:.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
