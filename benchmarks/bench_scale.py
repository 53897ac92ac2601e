"""The whole chain at scale: `lightly-assets run` on N small JPEGs, cold, then again after adding 0.1% new files.

usage:
  python benchmarks/bench_scale.py --files 10000        # N small JPEGs (64x48, 10 weak labels), made here
  python benchmarks/bench_scale.py --quick              # 200 files: checks the script in about a minute
  python benchmarks/bench_scale.py --files 100000 --dir /tmp/scale --keep   # keep (and reuse) the data
  python benchmarks/bench_scale.py --files 1000000 --seed-cache   # every step but the network's, at sizes whose
                                                                  # embedding outlasts a session

The JPEGs are made by benchmarks/make_data.py (seeded, numbered, so a kept folder is reused). Each run is
`lightly-assets run scale` in a process of its own, with its own Dagster home, outputs and LightlyStudio DuckDB
file under the work folder, and the defaults for everything else (model, engine, precision, target). The
incremental run follows the cold one on the same instance after `--new` new files (default 0.1% of N) appeared.

Printed per run: the wall time of the process, the time of every step as Dagster's event log records it
(STEP_START to STEP_SUCCESS) and the time before the first step (process start, imports, run set-up), the peak
RSS of the process (`wait4`, its largest process, children it waited for included), its CPU time over its wall
time (cores kept busy), and the incremental run over the cold one. Then the network's own time: the model the run
used (made as the `embedding_model` resource makes it, in a process of its own with the run's environment) times
its forward passes alone on ready pixels, and the cold run is printed over N / that rate (goal <= 1.3). The CPU
model, its bf16 and int8 flags and the load average go with the figures: a loaded machine slows every step.

With `--seed-cache` the cold run finds every sample's vector in its embedding cache (seeded random unit vectors,
written under the run's model fingerprint and the keys the step computes, in a process with the run's
environment), so it runs every step but the network's forward passes, which the report then adds from the
network's measured rate; the incremental run embeds its new files as usual, so it is compared with the cold run
with the network's time added (the goal, <= 0.05, is of the real cold run) as well as with the seeded one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from make_data import make_small_jpegs

DATASET = "scale"
GOAL_OVER_NETWORK = 1.3  # the cold chain over the network's own time


@dataclass
class Run:
    name: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    returncode: int
    steps: dict[str, float] = field(default_factory=dict)
    before_first_step_s: float = float("nan")


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = sorted({f for f in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni") if f" {f}" in text})
    return f"{model}; bf16/int8 flags: {' '.join(flags) or 'none'}; cores usable: {len(os.sched_getaffinity(0))}"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("LIGHTLY_STUDIO_DATABASE_URL", "LIGHTLY_ASSETS_TARGET"):
        env.pop(name, None)  # the default target, in the work folder: never a database of the user's
    env.update(
        DAGSTER_HOME=str(work / "dagster_home"),
        LIGHTLY_ASSETS_DATA_DIR=str(work / "data"),
        LIGHTLY_ASSETS_OUTPUT_DIR=str(work / "outputs"),
        LIGHTLY_STUDIO_ANALYTICS_ENABLED="false",
    )
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    return env


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("lightly-assets")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "lightly_assets"]


def run_chain(work: Path, name: str, log: Path) -> Run:
    """One `lightly-assets run` process, measured from the outside; its steps read from the event log after."""
    started_wall = time.time()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([*_cli(), "run", DATASET], env=_env(work), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    run = Run(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode)
    run.steps, first = step_times(work / "dagster_home")
    if first is not None:
        run.before_first_step_s = first - started_wall
    return run


def forward_only(work: Path, seconds: float) -> dict:
    """The network's forward-only rate, in a process of its own with the run's environment (its weights choice)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--forward-child", str(seconds)]
    out = subprocess.run(cmd, env=_env(work), capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def seed_cache(work: Path) -> None:
    """Write the cold run's embedding cache, in a process of its own with the run's environment."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--seed-child"]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=_env(work), capture_output=True, text=True, check=True).stdout
    print(f"{out.strip().splitlines()[-1]} in {time.perf_counter() - start:.1f} s", flush=True)


def _seed_child() -> None:
    """Seeded random unit vectors for every sample, keyed and fingerprinted as the `embeddings` step keys them."""
    import numpy as np

    from lightly_assets.dataset.keys import key_table
    from lightly_assets.dataset.orientation import check_orientation
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.defs.resources import EmbeddingModelResource
    from lightly_assets.embedding.cache import EmbeddingCache
    from lightly_assets.embedding.executor import DecodeOptions
    from lightly_assets.embedding.pipeline import _cache_fingerprint

    folder = Path(os.environ["LIGHTLY_ASSETS_DATA_DIR"]) / DATASET
    frames = build_sample_index(scan_dataset(folder).files, folder).samples
    resource = EmbeddingModelResource()
    model = resource.load()
    decode = DecodeOptions(draft=True, orientation=check_orientation(resource.orientation))  # the step's defaults
    fingerprint = _cache_fingerprint(model, decode)
    vectors = np.random.default_rng(0).standard_normal((len(frames), model.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = Path(os.environ["LIGHTLY_ASSETS_OUTPUT_DIR"]) / DATASET
    out.mkdir(parents=True, exist_ok=True)
    EmbeddingCache(out / "embedding_cache.npz").save(fingerprint, key_table(frames), vectors)
    print(f"seeded the embedding cache with {len(frames):,} vectors of {model.dim} dimensions")


def _forward_child(seconds: float) -> None:
    """Samples/s of the default model on ready uint8 batches: one batch at a time, and as many in flight as the
    engine runs at once (OpenVINO's streams, as the step feeds it); the better of the two is the network's rate."""
    import numpy as np

    from lightly_assets.defs.resources import EmbeddingModelResource

    resource = EmbeddingModelResource()
    model = resource.load()
    pixels = np.random.default_rng(0).integers(0, 256, (resource.batch_size, model.input_size,
                                                        model.input_size, 3), dtype=np.uint8)  # fmt: skip

    def rate(put) -> float:  # noqa: ANN001
        put(), put()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            n += put()
        return n / (time.perf_counter() - start)

    one = rate(lambda: len(model.embed(pixels)))
    flight = model.in_flight()
    streams = rate(lambda: sum(len(v) for v in flight.put(pixels)))
    flight.finish()
    flight.close()
    print(json.dumps({"one_batch": one, "in_flight": streams, "engine": model.engine, "streams": model.streams}))


def step_times(home: Path) -> tuple[dict[str, float], float | None]:
    """Seconds per step of the newest run (STEP_START to STEP_SUCCESS/FAILURE) and when its first step started."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return {}, None
        kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
        starts: dict[str, float] = {}
        steps: dict[str, float] = {}
        for entry in instance.all_logs(runs[0].run_id, of_type=kinds):
            key = entry.step_key or "?"
            if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                starts[key] = entry.timestamp
            elif key in starts:
                steps[key] = entry.timestamp - starts[key]
        return steps, min(starts.values(), default=None)


def report(cold: Run, warm: Run, files: int, new: int, forward: list[dict], seeded: bool = False) -> None:
    print(f"\n{files:,} small JPEGs, then {new:,} new ({new / files:.2%}); CPU: {cpu_flags()}")
    print(f"load average now: {load_average()} (above the core count: figures are noisy)")
    print(f"{'':28}{'cold':>10}{'incremental':>13}{'incr/cold':>11}{'cold share':>12}")
    rows = [("process wall (s)", cold.wall_s, warm.wall_s), ("before the first step (s)", cold.before_first_step_s,
            warm.before_first_step_s)]  # fmt: skip
    rows += [(f"  {step} (s)", cold.steps.get(step, math.nan), warm.steps.get(step, math.nan)) for step in cold.steps]
    for label, a, b in rows:
        print(f"{label:28}{a:10.2f}{b:13.2f}{b / a if a else math.nan:11.3f}{a / cold.wall_s:12.1%}")
    for label, a, b in (("peak RSS (MiB)", cold.peak_rss_mib, warm.peak_rss_mib),
                        ("CPU time (s)", cold.cpu_s, warm.cpu_s)):  # fmt: skip
        print(f"{label:28}{a:10.0f}{b:13.0f}{b / a if a else math.nan:11.3f}")
    print(f"{'cores busy (CPU/wall)':28}{cold.cpu_s / cold.wall_s:10.2f}{warm.cpu_s / warm.wall_s:13.2f}")
    if "file_index" in cold.steps:
        print(f"file_index: {files / cold.steps['file_index']:,.0f} files/s cold")
    ratio_name = "incremental / cold without the network's time (vectors seeded)" if seeded else "incremental / cold"
    print(f"{ratio_name}, whole process: {warm.wall_s / cold.wall_s:.3f}" + ("" if seeded else " (goal <= 0.05)"))
    rates = [max(f["one_batch"], f["in_flight"]) for f in forward]
    for when, f in zip(("before the runs", "after the runs"), forward, strict=True):
        print(f"the network alone {when} ({f['engine']}, {f['streams']} streams; forward-only on ready pixels): one "
              f"batch at a time {f['one_batch']:.1f}/s, batches in flight {f['in_flight']:.1f}/s")  # fmt: skip
    rate = sum(rates) / len(rates)
    if seeded:
        network = files / rate
        print(f"the network alone at their mean best rate, {rate:.1f}/s: {network:.1f} s for {files:,} samples, not "
              f"spent (vectors seeded); the cold run with it: {cold.wall_s + network:.1f} s, "
              f"{(cold.wall_s + network) / network:.2f} of the network's own time")  # fmt: skip
        # the incremental run embeds its new files for real; a cold one would have embedded them all
        print(f"incremental / the cold run with the network's time: {warm.wall_s / (cold.wall_s + network):.4f} "
              f"(goal <= 0.05)")  # fmt: skip
        return
    step_rate = files / cold.steps.get("embeddings", math.nan)
    print(f"the network alone at their mean best rate, {rate:.1f}/s: {files / rate:.1f} s for {files:,} samples; "
          f"the embeddings step ran at {step_rate:.1f}/s")  # fmt: skip
    if step_rate > rate:  # the machine was slower while the network was timed: its own time is at most the step's
        rate = step_rate
        print(f"the step outran the network timed alone: the network's own time taken as the step's, "
              f"{files / rate:.1f} s")  # fmt: skip
    print(f"cold chain / the network alone: {cold.wall_s / (files / rate):.2f} (goal <= {GOAL_OVER_NETWORK})")
    for run in (cold, warm):
        if run.returncode:
            print(f"{run.name}: lightly-assets exited {run.returncode}; see its log")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--new", type=int, help="new files for the incremental run (default: 0.1%% of --files, >= 1)")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the work folder's data for the next call")
    p.add_argument("--quick", action="store_true", help="200 files: checks the script")
    p.add_argument("--forward-seconds", type=float, default=20.0, help="how long the network alone is timed")
    p.add_argument("--seed-cache", action="store_true", help="the cold run's vectors seeded: no network (above)")
    p.add_argument("--forward-child", type=float, help=argparse.SUPPRESS)
    p.add_argument("--seed-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.forward_child is not None:
        return _forward_child(a.forward_child)
    if a.seed_child:
        return _seed_child()
    files = 200 if a.quick else a.files
    new = a.new if a.new is not None else max(1, math.ceil(files * 0.001))
    work = a.dir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    data = work / "data" / DATASET
    marker = work / f".made-{files}"
    try:
        for stale in ("dagster_home", "outputs"):
            shutil.rmtree(work / stale, ignore_errors=True)
        if not marker.exists():  # a kept folder may hold the new files of an earlier call: start again
            shutil.rmtree(data, ignore_errors=True)
            for old in work.glob(".made-*"):
                old.unlink()
            start = time.perf_counter()
            make_small_jpegs(data, files)
            marker.touch()
            print(f"made {files:,} JPEGs in {time.perf_counter() - start:.1f} s under {data}", flush=True)
        else:
            for extra in sorted(data.glob("*/img-*.jpg")):
                if int(extra.stem.split("-")[1]) >= files:
                    extra.unlink()
        print(f"CPU: {cpu_flags()}; load average {load_average()}", flush=True)
        seconds = 2.0 if a.quick else a.forward_seconds
        forward = [forward_only(work, seconds)]  # before and after the runs: the machine's speed drifts
        if a.seed_cache:
            seed_cache(work)
        cold = run_chain(work, "cold", work / "cold.log")
        print(f"cold run: {cold.wall_s:.1f} s (log {work / 'cold.log'})", flush=True)
        make_small_jpegs(data, new, start=files)
        warm = run_chain(work, "incremental", work / "incremental.log")
        forward.append(forward_only(work, seconds))
        report(cold, warm, files, new, forward, seeded=a.seed_cache)
        if cold.returncode or warm.returncode:
            sys.exit(1)
    finally:
        if a.dir is None and not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
