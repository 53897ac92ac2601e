"""Embedding speed, start-up and memory: our pipeline beside `lightly-embed`, defaults on both sides.

usage:
  python benchmarks/bench_embed.py --make 600                   # 600 photos 800x600 (JPEG + 1 in 5 PNG)
  python benchmarks/bench_embed.py --data DIR --before main     # also our code at git ref `main` ("before")
  python benchmarks/bench_embed.py --quick                     # validate the script: 60 photos 160x120, short timings

Both sides load one checkpoint file written here in lightly's CLI format (a seeded random init), so
`lightly-embed` downloads nothing and both compute the same network. Each run is its own process, end to
end (imports, folder scan, model load, embedding, CSV), timed from the outside, one after the other:
- `lightly-embed` with its defaults and `loader.num_workers=2` (the reference; fp32; on the GPU when there is one);
- ours with defaults (engine auto = OpenVINO on a CPU, precision auto, threads sized for the machine) twice:
  first with an empty converted-model cache ("cold": pays the one conversion), then warm (every later run);
  ours with `engine=torch` (the previous engine), with `precision=fp32`, and with `--before REF` our code
  at that git ref, defaults too.
Columns: wall time and its ratio to lightly's (whole process to whole process), start-up = process start
to the first embedded batch (ours; from the child's wall clock), the embedding step's own rate (samples
embedded / seconds of the step), peak RSS of the largest process of the run's tree (`wait4`), and the
cosine of every vector to lightly's (fp32) and to ours in fp32.
Efficiency = the embedding step's rate over the forward-only rate of the same network on random pixels,
best of torch fp32/bf16 x contiguous/channels-last and OpenVINO f32/bf16, all cores, in a process of its own where the
embedding step (defaults) and that forward-only pass alternate twice over the same data (a change of the
machine's load then skews both alike); the ratio across processes is printed too.
With a CUDA GPU both sides use it (`trainer.gpus=1` for lightly-embed; ours: `device: auto`), the forward-only
settings are the torch engine's on the GPU (fp32/bf16/fp16 at batch 64 and 256, uint8 batches from host memory), and
the step's limit is the slower of that and every core decoding (the chips work at once). `--lightly-workers` then
sets lightly's DataLoader processes (its own default is one per core).
The CPU model, its bf16 and int8 flags and the load average are printed with the figures: ratios differ between
machine types, and a loaded machine (load average above the core count) makes every figure noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from embed_limits import load_as_the_resource

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("BENCH_CODE", str(REPO)))  # a child runs the code it was asked for
sys.path.insert(1, str(REPO / "benchmarks"))  # make_data.py, also when a child runs older code

GOAL_SPEEDUP = 5.0  # whole process, ours (defaults, warm engine cache) over lightly-embed (num_workers=2); issue 26
# set it on a machine with AMX, where the limit is ~6x: the limit line says what the machine measured allows
GOAL_STARTUP_S = 2.0  # process start to the first embedded batch, warm engine cache
GOAL_EFFICIENCY = 0.85  # embedding step over forward-only


def machine_line() -> str:
    from lightly_assets.embedding.runtime import cpu_summary

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"machine: {cpu_summary()}; load average {load}"


def _write_checkpoint(path: Path, seed: int) -> Path:
    """A checkpoint as lightly-ssl-train writes it (`{"state_dict": {"model.backbone...": ...}}`)."""
    import torch

    from lightly_assets.embedding.families.lightly import build_lightly_model

    torch.manual_seed(seed)
    model = build_lightly_model()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _run_measured(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str, float]:
    """Wall seconds, peak RSS (MiB) of the largest process in the tree, the output, and the start time."""
    log = cwd / "output.log"
    with open(log, "wb") as out:
        started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text, started


def _run_lightly(data: Path, ckpt: Path, work: Path, args: argparse.Namespace) -> dict:
    work.mkdir()
    exe = Path(sys.executable).with_name("lightly-embed")
    cmd = [
        str(exe) if exe.exists() else "lightly-embed",
        f"input_dir={data}",
        f"checkpoint={ckpt}",
        f"loader.num_workers={args.lightly_workers}",
        f"trainer.gpus={int(cuda_present())}",
        f"hydra.run.dir={work / 'hydra'}",
    ]
    wall, rss, text, _ = _run_measured(cmd, work)
    rates = re.findall(r"([\d.]+)imgs/s", text)
    return {"name": f"lightly-embed w{args.lightly_workers}", "wall": wall, "rss": rss, "csv": work / "embeddings.csv",
            "loop": float(rates[-1]) if rates else None}  # fmt: skip


def _run_ours(data: Path, ckpt: Path, work: Path, name: str, job: dict, code: Path = REPO) -> dict:
    """Our pipeline in its own process; `code` is the checkout it runs (this one, or `--before`'s)."""
    work.mkdir()
    job = {"data": str(data), "checkpoint": str(ckpt), "csv": str(work / "embeddings.csv"), **job}
    env = {**os.environ, "PYTHONPATH": str(code), "BENCH_CODE": str(code)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    wall, rss, text, started = _run_measured(cmd, work, env)
    report = json.loads(text.strip().splitlines()[-1])
    first = report.pop("first_batch_at")
    return {"name": name, "wall": wall, "rss": rss, "csv": work / "embeddings.csv",
            "startup": first - started if first else None, **report}  # fmt: skip


def _child(job: dict) -> None:
    """One end-to-end run of our pipeline (settings left at their defaults unless the job names them)."""
    t0 = time.perf_counter()
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.embedding.pipeline import embed_samples
    from lightly_assets.lightly_csv import write_embeddings_csv

    data = Path(job["data"])
    t1 = time.perf_counter()
    frames = build_sample_index(scan_dataset(data).files, data).samples
    t2 = time.perf_counter()
    model = load_as_the_resource(job["checkpoint"], job.get("model", {}))
    t3 = time.perf_counter()
    first: list[float] = []

    def progress(done: int, total: int) -> None:  # the first call with samples done marks the first batch
        calls.append(done)
        if done > 0 and not first:
            first.append(time.time())

    calls: list[int] = []
    result = embed_samples(frames, data, model, progress=progress, **job.get("embed", {}))
    t4 = time.perf_counter()
    write_embeddings_csv(job["csv"], result.filenames, result.matrix, result.labels)
    t5 = time.perf_counter()
    report = {"n": len(result.filenames), "unreadable": len(result.unreadable), "precision": model.precision,
              "engine": getattr(model, "engine", "torch"), "torch_imported": "torch" in sys.modules,
              "threads": getattr(model, "threads", None), "workers": getattr(result, "workers", None),
              "import": t1 - t0, "scan": t2 - t1, "load": t3 - t2, "embed": t4 - t3, "csv_s": t5 - t4,
              "loop": result.samples_per_s, "first_batch_at": first[0] if first else None}  # fmt: skip
    print(json.dumps(report))


def _forward_only(ckpt: Path, tmp: Path, args: argparse.Namespace, data: Path) -> dict:
    """{"forward": {setting: samples/s}, "decode_ms": CPU ms per decoded sample}, in a process of its own."""
    work = tmp / "forward"
    work.mkdir()
    job = {"checkpoint": str(ckpt), "input_size": 64, "batch_size": 64, "seconds": args.forward_seconds,
           "data": str(data)}  # fmt: skip
    cmd = [sys.executable, str(Path(__file__).resolve().with_name("embed_limits.py")), json.dumps(job)]
    _, _, text, _ = _run_measured(cmd, work, {**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(text.strip().splitlines()[-1])


def _checkout(ref: str, dest: Path) -> Path:
    """Our code at git ref `ref`, extracted (not checked out) so this worktree stays as it is."""
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _cosine(reference: Path, other: Path) -> float:
    from lightly_assets.lightly_csv import read_embeddings_csv

    ref_names, ref, _ = read_embeddings_csv(reference)
    names, m, _ = read_embeddings_csv(other)
    pos = {n: i for i, n in enumerate(names)}
    common = [i for i, n in enumerate(ref_names) if n in pos]
    a, b = ref[common], m[[pos[ref_names[i]] for i in common]]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(cos.min()) if len(cos) else float("nan")


def report(runs: list[dict], base: dict | None, fp32: dict | None, measured: dict, what: str) -> None:
    """The side-by-side table, the efficiency line and the goals, shared with bench_video_embed.py."""
    print(f"\n{'run':<24} {'samples':>7} {'wall s':>7} {'x lightly':>9} {'start-up s':>10} {'step/s':>7} "
          f"{'peak RSS MiB':>12} {'prec':>5} {'thr':>4} {'cos lightly':>11} {'cos fp32':>8}")  # fmt: skip
    for run in runs:
        ratio = f"{base['wall'] / run['wall']:.2f}" if base else "-"
        startup = f"{run['startup']:.1f}" if run.get("startup") else "-"
        loop = f"{run['loop']:.1f}" if run.get("loop") else "-"
        cos_l = f"{_cosine(base['csv'], run['csv']):.5f}" if base and run is not base else "-"
        cos_f = f"{_cosine(fp32['csv'], run['csv']):.5f}" if fp32 and run is not fp32 and "n" in run else "-"
        threads = f"{run.get('threads')}/{run.get('workers')}" if run.get("threads") else "-"
        print(f"{run['name']:<24} {run.get('n', '-'):>7} {run['wall']:>7.1f} {ratio:>9} {startup:>10} {loop:>7} "
              f"{run['rss']:>12.0f} {run.get('precision', 'fp32'):>5} {threads:>4} {cos_l:>11} {cos_f:>8}")  # fmt: skip
    print("(thr = network threads (torch intra-op or OpenVINO) / decode threads)")
    for run in runs:
        if "import" in run:
            print(f"  {run['name']}: import {run['import']:.1f}s, scan+index {run['scan']:.2f}s, "
                  f"model {run['load']:.1f}s, embed {run['embed']:.1f}s, csv {run['csv_s']:.2f}s, "
                  f"unreadable {run['unreadable']}")  # fmt: skip
    forward = measured["forward"]
    best_key = max(forward, key=forward.get)
    print("forward-only (all cores, batch 64, 64 px): " + ", ".join(f"{k} {v:.1f}/s" for k, v in forward.items()))
    after = next(r for r in runs if r["name"] == "ours defaults")
    efficiency = after["loop"] / forward[best_key]
    print(f"efficiency ({what}), across processes: embedding step {after['loop']:.1f}/s (run above) over "
          f"forward-only best ({best_key}) {forward[best_key]:.1f}/s = {efficiency:.2f}")  # fmt: skip
    pairs = measured["interleaved"]
    ratios = ", ".join(f"{e:.1f}/{f:.1f}" for e, f in pairs)
    same = sum(e for e, _ in pairs) / sum(f for _, f in pairs)
    print(f"efficiency ({what}), alternated in one process (step/s / forward-only {measured['best']}/s: {ratios}): "
          f"{same:.2f} (goal >= {GOAL_EFFICIENCY})")  # fmt: skip
    limit_line(measured, forward[best_key], same)
    for run in runs:
        if run.get("startup"):
            print(f"  {run['name']}: start-up to first batch {run['startup']:.2f}s (engine {run.get('engine', '?')}, "
                  f"torch imported: {run.get('torch_imported', '?')})")  # fmt: skip
    if after.get("startup"):
        print(f"start-up to first batch, ours defaults (warm cache): {after['startup']:.2f}s "
              f"(goal <= {GOAL_STARTUP_S:g}s)")  # fmt: skip
    before = next((r for r in runs if r["name"].startswith("ours before")), None)
    if before:
        su = f"{before['startup']:.1f}s -> {after['startup']:.1f}s" if before.get("startup") else "?"
        print(f"before -> after: wall {before['wall']:.1f}s -> {after['wall']:.1f}s, start-up {su}, "
              f"peak RSS {before['rss']:.0f} -> {after['rss']:.0f} MiB")  # fmt: skip


def limit_line(measured: dict, forward_best: float, efficiency: float) -> None:
    """Decode and forward CPU ms per sample, the step's limit on this machine, and the fraction of it reached.

    The limit: every core busy, each sample costing its decode and its forward pass at the cheaper of the two
    forward costs measured (one core: no barrier between threads; all cores: the forward-only best), so
    cores / (F + D) samples/s. The fraction compares the alternated efficiency with limit / forward-only best
    (both measured in the forward-only process, so a change of load between processes skews it less).
    """
    from lightly_assets.workers import usable_cores

    cores = usable_cores()
    decode = measured["decode_ms"]
    decode = decode if isinstance(decode, dict) else {"all": decode}
    print("  decode CPU ms/sample, one thread: " + ", ".join(f"{k} {v:.2f}" for k, v in decode.items())
          + " (all: as the data mixes them)")  # fmt: skip
    if measured.get("device", "cpu").startswith("cuda"):
        return _gpu_limit_line(measured, forward_best, cores)
    f_all, d_ms = 1000 * cores / forward_best, decode["all"]
    one = measured.get("one_core")
    f_one = 1000 / one if one else f_all
    print(f"  forward CPU ms/sample ({measured['best']}): one core {f_one:.2f} ({one or 0:.0f}/s), {cores} cores "
          f"{f_all:.2f} ({forward_best:.0f}/s)")  # fmt: skip
    f_ms = min(f_one, f_all)
    limit = 1000 * cores / (f_ms + d_ms)
    print(f"  limit of the step on this machine: {cores} cores / (forward {f_ms:.2f} + decode {d_ms:.2f} ms) = "
          f"{limit:.0f}/s = {limit / forward_best:.2f} of the forward-only rate; reached: "
          f"{efficiency / (limit / forward_best):.2f} of the limit (alternated figure)")  # fmt: skip


def _gpu_limit_line(measured: dict, forward_best: float, cores: int) -> None:
    """On a GPU the network and the decoding run on different chips at once: the step's limit is the slower of
    the GPU's forward-only rate and every core decoding; reached = the alternated step rate over that limit."""
    decoded = 1000 * cores / measured["decode_ms"]["all"]
    limit = min(forward_best, decoded)
    pairs = measured["interleaved"]
    step = sum(e for e, _ in pairs) / len(pairs)
    fastest = max(measured["forward"], key=measured["forward"].get)
    print(f"  limit of the step on this machine: min(GPU forward-only {forward_best:.0f}/s ({fastest}), "
          f"{cores} cores decoding {decoded:.0f}/s) = {limit:.0f}/s = {limit / forward_best:.2f} of the forward-only "
          f"rate; reached: {step / limit:.2f} of the limit (alternated step {step:.0f}/s)")  # fmt: skip


def cuda_present() -> bool:
    """Whether lightly-embed should be given the GPU too (`trainer.gpus=1`): both sides then use it."""
    import torch

    return torch.cuda.is_available()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="folder of images (e.g. make_data.py OUT/images_sub)")
    p.add_argument("--make", type=int, metavar="N", help="make N images with benchmarks/make_data.py")
    p.add_argument("--size", default="800x600", help="--make: image size")
    p.add_argument("--before", metavar="GIT_REF", help="also run our code at this git ref (e.g. main)")
    p.add_argument("--lightly-workers", type=int, default=2)
    p.add_argument("--skip-lightly", action="store_true")
    p.add_argument("--no-fp32", action="store_true", help="skip our precision=fp32 run")
    p.add_argument("--no-torch", action="store_true", help="skip our engine=torch run")
    p.add_argument("--forward-seconds", type=float, default=8.0)
    p.add_argument("--quick", action="store_true", help="validate the script: short forward-only timing")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(json.loads(args.child))
    if args.quick:
        args.forward_seconds = 1.0
        if args.data is None and args.make is None:
            args.make, args.size = 60, "160x120"
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if args.make:
            from make_data import make_images, parse_size

            data = make_images(tmp / "made", args.make, parse_size(args.size), flat=False) / "images_sub"
        if data is None or not data.is_dir():
            raise SystemExit("give --data DIR (an existing folder) or --make N")
        n_files = sum(1 for f in data.rglob("*") if f.is_file())
        ckpt = _write_checkpoint(tmp / "model.ckpt", seed=0)
        print(f"data: {data} ({n_files} files)")
        print(machine_line())
        runs = []
        base = None if args.skip_lightly else _run_lightly(data, ckpt, tmp / "lightly", args)
        runs += [base] if base else []
        if args.before:
            code = _checkout(args.before, tmp / "before-code")
            runs.append(_run_ours(data, ckpt, tmp / "before", f"ours before ({args.before})", {}, code))
            shutil.rmtree(code)
        os.environ["LIGHTLY_ASSETS_ENGINE_CACHE"] = str(tmp / "engine-cache")  # empty: the first run converts
        runs.append(_run_ours(data, ckpt, tmp / "cold", "ours defaults, cold cache", {}))
        runs.append(_run_ours(data, ckpt, tmp / "after", "ours defaults", {}))
        if not args.no_torch:
            runs.append(_run_ours(data, ckpt, tmp / "torch", "ours engine=torch", {"model": {"engine": "torch"}}))
        fp32 = None
        if not args.no_fp32:
            fp32 = _run_ours(data, ckpt, tmp / "fp32", "ours precision=fp32", {"model": {"precision": "fp32"}})
            runs.append(fp32)
        measured = _forward_only(ckpt, tmp, args, data)
        print(machine_line())
        report(runs, base, fp32, measured, f"{n_files} images")
        if base:
            after = next(r for r in runs if r["name"] == "ours defaults")
            print(f"speed-up whole process, ours defaults over {base['name']}: {base['wall'] / after['wall']:.2f}x "
                  f"(goal >= {GOAL_SPEEDUP}x)")  # fmt: skip
            limit = base["wall"] / _at_forward_rate(after, max(measured["forward"].values()))
            print(f"limit on this machine: {limit:.2f}x (ours with the embedding step at the forward-only rate); "
                  f"reached {base['wall'] / after['wall'] / limit:.0%} of it")  # fmt: skip


def _at_forward_rate(run: dict, forward_per_s: float) -> float:
    """The run's wall time had its embedding step gone at the network's forward-only rate (nothing else changed)."""
    return run["wall"] - run["embed"] + run["n"] / forward_per_s


if __name__ == "__main__":
    main()
