"""The diverse selection from scratch at scale: ours against LightlyStudio's engine, side by side.

    python benchmarks/bench_selection.py [--n 1000000] [--share 0.1] [--kinds clustered,manifold,uniform,hashes]
                                         [--csv embeddings.csv] [--prefix 2000]

Each kind of vectors (made here, seeded) is selected from with `--share` of its rows picked, farthest-point
sampling from the first row, three ways:
  engine   LightlyStudio's sampling engine (`lightly_mundig`, the diversifying strategy);
  plain    one numpy product over all candidates per pick;
  ours     `farthest_points`: plain for the first ~sqrt(n) picks, then only the groups a pick can reach.
The engine and plain cost the same for every pick (one pass over the candidates), so they are timed on the first
`--prefix` picks and their whole time is that rate times the picks (printed as such); ours runs in full, and the
whole `choose` (picks, the cover they leave, the random baseline's cover) after it. Kinds:
  clustered  1,000 centres in 32-d, each sample a centre plus noise (classes of photos);
  manifold   8 latent dimensions mapped into 32-d plus noise (a smooth, low-dimensional set);
  uniform    uniform on the 32-d sphere: the worst case, nothing to prune (ours falls back to plain);
  hashes     distinct perceptual hashes (31 of the 63 AC bits set, as the median split sets them; random weights
             select from these): their bits as +-1 vectors for the engine and plain, ours samples the hashes
             themselves in Hamming distances (`farthest_hashes`, the same picks).
`--csv` adds the vectors of a Lightly embeddings CSV (your own model's) as a kind of its own.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightly_assets.curation.duplicates import unit_rows  # noqa: E402
from lightly_assets.curation.farthest import farthest_points  # noqa: E402
from lightly_assets.curation.farthest_hashes import farthest_hashes  # noqa: E402
from lightly_assets.curation.selection import hash_features  # noqa: E402
from lightly_assets.curation.selection_state import Request, choose  # noqa: E402


def cpu_flags() -> str:
    flags = set(re.findall(r"\w+", Path("/proc/cpuinfo").read_text()))
    named = ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx512_vnni", "avx512_bf16", "amx_bf16"))
    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return f"{model.group(1) if model else '?'}; {named}"


def made_hashes(n: int, seed: int = 0) -> np.ndarray:
    """n distinct-photo-like hashes: 31 of the 63 AC bits set at random, the DC bit clear."""
    rng = np.random.default_rng(seed)
    bits = np.zeros((n, 64), dtype=bool)
    bits[np.arange(n)[:, None], 1 + np.argsort(rng.random((n, 63)), axis=1)[:, :31]] = True
    return np.packbits(bits, axis=1)


def made(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "clustered":
        centres = rng.normal(size=(1000, 32)).astype(np.float32)
        return unit_rows(centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, 32)).astype(np.float32))
    if kind == "manifold":
        mapping = rng.normal(size=(8, 32)).astype(np.float32)
        latent = rng.normal(size=(n, 8)).astype(np.float32)
        return unit_rows(latent @ mapping + 0.05 * rng.normal(size=(n, 32)).astype(np.float32))
    return unit_rows(rng.normal(size=(n, 32)).astype(np.float32))


def from_csv(path: Path) -> np.ndarray:
    from lightly_assets.lightly_csv import read_embeddings_csv

    _, matrix, _ = read_embeddings_csv(path)
    return unit_rows(matrix)


def engine_picks(unit: np.ndarray, count: int) -> None:
    import lightly_mundig

    engine = lightly_mundig.Selection()  # pyright: ignore[reportAttributeAccessIssue]
    engine.add_diversifying_strategy(embeddings=unit, strength=1.0, stopping_condition_minimum_distance=None)
    engine.run_selection(preselected_indices=[], n_total_samples=len(unit), n_samples_to_select=count)


def plain_picks(unit: np.ndarray, count: int) -> None:
    near = np.full(len(unit), -np.inf, dtype=np.float32)
    similarity = np.empty(len(unit), dtype=np.float32)
    for _ in range(count):
        at = int(np.argmin(near))
        np.matmul(unit, unit[at], out=similarity)
        np.maximum(near, similarity, out=near)
        near[at] = np.inf


def per_pick(run: Callable[[np.ndarray, int], None], unit: np.ndarray, prefix: int) -> float:
    start = time.perf_counter()
    run(unit, prefix)
    return (time.perf_counter() - start) / prefix


def bench(kind: str, unit: np.ndarray, share: float, prefix: int, codes: np.ndarray | None = None) -> None:
    n, picks = len(unit), max(1, int(len(unit) * share))
    engine = per_pick(engine_picks, unit, min(prefix, picks)) * picks
    plain = per_pick(plain_picks, unit, min(prefix, picks)) * picks
    start = time.perf_counter()
    pool, start_near = np.arange(n), np.full(n, -np.inf, dtype=np.float32)
    if codes is None:
        farthest_points(unit, pool, start_near, picks)
    else:
        farthest_hashes(codes, pool, start_near, picks)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    names = np.array([f"{i}.jpg" for i in range(n)])
    _, _, radius, baseline = choose(unit, np.zeros(n, int), np.full(n, -1), names, Request(picks), None, codes)
    whole = time.perf_counter() - start
    print(
        f"{kind:>10} {n:>9,} x {unit.shape[1]:<4} {picks:>8,} picks | engine {engine:8.1f} s | plain {plain:8.1f} s "
        f"| ours {ours:7.1f} s | engine/ours {engine / ours:5.1f}x plain/ours {plain / ours:5.1f}x | choose, with "
        f"both covers {whole:7.1f} s (radius {radius:.3f}, random {baseline:.3f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--kinds", default="clustered,manifold,uniform")
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--prefix", type=int, default=2000, help="picks the engine and plain are timed on")
    args = parser.parse_args()
    print(f"machine: {cpu_flags()}; engine and plain: the rate of their first {args.prefix} picks x the picks")
    for kind in [k for k in args.kinds.split(",") if k]:
        if kind == "hashes":
            codes = made_hashes(args.n)
            bench(kind, unit_rows(hash_features(codes)), args.share, args.prefix, codes)
        else:
            bench(kind, made(kind, args.n), args.share, args.prefix)
    if args.csv:
        bench(args.csv.name, from_csv(args.csv), args.share, args.prefix)


if __name__ == "__main__":
    main()
