"""How many samples to give the network at once: each engine's rate by samples per request, against its choice.

usage:
  python benchmarks/bench_request_size.py                         # lightly's network at 64 and 224 px, both engines
  python benchmarks/bench_request_size.py --sizes 224 --engines openvino --seconds 8

The default network (seeded random weights: the rate does not depend on them) on all cores, at the machine's default
precision, fed ready uint8 batches. OpenVINO: requests put one after the other into its streams (`in_flight`, as the
embedding step does), each holding R samples. torch on a CPU: one forward pass of R samples at a time. For each R
the samples/s, then the engine's own choice for a batch of 64 (`rows_per_request`) and its rate over the whole
batch's (R = 64): what cutting a batch to the caches gains. Two rounds, so a drift of the machine shows.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.runtime import cpu_summary
from lightly_assets.workers import usable_cores

BATCH = 64


def _rate(model, rows: int, size: int, seconds: float) -> float:  # noqa: ANN001
    """Samples/s with `rows` samples per request (OpenVINO, one per stream at once) or per forward pass (torch)."""
    pixels = np.random.default_rng(0).integers(0, 256, (rows, size, size, 3), dtype=np.uint8)
    engine = model.runner
    if model.engine == "openvino":
        flight = engine.in_flight()
        run = lambda: flight.put(pixels)  # noqa: E731
    else:
        flight, run = None, lambda: engine._forward(pixels)  # noqa: E731 - one pass, not cut again
    for _ in range(3):
        run()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        n += rows
    if flight is not None:
        flight.finish()
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,224", help="input sizes in px")
    p.add_argument("--engines", default="openvino,torch")
    p.add_argument("--rows", default="1,2,4,8,16,32,64", help="samples per request to time")
    p.add_argument("--seconds", type=float, default=4.0, help="per figure")
    args = p.parse_args()
    print(f"machine: {cpu_summary()}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for size in (int(s) for s in args.sizes.split(",")):
        for engine in args.engines.split(","):
            model = load_model(None, input_size=size, precision="auto", threads=usable_cores(), engine=engine)
            chosen = model.rows_per_put(BATCH)
            for round_ in (1, 2):
                rates = {r: _rate(model, r, size, args.seconds) for r in (int(x) for x in args.rows.split(","))}
                rates.setdefault(chosen, _rate(model, chosen, size, args.seconds))
                rates.setdefault(BATCH, _rate(model, BATCH, size, args.seconds))
                shown = "  ".join(f"{r}: {v:.2f}" for r, v in sorted(rates.items()))
                print(f"{size} px {engine} {model.precision}, round {round_}, samples/s by samples per request: "
                      f"{shown}")  # fmt: skip
                print(f"  chosen for a batch of {BATCH}: {chosen} per request, {rates[chosen] / rates[BATCH]:.2f}x "
                      f"the whole batch's rate")  # fmt: skip


if __name__ == "__main__":
    main()
