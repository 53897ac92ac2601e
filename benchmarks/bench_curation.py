"""`duplicates` and `selection` at scale and on real photos.

    PYTHONPATH=. python benchmarks/bench_curation.py [--n 100000] [--select 100] [--exact-768 20000] [--skip-real]

1. Synthetic: `--n` random vectors in 32 and 768 dimensions with 1% planted near copies (cosine ~0.97), searched
   exactly (faiss flat) and approximately (faiss inverted file): time, peak RSS (each case in its own process), and
   the planted pairs found. The exact 768-d case runs on `--exact-768` vectors (the size below which the asset
   searches exactly), since 100,000 x 100,000 at 768-d is minutes on a small CPU. Then `selection` (diverse, on
   LightlyStudio's engine) of `--select` samples with its coverage radius beside a random selection's.
2. Real photos: scikit-image's bundled photos, each cut into quadrants (distinct photos), each with two planted
   copies (resized to 60% + JPEG q70; cropped 95% + JPEG q85). Embedded with the project's default network (its
   pretrained weights when the zoo file is in torch's cache, else random, which the asset warns about) and with a
   weight-free reference (16x16 grey thumbnails, mean-removed): copies found, false groups (two distinct photos in
   one group), cosine of copies vs distinct pairs, coverage radius vs random. The same on the real-media corpus's
   photos (lightly_assets_tests/real_media.py; its calibration series are near-duplicates of each other already,
   so some "false" groups there are true ones).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def cpu_flags() -> str:
    flags = set(re.findall(r"\w+", Path("/proc/cpuinfo").read_text()))
    return ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random unit vectors; the last 1% are near copies of the first 1% (pairs returned)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = n // 100
    noise = rng.normal(size=(k, dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x[n - k :] = x[:k] + 0.25 * noise  # cosine to the original ~0.97
    return x, np.stack([np.arange(k), np.arange(n - k, n)], axis=1)


def case(kind: str, n: int, dim: int, select_n: int) -> dict:
    """One measurement, run in a child process so its peak RSS is its own."""
    from lightly_assets.curation.duplicates import find_duplicates
    from lightly_assets.curation.selection import candidates, coverage_radius, random_rows, select

    x, pairs = synthetic(n, dim)
    names = [str(i) for i in range(n)]
    start = time.perf_counter()
    if kind == "incremental":  # the state of a run without the last 1%, then a run with them: only they are searched
        k = n // 100
        state = find_duplicates(names[: n - k], x[: n - k], names[: n - k], 0.9, exact_limit=0).state
        start = time.perf_counter()
        found = find_duplicates(names, x, names, 0.9, state=state, exact_limit=0)
        seconds = time.perf_counter() - start
        group = found.group_of()
        hit = int(np.sum((group[pairs[:, 0]] >= 0) & (group[pairs[:, 0]] == group[pairs[:, 1]])))
        extra = {"method": found.method, "searched": found.searched, "planted_found": f"{hit}/{len(pairs)}"}
    elif kind == "selection":
        group_of = np.full(n, -1)
        chosen = select(x, np.zeros(n, int), group_of, select_n, "diverse")
        seconds = time.perf_counter() - start
        radius = coverage_radius(x, chosen.rows)
        baseline = coverage_radius(x, random_rows(candidates(group_of), select_n))
        extra = {"selected": len(chosen.rows), "coverage_radius": radius, "coverage_radius_random": baseline}
    else:
        found = find_duplicates(names, x, names, 0.9, exact_limit=n if kind == "exact" else 0)
        seconds = time.perf_counter() - start
        group = found.group_of()
        hit = int(np.sum((group[pairs[:, 0]] >= 0) & (group[pairs[:, 0]] == group[pairs[:, 1]])))
        extra = {"method": found.method, "planted_found": f"{hit}/{len(pairs)}", "groups": found.groups}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": kind, "n": n, "dim": dim, "seconds": round(seconds, 1), "peak_rss_mb": round(rss), **extra}


def run_child(kind: str, n: int, dim: int, select_n: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(n), str(dim), str(select_n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def corpus_photos(limit: int) -> list[tuple[str, object]]:
    """Photos of the real-media corpus (lightly_assets_tests/real_media.py), at most 512 px; [] when not fetched."""
    from PIL import Image

    from lightly_assets_tests.real_media import IMAGE_SUFFIXES, Unavailable, corpus

    try:
        folders = corpus()
    except Unavailable:
        return []
    out = []
    for folder in sorted(folders.values()):
        for path in sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as image:
                    image.draft("RGB", (512, 512))
                    picture = image.convert("RGB")
            except Exception:  # noqa: BLE001 - the corpus holds damaged files on purpose
                continue
            if min(picture.size) >= 64:
                picture.thumbnail((512, 512))
                out.append((str(path.relative_to(folder.parent)), picture))
    return out[:limit]


def photos(source: str = "skimage") -> list[tuple[str, object]]:
    """scikit-image's bundled photos (RGB), quadrants of those at least 256 px, as distinct photos; or, with
    `corpus`, the real-media corpus's photos as they are."""
    if source == "corpus":
        return corpus_photos(400)
    import skimage.data
    from PIL import Image

    names = [
        "astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
        "motorcycle_left", "page", "text", "coins", "moon", "horse", "retina", "brick", "grass", "gravel",
        "cell", "logo", "colorwheel", "clock", "eagle",
    ]  # fmt: skip
    out = []
    for name in names:
        try:
            array = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a photo this version does not ship (or would download)
            continue
        image = Image.fromarray(np.asarray(array * 255 if array.dtype == bool else array).astype(np.uint8))
        image = image.convert("RGB")
        w, h = image.size
        if min(w, h) < 256:
            out.append((name, image))
            continue
        for i, (x, y) in enumerate([(0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2)]):
            out.append((f"{name}-{i}", image.crop((x, y, x + w // 2, y + h // 2))))
    return out


def _jpeg(image, quality: int):
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def planted_photos(source: str):
    """(names, images, original index per image): every photo, then its two planted copies."""
    names, images, origin = [], [], []
    for i, (name, image) in enumerate(photos(source)):
        w, h = image.size
        small = _jpeg(image.resize((max(8, int(w * 0.6)), max(8, int(h * 0.6)))), 70)
        crop = _jpeg(image.crop((int(w * 0.025), int(h * 0.025), int(w * 0.975), int(h * 0.975))), 85)
        for suffix, picture in (("", image), ("-small", small), ("-crop", crop)):
            names.append(f"{name}{suffix}")
            images.append(picture)
            origin.append(i)
    return names, images, np.array(origin)


def embed_network(images) -> tuple[np.ndarray, str]:
    from lightly_assets.defs.resources import EmbeddingModelResource

    resource_ = EmbeddingModelResource()
    model = resource_.load()
    size = resource_.input_size
    batch = np.stack([np.asarray(im.resize((size, size))) for im in images])
    vectors = np.concatenate([model.embed(batch[i : i + 64]) for i in range(0, len(batch), 64)])
    return vectors, f"{model.description} ({'RANDOM weights' if model.random_init else 'pretrained'})"


def embed_thumbnails(images) -> tuple[np.ndarray, str]:
    grey = np.stack([np.asarray(im.convert("L").resize((16, 16)), dtype=np.float32).ravel() for im in images])
    return grey - grey.mean(axis=1, keepdims=True), "16x16 grey thumbnails, mean removed (no weights)"


def score(names: list[str], unit: np.ndarray, origin: np.ndarray, similarity: float) -> dict:
    """Planted copies in their original's group, and groups that join two distinct photos, at a threshold."""
    from lightly_assets.curation.duplicates import find_duplicates

    found = find_duplicates(names, unit, names, similarity)
    group = found.group_of()
    copy_rows = [i for i, n in enumerate(names) if n.endswith(("-small", "-crop"))]
    head = {o: i for i, o in reversed(list(enumerate(origin)))}
    hits = sum(1 for i in copy_rows if group[i] >= 0 and group[i] == group[head[origin[i]]])
    false_groups = sum(1 for g in found.largest(10**6) if len(set(origin[g["row"]])) > 1)
    return {"planted_copies_found": f"{hits}/{len(copy_rows)}", "false_groups": false_groups, "groups": found.groups}


def real_photos(select_n: int, source: str = "skimage") -> list[dict]:
    from lightly_assets.curation.duplicates import find_duplicates, unit_rows
    from lightly_assets.curation.selection import candidates, coverage_radius, random_rows, select
    from lightly_assets.curation.thresholds import default_similarity, uniformity_warning

    names, images, origin = planted_photos(source)
    if not names:
        return [{"photos": source, "skipped": "the real-media corpus is not fetched (scripts/fetch_real_media.sh)"}]
    rows = []
    for embed in (embed_network, embed_thumbnails):
        vectors, what = embed(images)
        unit = unit_rows(vectors)
        sims = unit @ unit.T
        same = origin[:, None] == origin[None, :]
        off = ~np.eye(len(unit), dtype=bool)
        copies, distinct = sims[same & off], sims[~same]
        threshold = round(float((np.percentile(distinct, 99.9) + np.min(copies)) / 2), 3)
        threshold = min(max(threshold, 0.01), 1.0)

        found = find_duplicates(names, unit, names, threshold)
        group = found.group_of()
        at_default = {
            "threshold": default_similarity("lightly"),
            **score(names, unit, origin, default_similarity("lightly")),
        }
        k = min(select_n, len(names) // 3)
        pool = candidates(group)
        chosen = select(unit, np.zeros(len(unit), int), group, k, "diverse").rows
        rows.append(
            {
                "photos_from": source,
                "embedding": what,
                "samples": len(names),
                "photos": int(origin.max()) + 1,
                "copies_cosine_min_median": [round(float(copies.min()), 3), round(float(np.median(copies)), 3)],
                "distinct_cosine_median_p99.9": [
                    round(float(np.median(distinct)), 3),
                    round(float(np.percentile(distinct, 99.9)), 3),
                ],
                "threshold_between": threshold,
                **score(names, unit, origin, threshold),
                **({"at_lightly_default": at_default} if embed is embed_network else {}),
                "selected": k,
                "coverage_radius": round(coverage_radius(unit, chosen), 4),
                "coverage_radius_random": round(coverage_radius(unit, random_rows(pool, k)), 4),
                "warning": uniformity_warning(unit, threshold, "RANDOM" in what) or "none",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--select", type=int, default=100)
    parser.add_argument("--exact-768", type=int, default=20_000)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--only-real", action="store_true")
    parser.add_argument("--child", nargs=4, help="internal: one case in this process (kind n dim select)")
    args = parser.parse_args()
    if args.child:
        kind, n, dim, select_n = args.child
        print(json.dumps(case(kind, int(n), int(dim), int(select_n))))
        return
    print(f"CPU flags: {cpu_flags()}; cores: {len(__import__('os').sched_getaffinity(0))}")
    for kind, n, dim in (
        []
        if args.only_real
        else [
            ("exact", args.n, 32),
            ("approximate", args.n, 32),
            ("exact", args.exact_768, 768),
            ("approximate", args.exact_768, 768),
            ("approximate", args.n, 768),
            ("incremental", args.n, 768),
            ("selection", args.n, 32),
            ("selection", args.n, 768),
        ]
    ):
        print(json.dumps(run_child(kind, n, dim, args.select)), flush=True)
    if not args.skip_real:
        for source in ("skimage", "corpus"):
            for row in real_photos(args.select, source):
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
