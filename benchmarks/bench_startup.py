"""Start-up of `lightly-assets run`: process start to the first embedded batch, warm caches, default model.

usage:
  python benchmarks/bench_startup.py                      # 200 photos 640x480 made here, 5 repetitions
  python benchmarks/bench_startup.py --repeat 7 --data DIR  # DIR holds one dataset folder, e.g. DIR/photos
  BENCH_CODE=/path/to/other/checkout python benchmarks/bench_startup.py   # "before": that checkout's code

Each repetition is a fresh process running the CLI's `main(["run", ...])` with a fresh output folder (so every
sample is embedded) and a copy of one warmed DAGSTER_HOME; the converted OpenVINO model is in its cache (a first,
untimed run puts it there). The process stops itself at the first batch, so the figures are:
  start->batch  process start (the parent's clock just before it spawns) to the first embedded batch;
  step->batch   the `embeddings` step's body (its first call on the `embedding_model` resource) to that batch;
  CPU time      the process's CPU seconds (all threads) by then: less skewed than wall time on a loaded machine;
  heavy         which of torch, torchvision, timm, open_clip, lightly_studio, faiss, scipy, sklearn, matplotlib
                and ray were imported by then.
Medians of the repetitions, with the CPU flags and the load average (above the core count every figure is noisy).
Then where the time went, each phase's median wall and CPU seconds (process start to: `lightly_assets.runner` and
the definitions imported; the instance opened, orphaned runs failed, partitions added; the run created with its
planned events; each step started; the model loaded; the first batch embedded).
Goals (issue 26): start->batch <= 2 s, step->batch <= 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(os.environ.get("BENCH_CODE") or Path(__file__).resolve().parents[1])  # BENCH_CODE: another checkout
HEAVY = ("torch", "torchvision", "timm", "open_clip", "lightly_studio", "faiss", "scipy", "sklearn", "matplotlib",
         "ray")  # fmt: skip
GOAL_START_S, GOAL_STEP_S = 2.0, 0.3
PHASES = (
    ("interpreter", "child"), ("imports, definitions", "imported"), ("instance, partitions", "prepared"),
    ("run created", "run"), ("run start", "step file_index"), ("file_index", "step frame_index"),
    ("frame_index", "step embeddings"), ("embeddings: inputs, resources", "body"), ("embeddings: model", "model"),
    ("embeddings: decode, first forward", "batch"),
)  # fmt: skip


def _child(job: dict) -> None:
    """The CLI in this process, with clocks hooked in; exits at the first batch (or at the end of a warm-up)."""
    marks: dict[str, float] = {}
    cpus: dict[str, float] = {}

    def mark(name: str) -> None:
        if name not in marks:
            marks[name], cpus[name] = time.time(), time.process_time()

    mark("child")
    if (REPO / "lightly_assets" / "collector.py").exists():  # as the command does first (`lightly_assets.__main__`)
        from lightly_assets import collector  # (checked by path: an editable install would lend its own to BENCH_CODE)

        collector.pause()
    from dagster import DagsterInstance

    from lightly_assets import runner  # what `main` imports first: the definitions and Dagster
    from lightly_assets.cli import main
    from lightly_assets.defs.resources import EmbeddingModelResource
    from lightly_assets.embedding import local

    mark("imported")
    _after(runner, "_prepare", lambda: mark("prepared"))
    _after(DagsterInstance, "create_run_for_job", lambda: mark("run"))
    _after(EmbeddingModelResource, "load", lambda: mark("model"))
    handle = DagsterInstance.handle_new_event  # each step's start, with the process's CPU time then

    def handle_new_event(self, event, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        got = getattr(event, "dagster_event", None)
        if got is not None and got.event_type_value == "STEP_START":
            mark(f"step {got.step_key}")
        return handle(self, event, *args, **kwargs)

    DagsterInstance.handle_new_event = handle_new_event
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    executor_for = EmbeddingModelResource.executor_for
    hooked = "_deliver" if hasattr(local._Batches, "_deliver") else "flush"  # where vectors leave (older: flush)
    flush = getattr(local._Batches, hooked)

    def first_call(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        mark("body")
        return executor_for(self, *args, **kwargs)

    def timed_flush(self, *args) -> None:  # noqa: ANN001, ANN002
        flush(self, *args)
        if self.first_batch_at is not None and not job["warmup"]:
            heavy = [n for n in HEAVY if n in sys.modules]
            cpu = time.process_time()  # CPU seconds of all its threads: less skewed by other processes than wall time
            mark("batch")
            marks["batch"] = self.first_batch_at
            print(json.dumps({"step": marks.get("body"), "batch": self.first_batch_at, "heavy": heavy, "cpu": cpu,
                              "marks": marks, "cpus": cpus}), flush=True)  # fmt: skip
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(job["profile"])
            os._exit(0)

    EmbeddingModelResource.executor_for = first_call
    setattr(local._Batches, hooked, timed_flush)
    if profiler is not None:
        profiler.enable()
    code = main(["run", job["dataset"], "--data-dir", job["data_dir"], "--output-dir", job["output_dir"]])
    sys.exit(code)


def _after(owner: object, name: str, then) -> None:  # noqa: ANN001
    """Call `then()` each time `owner.name` returns (a mark keeps its first time); a checkout without it: no mark."""
    original = getattr(owner, name, None)
    if original is None:
        return

    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = original(*args, **kwargs)
        then()
        return result

    setattr(owner, name, wrapped)


def _phases(runs: list[dict], started: list[float]) -> list[str]:
    """Each phase's median wall and CPU seconds, from the previous mark a run has to this one."""
    lines = []
    for label, key in PHASES:
        walls, cpus = [], []
        for got, t0 in zip(runs, started, strict=True):
            marks, cpu = got.get("marks", {}), got.get("cpus", {})
            done = [k for _, k in PHASES[: [k for _, k in PHASES].index(key)] if k in marks]
            if key not in marks:
                continue
            walls.append(marks[key] - (marks[done[-1]] if done else t0))
            cpus.append(cpu[key] - (cpu[done[-1]] if done else 0.0))
        if walls:
            lines.append(f"  {label:36s} wall {statistics.median(walls):6.3f} s   CPU {statistics.median(cpus):6.3f} s")
    return lines


