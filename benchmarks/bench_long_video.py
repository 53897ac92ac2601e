"""A long video: frame_index time, embedding rate and peak RSS, progress with ETA, and resume after a kill.

usage:
  python benchmarks/bench_long_video.py                      # 20 min 640x360 30 fps (36,000 frames), embeds 3,000
  python benchmarks/bench_long_video.py --minutes 2          # a shorter video, for a quick run
  python benchmarks/bench_long_video.py --embed-frames 0     # embed every frame (36,000: long on a CPU)
  python benchmarks/bench_long_video.py --kill-after 20       # kill the embedding after 20 s, then resume it

The video (H.264, testsrc2 pattern, with an AAC sound track as real videos have) is written once by the ffmpeg of
the `imageio-ffmpeg` wheel into --work (default /tmp/lightly-assets-long-video). Indexing runs on the whole video.
Embedding runs in a child process (its own peak RSS, the figure a user sees) on the first --embed-frames frames
of frame_index (the decoder stops after the last one), with the incremental cache as a real run has it; the
time for all frames is extrapolated from that rate and said to be an extrapolation. With --kill-after, the child
is killed (SIGKILL) that many seconds in and started again: it reports how many vectors it found in the cache
(saved by the checkpoint during the first run) and embeds only the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_flags() -> str:
    flags: set[str] = set()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return ", ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in ("avx512_bf16", "amx_bf16"))


def make_video(path: Path, minutes: float, size: str = "640x360", fps: int = 30) -> Path:
    """The long video, written once (ultrafast H.264 keeps writing it short)."""
    if path.is_file():
        return path
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60
    tmp = path.with_suffix(".tmp.mp4")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-nostdin"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-shortest"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * fps), "-pix_fmt", "yuv420p", "-c:a", "aac"]
    start = time.perf_counter()
    subprocess.run([*cmd, str(tmp)], check=True)
    tmp.rename(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def index(dataset: Path) -> dict:
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset

    start = time.perf_counter()
    files = scan_dataset(dataset).files
    samples = build_sample_index(files, dataset).samples
    seconds = time.perf_counter() - start
    return {"frames": len(samples), "index_s": round(seconds, 2), "frames_per_s": round(len(samples) / seconds)}


def child(dataset: Path, out: Path, n_frames: int, batch_size: int) -> None:
    """One embedding run, as the asset does it (cache + checkpoint + progress); prints a JSON line at the end."""
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset
    from lightly_assets.embedding.cache import EmbeddingCache
    from lightly_assets.embedding.factory import load_model
    from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
    from lightly_assets.progress import Progress

    samples = build_sample_index(scan_dataset(dataset).files, dataset).samples
    if n_frames:
        samples = samples.iloc[:n_frames].reset_index(drop=True)
    model = load_model(None, input_size=64, seed=0)
    cache = EmbeddingCache(out / "embedding_cache.npz")
    progress = Progress("embedding", lambda line: print(line, flush=True), every_s=10)
    start = time.perf_counter()
    result = embed_samples(
        samples, dataset, model, options=EmbedOptions(batch_size=batch_size), cache=cache, progress=progress
    )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "samples": len(samples),
        "reused": result.reused,
        "embedded": result.embedded,
        "embed_s": round(time.perf_counter() - start, 1),
        "samples_per_s": round(result.samples_per_s, 1),
        "peak_rss_mb": round(rss_mb),
        "precision": model.precision,
    }
    print("RESULT " + json.dumps(figures), flush=True)


def run_child(args: argparse.Namespace, dataset: Path, kill_after: float | None = None) -> dict | None:
    cmd = [sys.executable, __file__, "--child", str(dataset), "--work", str(args.work)]
    cmd += ["--embed-frames", str(args.embed_frames), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    start = time.monotonic()
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            print(f"killed the embedding after {time.monotonic() - start:.0f} s", flush=True)
            return None
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
        else:
            print("  " + line.rstrip(), flush=True)
    proc.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--embed-frames", type=int, default=3000, help="0: every frame")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kill-after", type=float, default=None, help="seconds; then the run is resumed")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lightly-assets-long-video"))
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.work, args.embed_frames, args.batch_size)
        return
    dataset = args.work / "data" / f"long-{args.minutes:g}min"
    make_video(dataset / "long.mp4", args.minutes)
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores", flush=True)
    figures = index(dataset)
    print(f"frame_index: {figures['frames']:,} frames in {figures['index_s']} s ({figures['frames_per_s']:,}/s)")
    (args.work / "embedding_cache.npz").unlink(missing_ok=True)
    if args.kill_after is not None:
        run_child(args, dataset, kill_after=args.kill_after)
    result = run_child(args, dataset)
    if result is None:
        raise SystemExit("the embedding child printed no result")
    print(f"embeddings: {json.dumps(result)}")
    if args.kill_after is not None:
        print(f"resume: {result['reused']:,} vectors from the cache saved before the kill, {result['embedded']:,} new")
    if result["samples_per_s"] and result["samples"] < figures["frames"]:
        estimate = figures["frames"] / result["samples_per_s"]
        print(f"extrapolated (not measured): all {figures['frames']:,} frames in {estimate / 60:.0f} min at that rate")


if __name__ == "__main__":
    main()
