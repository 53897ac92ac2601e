"""`data_issues` and the model-free duplicates on real photos with planted problems, and hashes at scale.

    PYTHONPATH=. python benchmarks/bench_data_issues.py [--photos 200] [--plant 20] [--hashes 100000]

1. Real photos: the real-media corpus's photos (lightly_assets_tests/real_media.py; `scripts/fetch_real_media.sh`
   fills it), each as a JPEG of at most `--max-side` px in `clean/`, and for `--plant` of them per issue a planted
   copy in a folder named after the issue: blurry (Gaussian blur of 1% of the long side), dark (brightness x0.15),
   light (80% blended into white), grayscale, low_information (a flat colour with sensor-like noise), odd aspect
   ratio (a 4:1 strip), odd size (24 px), broken (a JPEG cut in half); and visual copies (resized to 60% + JPEG
   q70, cropped to 95% + q85, brightened x1.15 + q90). The chain runs through Dagster (file_index, frame_index,
   embeddings, data_issues, duplicates) on that folder: recall per issue (planted files flagged with their issue,
   among those whose original is not flagged with it), the share of untouched photos flagged (per issue), visual
   copies found in their original's group, false groups (two distinct photos in one group). Time: `data_issues`
   (decode + statistics + scoring) beside `embeddings` in the same run, and a second run (statistics cached).
2. Hashes at scale: `--hashes` synthetic 64-bit hashes with 1% planted copies (0-6 bits flipped), grouped by
   `find_duplicates` with hashes alone (near-duplicates off): time, peak RSS (own process), planted copies found.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

PLANTED = ("blurry", "dark", "light", "grayscale", "low_information", "odd_aspect_ratio", "odd_size", "broken")
COPIES = ("copy_small", "copy_crop", "copy_bright")


def cpu_flags() -> str:
    flags = set(re.findall(r"\w+", Path("/proc/cpuinfo").read_text()))
    return ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))


def corpus_photos(limit: int, max_side: int) -> list[Image.Image]:
    """The corpus's decodable photos of at least 64 px, as RGB at most `max_side` px (sorted by path)."""
    from lightly_assets_tests.real_media import IMAGE_SUFFIXES, corpus

    out = []
    for folder in sorted(corpus().values()):
        for path in sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as image:
                    image.draft("RGB", (max_side, max_side))
                    picture = image.convert("RGB")
            except Exception:  # noqa: BLE001 - the corpus holds damaged files on purpose
                continue
            if min(picture.size) >= 64:
                picture.thumbnail((max_side, max_side))
                out.append(picture)
    return out[:limit]


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def plant(issue: str, image: Image.Image, seed: int) -> bytes:
    """The planted version of a photo, as JPEG bytes."""
    w, h = image.size
    if issue == "blurry":
        return _jpeg(image.filter(ImageFilter.GaussianBlur(0.01 * max(w, h))))
    if issue == "dark":
        return _jpeg(ImageEnhance.Brightness(image).enhance(0.15))
    if issue == "light":
        return _jpeg(Image.blend(image, Image.new("RGB", image.size, "white"), 0.8))
    if issue == "grayscale":
        return _jpeg(image.convert("L").convert("RGB"))
    if issue == "low_information":
        rng = np.random.default_rng(seed)
        flat = rng.integers(30, 220, 3) + rng.normal(0, 1.0, (h, w, 1))
        return _jpeg(Image.fromarray(np.clip(flat, 0, 255).astype(np.uint8)))
    if issue == "odd_aspect_ratio":
        return _jpeg(image.crop((0, (h - w // 4) // 2, w, (h - w // 4) // 2 + max(1, w // 4))))
    if issue == "odd_size":
        small = image.copy()
        small.thumbnail((24, 24))
        return _jpeg(small)
    if issue == "broken":
        data = _jpeg(image)
        return data[: len(data) // 2]
    if issue == "copy_small":
        return _jpeg(image.resize((max(8, int(w * 0.6)), max(8, int(h * 0.6)))), 70)
    if issue == "copy_crop":
        return _jpeg(image.crop((int(w * 0.025), int(h * 0.025), int(w * 0.975), int(h * 0.975))), 85)
    if issue == "copy_bright":
        return _jpeg(ImageEnhance.Brightness(image).enhance(1.15), 90)
    raise ValueError(issue)


def build(root: Path, photos: list[Image.Image], per_issue: int) -> None:
    """clean/pNNNN.jpg, and <issue>/pNNNN.jpg for `per_issue` photos spread over the corpus."""
    for i, image in enumerate(photos):
        (root / "clean").mkdir(parents=True, exist_ok=True)
        (root / "clean" / f"p{i:04d}.jpg").write_bytes(_jpeg(image))
    for k, issue in enumerate(PLANTED + COPIES):
        (root / issue).mkdir(parents=True, exist_ok=True)
        picks = np.linspace(0, len(photos) - 1, min(per_issue, len(photos))).astype(int)
        for i in sorted(set(((picks + k) % len(photos)).tolist())):
            (root / issue / f"p{i:04d}.jpg").write_bytes(plant(issue, photos[i], i))


def run_chain(tmp: Path) -> tuple[dict, dict]:
    """file_index .. selection through Dagster, twice (the second: statistics from the cache)."""
    from dagster import DagsterEventType, DagsterInstance, materialize

    from lightly_assets.definitions import resources
    from lightly_assets.defs.curation import duplicates, selection
    from lightly_assets.defs.data_issues import data_issues
    from lightly_assets.defs.embedding import embeddings
    from lightly_assets.defs.indexing import file_index, frame_index
    from lightly_assets.defs.partitions import datasets_partitions
    from lightly_assets.defs.resources import StorageResource

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
    resources = resources() | {"storage": StorageResource(data_dir=str(tmp / "data"), output_dir=str(tmp / "out"))}
    timings = []
    for _ in range(2):
        result = materialize(
            [file_index, frame_index, embeddings, data_issues, duplicates, selection],
            resources=resources,
            partition_key="ds",
            instance=instance,
            run_config={"ops": {"selection": {"config": {"n_samples": 20}}}},
        )
        steps: dict[str, float] = {}
        started: dict[str, float] = {}
        for record in instance.all_logs(result.run_id):
            event = record.dagster_event
            if event is None or not event.step_key:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                started[event.step_key] = record.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                steps[event.step_key] = record.timestamp - started[event.step_key]
        meta = {}
        for node in ("embeddings", "data_issues", "selection"):
            [materialization] = result.asset_materializations_for_node(node)
            meta[node] = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        timings.append({"steps": steps, "meta": meta})
    return timings[0], timings[1]


def genuinely_grey(photos: list[Image.Image]) -> set[str]:
    """Photos whose R, G and B are within 8 levels everywhere: greyscale by nature, rightly flagged."""
    out = set()
    for i, photo in enumerate(photos):
        a = np.asarray(photo).astype(np.int16)
        if max(np.abs(a[..., 0] - a[..., 1]).max(), np.abs(a[..., 1] - a[..., 2]).max()) <= 8:
            out.add(f"p{i:04d}")
    return out


def score(tmp: Path, n_photos: int, grey: set[str]) -> dict:
    out = tmp / "out" / "ds"
    issues = pd.read_csv(out / "data_issues.csv")
    issues["folder"] = issues["filenames"].str.split("/").str[0]
    issues["photo"] = issues["filenames"].str.extract(r"(p\d{4})")[0]
    clean = issues[issues["folder"] == "clean"]
    flagged_clean = {(p, i) for p, i in zip(clean["photo"], clean["issue"], strict=True)}
    recall = {}
    for issue in PLANTED:
        files = sorted(p.stem for p in (tmp / "data" / "ds" / issue).glob("*.jpg"))
        fair = [p for p in files if (p, issue) not in flagged_clean]
        hit = set(issues[(issues["folder"] == issue) & (issues["issue"] == issue)]["photo"])
        recall[issue] = f"{len(hit & set(fair))}/{len(fair)}"
    groups = pd.read_csv(out / "duplicates.csv")
    groups["photo"] = groups["filenames"].str.extract(r"(p\d{4})")[0]
    groups["folder"] = groups["filenames"].str.split("/").str[0]
    by_group = groups.groupby("group")
    false_groups = int(sum(g["photo"].nunique() > 1 for _, g in by_group))
    copies = {}
    for copy in COPIES:
        files = sorted(p.stem for p in (tmp / "data" / "ds" / copy).glob("*.jpg"))
        found = 0
        for photo in files:
            mine = groups[(groups["folder"] == copy) & (groups["photo"] == photo)]["group"]
            originals = groups[(groups["folder"] == "clean") & (groups["photo"] == photo)]["group"]
            found += int(len(mine) > 0 and len(originals) > 0 and mine.iloc[0] == originals.iloc[0])
        copies[copy] = f"{found}/{len(files)}"
    return {
        "photos": n_photos,
        "recall": recall,
        "clean_flagged": _share(clean["photo"].nunique(), n_photos),
        "clean_flagged_per_issue": clean["issue"].value_counts().to_dict(),
        "clean_flagged_not_counting_genuine_greyscale": _share(
            clean[~((clean["issue"] == "grayscale") & clean["photo"].isin(grey))]["photo"].nunique(), n_photos
        ),
        "genuinely_grey_photos": len(grey),
        "visual_copies_found": copies,
        "false_groups": false_groups,
        "groups": int(groups["group"].nunique()),
        "kinds": groups["kind"].value_counts().to_dict(),
        "selection_n_samples_20": _selection(out, groups),
    }


def _selection(out: Path, groups: pd.DataFrame) -> str:
    """How many `n_samples: 20` wrote, and how many duplicate groups hold two of them."""
    chosen = (out / "selection.txt").read_text().splitlines()
    twice = groups[groups["filenames"].isin(chosen)]["group"].duplicated().sum()
    return f"{len(chosen)} written, {int(twice)} groups selected twice"


def _share(k: int, n: int) -> str:
    return f"{k}/{n} ({k / max(n, 1):.1%})"


def hash_distances(photos: list[Image.Image]) -> dict:
    """Hamming distances of the planted copies to their originals, and of distinct photos to each other."""
    from lightly_assets.curation.phash import dct_hash, hamming

    hashes = np.stack([dct_hash(p.convert("L")) for p in photos])
    copies = []
    for i, photo in enumerate(photos):
        for copy in COPIES:
            copied = Image.open(io.BytesIO(plant(copy, photo, i))).convert("L")
            copies.append(int(hamming(hashes[i], dct_hash(copied))))
    i, j = np.triu_indices(len(photos), 1)
    distinct = hamming(hashes[i], hashes[j])
    return {
        "copies_max": int(max(copies)),
        "copies_p99": float(np.percentile(copies, 99)),
        "copies_within_10": f"{sum(c <= 10 for c in copies)}/{len(copies)}",
        "distinct_min": int(distinct.min()),
        "distinct_p0.1": float(np.percentile(distinct, 0.1)),
        "distinct_within_10": f"{int((distinct <= 10).sum())}/{len(distinct)}",
    }


def peak_rss_mb() -> int:
    """This process's peak RSS (VmHWM: reset by exec, unlike ru_maxrss, which a child inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def hash_case(n: int) -> dict:
    """find_duplicates on n synthetic hashes (1% planted copies), hashes alone; in its own process for its RSS."""
    from lightly_assets.curation.duplicates import Hashes, find_duplicates

    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    k = n // 100
    flips = rng.integers(0, 7, k)
    for row, f in enumerate(flips):
        copy = values[row].copy()
        for bit in rng.choice(64, f, replace=False):
            copy[bit // 8] ^= np.uint8(1 << (bit % 8))
        values[n - k + row] = copy
    names = [str(i) for i in range(n)]
    hashes = Hashes(values, np.ones(n, dtype=bool), [""] * n, 10)
    start = time.perf_counter()
    found = find_duplicates(names, np.zeros((n, 1), np.float32), names, None, hashes=hashes)  # near: not searched
    seconds = time.perf_counter() - start
    group = found.group_of()
    hit = int(np.sum((group[:k] >= 0) & (group[:k] == group[n - k :])))
    return {
        "samples": n,
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
        "planted_found": f"{hit}/{k}",
        "groups": found.groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--plant", type=int, default=20)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--child-hashes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_hashes:
        print(json.dumps(hash_case(args.child_hashes)))
        return
    print(f"CPU flags: {cpu_flags()}")
    photos = corpus_photos(args.photos, args.max_side)
    print(json.dumps({"hash_distances": hash_distances(photos)}))
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-issues-"))
    try:
        build(tmp / "data" / "ds", photos, args.plant)
        first, second = run_chain(tmp)
        print(json.dumps({"real_photos": score(tmp, len(photos), genuinely_grey(photos))}))
        embed_s, issues_s = first["steps"]["embeddings"], first["steps"]["data_issues"]
        stats_s = first["meta"]["data_issues"]["stats_seconds"]
        timing = {
            "samples": first["meta"]["data_issues"]["samples"],
            "embeddings_step_s": round(embed_s, 2),
            "embedding_s": first["meta"]["embeddings"]["seconds"],
            "data_issues_step_s": round(issues_s, 2),
            "stats_s": stats_s,
            "data_issues_share_of_embeddings_step": f"{issues_s / embed_s:.1%}",
            "stats_share_of_embedding": f"{stats_s / max(first['meta']['embeddings']['seconds'], 1e-9):.1%}",
            "second_run_data_issues_step_s": round(second["steps"]["data_issues"], 2),
            "second_run_scored": second["meta"]["data_issues"]["scored_samples"],
        }
        print(json.dumps({"time": timing}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.hashes:
        out = subprocess.run(
            [sys.executable, __file__, "--child-hashes", str(args.hashes)], capture_output=True, text=True, check=True
        )
        print(json.dumps({"hashes_alone": json.loads(out.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
    main()