def _make_photos(folder: Path, n: int) -> None:
    """`n` photo-like 640x480 JPEGs (smooth colour fields, two labels), made with Pillow."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
        out = folder / ("a" if i % 2 else "b") / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).resize((640, 480), Image.BICUBIC).save(out, quality=90)


def _run(job: dict, home: Path) -> tuple[float, dict | None]:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "LIGHTLY_STUDIO_ANALYTICS_ENABLED": "false",
    }
    started = time.time()
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return started, (json.loads(last) if last.startswith("{") else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="data root holding one dataset folder (default: make 200 photos)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", type=Path, help="write the last run's cProfile statistics here (pstats format)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(json.loads(args.child))
    from lightly_assets.embedding.runtime import cpu_summary

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            data = tmp / "data"
            _make_photos(data / "photos", 200)
        dataset = next(d.name for d in sorted(data.iterdir()) if d.is_dir())
        warm_home = tmp / "home"
        warm_home.mkdir()
        job = {"dataset": dataset, "data_dir": str(data), "output_dir": str(tmp / "warm"), "warmup": True}
        _run(job, warm_home)  # creates the instance and fills the engine cache: later runs are warm
        rows, runs, starts = [], [], []
        for i in range(args.repeat):
            home = tmp / f"home{i}"
            shutil.copytree(warm_home, home)
            job = {**job, "output_dir": str(tmp / f"out{i}"), "warmup": False}
            if args.profile and i == args.repeat - 1:
                job["profile"] = str(args.profile.resolve())
            started, got = _run(job, home)
            if got is None:
                raise SystemExit("the run ended without embedding a batch")
            rows.append((got["batch"] - started, got["batch"] - got["step"], got["heavy"], got["cpu"]))
            runs.append(got)
            starts.append(started)
            print(f"run {i + 1}: start->batch {rows[-1][0]:.2f} s, step->batch {rows[-1][1]:.3f} s, "
                  f"CPU {rows[-1][3]:.2f} s, heavy imports {rows[-1][2] or 'none'}", flush=True)  # fmt: skip
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        start = statistics.median(r[0] for r in rows)
        step = statistics.median(r[1] for r in rows)
        cpu = statistics.median(r[3] for r in rows)
        print(f"machine: {cpu_summary()}; load average {load}")
        print(f"median of {len(rows)}: start->batch {start:.2f} s (goal <= {GOAL_START_S}), "
              f"step->batch {step:.3f} s (goal <= {GOAL_STEP_S}), CPU time to the batch {cpu:.2f} s")  # fmt: skip
        print("phases (medians; CPU: the process's, all threads):", *_phases(runs, starts), sep="\n")


if __name__ == "__main__":
    main()
