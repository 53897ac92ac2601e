"""data_issues' domain code directly: perceptual hashes, picture statistics, issue scores, bad input, the cache;
and the curation that uses them (visual duplicates, a selection without samples with issues)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from lightly_assets import workers as workers_module
from lightly_assets.curation import stats as stats_module
from lightly_assets.curation.contact_sheet import THUMB
from lightly_assets.curation.duplicates import Hashes, find_duplicates
from lightly_assets.curation.errors import CurationError
from lightly_assets.curation.pair_search import hash_pairs, pair_order
from lightly_assets.curation.phash import check_max_distance, dct_hash, hamming
from lightly_assets.curation.quality import ISSUES, Thresholds, counts, issue_table, knn_outliers
from lightly_assets.curation.selection import hash_features, select
from lightly_assets.curation.stats import STATS, StatsCache, compute_stats, sample_stats
from lightly_assets_tests import EXAMPLE_DATA
from lightly_assets_tests.media import make_image, make_video
from lightly_assets_tests.statistics import image_stats

PHOTO = EXAMPLE_DATA / "images_weak_labels" / "cats" / "chelsea-0.jpg"


def photo(size: tuple[int, int] = (480, 360)) -> Image.Image:
    return Image.open(PHOTO).convert("RGB").resize(size)


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def samples_of(root: Path, names: list[str]) -> pd.DataFrame:
    """A frame_index-like table of image files under root."""
    rows = []
    for name in names:
        stat = (root / name).stat()
        rows.append({"filename": name, "source": name, "kind": "image", "frame": None, "size": stat.st_size,
                     "mtime_ns": stat.st_mtime_ns})  # fmt: skip
    return pd.DataFrame(rows)


def test_copies_hash_close_and_distinct_pictures_far() -> None:
    original = photo()
    base = dct_hash(original.convert("L"))
    copies = [
        jpeg(original.resize((288, 216)), 70),
        jpeg(original.crop((12, 9, 468, 351)), 85),
        ImageEnhance.Brightness(original).enhance(1.2),
    ]
    for copy in copies:
        assert hamming(base, dct_hash(copy.convert("L"))) <= 10
    others = [Image.open(p).convert("L") for p in sorted((EXAMPLE_DATA / "images_weak_labels" / "space").glob("*.jpg"))]
    assert min(int(hamming(base, dct_hash(o))) for o in others) > 16
    assert check_max_distance(10) == 10
    with pytest.raises(CurationError, match="max_hash_distance must be in"):
        check_max_distance(64)


def test_hash_pairs_skip_rows_without_a_hash_and_frames_of_one_video() -> None:
    values = np.random.default_rng(0).integers(0, 256, (5, 8), dtype=np.uint8)
    values[1] = values[0]
    values[3] = values[2]
    values[4] = values[0]
    pairs, distances = hash_pairs(values, 2, same=["a.mp4", "a.mp4", "", "", "b.mp4"])
    assert pairs.tolist() == [[0, 4], [1, 4], [2, 3]] and distances.tolist() == [0, 0, 0]  # never 0-1: one video
    pairs, _ = hash_pairs(values, 2, valid=np.array([True, True, True, False, False]))
    assert pairs.tolist() == [[0, 1]]


def _table(**columns) -> pd.DataFrame:
    """A statistics table of healthy 640x480 pictures, with the given columns overridden."""
    n = len(next(iter(columns.values())))
    base = {"width": 640.0, "height": 480.0, "lum_p05": 0.1, "lum_p95": 0.9, "chroma_p99": 0.2, "entropy": 0.9,
            "sharpness": 0.6, "broken": ""}  # fmt: skip
    return pd.DataFrame({k: columns.get(k, [v] * n) for k, v in base.items()})


def test_each_issue_is_flagged_with_a_score_that_grows_with_how_bad_it_is() -> None:
    stats = _table(
        sharpness=[0.6, 0.09, 0.01, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],
        lum_p95=[0.9, 0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9],
        lum_p05=[0.1, 0.1, 0.1, 0.0, 0.95, 0.1, 0.1, 0.1, 0.1],
        chroma_p99=[0.2, 0.2, 0.2, 0.2, 0.2, 0.0, 0.2, 0.2, 0.2],
        entropy=[0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9],
        width=[640.0, 640, 640, 640, 640, 640, 640, 4000, 16],
        height=[480.0, 480, 480, 480, 480, 480, 480, 400, 16],
        broken=["", "", "", "", "", "", "", "", ""],
    )
    samples = pd.DataFrame({"filename": [f"{i}.jpg" for i in range(9)], "kind": "image"})
    samples["source"] = samples["filename"]
    table = issue_table(stats, samples, Thresholds())
    found = {(f, i): s for f, i, s in table.itertuples(index=False)}
    assert "0.jpg" not in set(table["filenames"])
    assert 0.5 <= found[("1.jpg", "blurry")] < found[("2.jpg", "blurry")] <= 1.0
    assert found[("3.jpg", "dark")] == 1.0 and ("4.jpg", "light") in found and ("5.jpg", "grayscale") in found
    assert ("6.jpg", "low_information") in found and ("7.jpg", "odd_aspect_ratio") in found
    assert ("8.jpg", "odd_size") in found
    assert table["score"].between(0, 1).all() and set(table["issue"]) <= set(ISSUES)
    assert counts(table)["blurry"] == 2 and counts(table)["outlier"] == 0


def test_videos_are_judged_per_frame_and_their_shape_once_by_path() -> None:
    stats = _table(width=[20.0, 20, 20, 640], height=[200.0, 200, 200, 480], broken=["", "", "", "cut short"])
    samples = pd.DataFrame({
        "filename": ["v-0-mp4.png", "v-1-mp4.png", "v-2-mp4.png", "w-0-mp4.png"],
        "source": ["v.mp4", "v.mp4", "v.mp4", "w.mp4"], "kind": "video",
    })  # fmt: skip
    table = issue_table(stats, samples, Thresholds())
    assert table.values.tolist() == [
        ["v.mp4", "odd_aspect_ratio", pytest.approx(table["score"].iloc[0])],
        ["v.mp4", "odd_size", pytest.approx(table["score"].iloc[1])],
        ["w.mp4", "broken", 1.0],  # no frame of it decoded: the file, by its path
    ]


def test_outliers_by_knn_distance() -> None:
    rng = np.random.default_rng(0)
    cluster = rng.normal(size=(200, 8)) * 0.05 + np.eye(8)[0]
    x = np.concatenate([cluster, -np.eye(8)[:1]])
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    flagged, score = knn_outliers(unit, Thresholds().outlier)
    assert flagged.tolist() == [False] * 200 + [True] and score[-1] > 0.5


@pytest.mark.parametrize("bad", ["unreadable", "truncated", "zero_bytes", "one_pixel", "huge", "animated"])
def test_bad_input_is_scored_or_listed_never_raised(tmp_path: Path, bad: str) -> None:
    path = tmp_path / f"{bad}.png"
    if bad == "unreadable":
        path.write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    elif bad == "truncated":
        buffer = io.BytesIO()
        photo().save(buffer, format="JPEG")
        path = tmp_path / "truncated.jpg"
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif bad == "zero_bytes":
        path.write_bytes(b"")
    elif bad == "one_pixel":
        Image.new("RGB", (1, 1), (10, 200, 30)).save(path)
    elif bad == "huge":
        Image.new("L", (20_000, 2), 128).save(path)
    else:
        path = tmp_path / "animated.gif"
        frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    stats = compute_stats(samples_of(tmp_path, [path.name]), tmp_path)
    table = issue_table(stats, samples_of(tmp_path, [path.name]), Thresholds())
    issues = set(table["issue"])
    expected = {"unreadable": {"broken"}, "truncated": {"broken"}, "zero_bytes": {"broken"},
                "one_pixel": {"odd_size"}, "huge": {"odd_aspect_ratio"}, "animated": {"low_information"}}  # fmt: skip
    assert expected[bad] <= issues, (bad, stats.to_dict("records"))


def test_statistics_of_unchanged_files_come_from_the_cache(tmp_path: Path) -> None:
    for i in range(3):
        make_image(tmp_path / f"{i}.jpg", seed=i, size=(64, 48))
    cache = StatsCache(tmp_path / "cache" / "stats.npz")
    first, scored = sample_stats(samples_of(tmp_path, ["0.jpg", "1.jpg", "2.jpg"]), tmp_path, cache)
    assert scored == 3
    again, scored = sample_stats(samples_of(tmp_path, ["0.jpg", "1.jpg", "2.jpg"]), tmp_path, cache)
    assert scored == 0 and again.drop(columns="hash").equals(first.drop(columns="hash"))
    assert list(again["hash"]) == list(first["hash"])
    make_image(tmp_path / "1.jpg", seed=9, size=(64, 48))
    os.utime(tmp_path / "1.jpg", ns=(1, 1))
    _, scored = sample_stats(samples_of(tmp_path, ["0.jpg", "1.jpg", "2.jpg"]), tmp_path, cache)
    assert scored == 1


def test_a_statistics_cache_of_the_earlier_format_is_still_reused(tmp_path: Path) -> None:
    for i in range(3):
        make_image(tmp_path / f"{i}.jpg", seed=i, size=(64, 48))
    samples = samples_of(tmp_path, ["0.jpg", "1.jpg", "2.jpg"])
    first, _ = sample_stats(samples, tmp_path, StatsCache(tmp_path / "new.npz"))
    text = {c: first[c].to_numpy(dtype=np.str_) for c in ("source", "filename", "broken")}  # version 1: unicode
    numbers = {c: first[c].to_numpy() for c in ["size", "mtime_ns", *STATS]}
    hashes = np.frombuffer(b"".join(first["hash"]), dtype=np.uint8).reshape(-1, 8)
    np.savez_compressed(tmp_path / "old.npz", version=np.int64(1), hash=hashes, **text, **numbers)
    again, scored = sample_stats(samples, tmp_path, StatsCache(tmp_path / "old.npz"))
    assert scored == 0
    pd.testing.assert_frame_equal(again, first)
    with np.load(tmp_path / "old.npz") as data:  # rewritten in this version's format
        assert int(data["version"]) == 2 and data["source"].dtype == np.uint8


def test_many_files_are_scored_in_worker_processes_with_the_same_results(tmp_path: Path, monkeypatch) -> None:
    for i in range(5):
        make_image(tmp_path / f"{i}.jpg", seed=i, size=(64, 48))
    (tmp_path / "5.jpg").write_bytes(b"not a picture")
    make_video(tmp_path / "v.mp4", n_frames=4, size=(64, 48))
    images = samples_of(tmp_path, [f"{i}.jpg" for i in range(6)])
    frames = pd.DataFrame({"filename": ["v-0-mp4.png", "v-3-mp4.png"], "source": "v.mp4", "kind": "video",
                           "frame": [0, 3], "size": 1, "mtime_ns": 1})  # fmt: skip
    samples = pd.concat([images.assign(frame=0), frames], ignore_index=True)
    in_threads = compute_stats(samples, tmp_path, workers=1)
    monkeypatch.setattr(stats_module, "PROCESSES_FROM", 2)
    monkeypatch.setattr(stats_module, "CHUNK", 3)
    monkeypatch.setattr(stats_module, "usable_cores", lambda: 2)
    started = workers_module.multiprocessing.active_children()
    in_processes = compute_stats(samples, tmp_path)
    pd.testing.assert_frame_equal(in_processes, in_threads)
    assert in_processes["broken"].iloc[5] and (in_processes["broken"].drop(index=5) == "").all()
    assert workers_module.multiprocessing.active_children() == started  # the workers are gone
    monkeypatch.setattr(stats_module, "GROUP", 1)  # a video's frames measured one group at a time, joined in order
    pd.testing.assert_frame_equal(compute_stats(samples, tmp_path, workers=1), in_threads)


def test_statistics_fall_back_to_threads_when_worker_processes_cannot_start(tmp_path: Path, monkeypatch) -> None:
    for i in range(4):
        make_image(tmp_path / f"{i}.jpg", seed=i, size=(64, 48))
    samples = samples_of(tmp_path, [f"{i}.jpg" for i in range(4)])

    class Broken(workers_module.ProcessPoolExecutor):
        def map(self, *args, **kwargs):  # what a worker that dies while starting does to the caller
            raise workers_module.BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(stats_module, "PROCESSES_FROM", 2)
    monkeypatch.setattr(stats_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(workers_module, "ProcessPoolExecutor", Broken)
    pd.testing.assert_frame_equal(compute_stats(samples, tmp_path), compute_stats(samples, tmp_path, workers=1))


def test_frames_of_a_video_are_decoded_once_and_scored(tmp_path: Path) -> None:
    make_video(tmp_path / "v.mp4", n_frames=6, size=(64, 48))
    samples = pd.DataFrame({"filename": [f"v-{i}-mp4.png" for i in (0, 3, 5)], "source": "v.mp4", "kind": "video",
                            "frame": [0, 3, 5], "size": 1, "mtime_ns": 1})  # fmt: skip
    stats = compute_stats(samples, tmp_path)
    assert (stats["broken"] == "").all() and stats["width"].tolist() == [64.0] * 3
    missing = compute_stats(samples.assign(frame=[0, 3, 99]), tmp_path)
    assert missing["broken"].tolist()[:2] == ["", ""] and "fewer frames" in missing["broken"].iloc[2]


def test_visual_copies_group_without_a_model_and_random_vectors_never_make_one_group() -> None:
    rng = np.random.default_rng(0)
    n = 40
    values = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    values[7] = values[3]
    values[7, 0] ^= 0b101  # 2 bits off
    same_everything = np.ones((n, 16), np.float32) + 0.001 * rng.normal(size=(n, 16)).astype(np.float32)
    names = [f"{i}.jpg" for i in range(n)]
    hashes = Hashes(values, np.ones(n, bool), [""] * n, 4)
    found = find_duplicates(names, same_everything, names, None, hashes=hashes)
    assert found.table[["filenames", "kind"]].values.tolist() == [["3.jpg", "visual"], ["7.jpg", "visual"]]
    assert found.table["similarity"].tolist() == [1.0, 1 - 2 / 64]
    assert found.counts() == {"exact": 0, "near": 0, "visual": 1} and found.method.startswith("none")
    everything = find_duplicates(names, same_everything, names, 0.9, hashes=hashes)
    assert everything.groups == 1 and len(everything.table) == n  # what the asset avoids with random weights


def test_selection_leaves_out_excluded_samples_and_spreads_over_hashes() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 256, (30, 8), dtype=np.uint8)
    features = hash_features(values)
    assert features.shape == (30, 64) and set(np.unique(features)) == {-1.0, 1.0}
    assert (features == np.where(np.unpackbits(values, axis=1) == 1, 1.0, -1.0)).all()  # bit by bit, in order
    excluded = np.zeros(30, bool)
    excluded[[0, 1, 2]] = True
    group_of = np.full(30, -1)
    group_of[[3, 4]] = 0
    chosen = select(features, np.zeros(30, int), group_of, 20, "diverse", excluded, "samples with broken")
    assert len(chosen.rows) == 20 and not {0, 1, 2, 4} & set(chosen.rows.tolist())
    assert "3 samples with broken left out" in chosen.notes
    everything = select(features, np.zeros(30, int), group_of, 100, "diverse", excluded)
    assert len(everything.rows) == 26 and any("above the 26 candidates" in n for n in everything.notes)


def test_thresholds_out_of_range_are_one_line_errors() -> None:
    with pytest.raises(CurationError, match="dark must be in"):
        Thresholds(dark=2.0).check()
    with pytest.raises(CurationError, match="odd_aspect_ratio must be 1 or more"):
        Thresholds(odd_aspect_ratio=0.5).check()


def _images(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"filename": names, "source": names, "kind": "image"})


def test_real_photos_are_rarely_flagged_and_planted_blur_is(real_media: dict[str, Path], tmp_path: Path) -> None:
    jpegs = sorted(p for p in real_media["opencv-doc"].rglob("*.jpg"))[:40]
    assert jpegs, "the corpus has JPEG photos"
    stats = pd.DataFrame([image_stats(p) | {"broken": ""} for p in jpegs])
    found = issue_table(stats, _images([p.name for p in jpegs]), Thresholds())
    bad_light_or_blur = found[found["issue"].isin(["blurry", "dark", "light"])]
    assert bad_light_or_blur["filenames"].nunique() <= 0.1 * len(jpegs), bad_light_or_blur
    blurred = []
    for i, p in enumerate(jpegs[:10]):
        image = Image.open(p).convert("RGB")
        image.filter(ImageFilter.GaussianBlur(0.01 * max(image.size))).save(tmp_path / f"{i}.jpg", quality=92)
        blurred.append(image_stats(tmp_path / f"{i}.jpg") | {"broken": ""})
    flagged = issue_table(pd.DataFrame(blurred), _images([f"{i}.jpg" for i in range(10)]), Thresholds())
    assert (flagged["issue"] == "blurry").sum() >= 8, flagged


def _materialize(tmp_path: Path, selection: dict | None = None):
    from dagster import DagsterInstance, materialize

    from lightly_assets.definitions import resources
    from lightly_assets.defs.curation import duplicates
    from lightly_assets.defs.curation import selection as selection_asset
    from lightly_assets.defs.data_issues import data_issues
    from lightly_assets.defs.embedding import embeddings
    from lightly_assets.defs.indexing import file_index, frame_index
    from lightly_assets.defs.partitions import datasets_partitions
    from lightly_assets.defs.resources import StorageResource

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
    storage = StorageResource(data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out"))
    return materialize(
        [file_index, frame_index, embeddings, data_issues, duplicates, selection_asset],
        resources=resources() | {"storage": storage},
        partition_key="ds",
        instance=instance,
        run_config={"ops": {"selection": {"config": selection or {}}}},
        raise_on_error=False,
    )


@pytest.mark.e2e  # file_index .. selection through Dagster, embedding included (~15 s)
def test_the_asset_lists_bad_input_finds_copies_and_selects_what_was_asked(tmp_path: Path) -> None:
    from lightly_assets.defs.data_issues import SHEET_ISSUES
    from lightly_assets.defs.metadata import FACTS, INLINE_MARKDOWN_LIMIT

    data = tmp_path / "data" / "ds"
    for i in range(24):
        make_image(data / "good" / f"{i:02d}.jpg", seed=i, size=(96, 72))
    original = photo((320, 240))
    original.save(data / "good" / "photo.jpg")
    jpeg(original.resize((200, 150)), 70).save(data / "good" / "photo-smaller.jpg")
    make_video(data / "clips" / "v.mp4", n_frames=4, size=(64, 48))
    (data / "bad").mkdir()
    (data / "bad" / "junk.jpg").write_bytes(b"not a picture")
    (data / "bad" / "cut.jpg").write_bytes((data / "good" / "photo.jpg").read_bytes()[:2000])
    Image.new("RGB", (1, 1), (1, 2, 3)).save(data / "bad" / "dot.png")
    Image.new("RGB", (2000, 20), (40, 90, 200)).save(data / "bad" / "strip.png")
    result = _materialize(tmp_path, {"n_samples": 20})
    assert result.success
    out = tmp_path / "out" / "ds"
    issues = pd.read_csv(out / "data_issues.csv")
    found = {(f, i) for f, i in zip(issues["filenames"], issues["issue"], strict=True)}
    assert {("bad/junk.jpg", "broken"), ("bad/cut.jpg", "broken"), ("bad/dot.png", "odd_size")} <= found
    assert ("bad/strip.png", "odd_aspect_ratio") in found
    groups = pd.read_csv(out / "duplicates.csv")
    assert groups[["filenames", "kind"]].values.tolist() == [
        ["good/photo-smaller.jpg", "visual"],
        ["good/photo.jpg", "visual"],
    ]  # random weights: no near-duplicates, no group of everything
    selected = (out / "selection.txt").read_text().splitlines()
    assert len(selected) == 20 and not {"bad/junk.jpg", "bad/cut.jpg", "bad/dot.png"} & set(selected)
    assert not {"good/photo.jpg", "good/photo-smaller.jpg"} <= set(selected)
    [meta] = [m.metadata for m in result.asset_materializations_for_node("data_issues")]
    assert not set(meta) - set(FACTS) - {"dagster/column_schema"}
    assert meta["outlier"].value.startswith("skipped: weights are random")
    assert len(meta["issues_sheet"].value) < INLINE_MARKDOWN_LIMIT
    with Image.open(out / "data_issues_contact_sheet.png") as sheet:  # one row of worst samples per issue kind
        assert sheet.height == min(issues["issue"].nunique(), SHEET_ISSUES) * (THUMB + 14)
    [chosen] = [m.metadata for m in result.asset_materializations_for_node("selection")]
    assert chosen["diversity_from"].value.startswith("perceptual hashes")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["no_data_issues"].passed and "broken" in checks["no_data_issues"].description


@pytest.mark.e2e  # file_index .. selection through Dagster (~2 s after the one above, ~20 s alone)
def test_a_dataset_where_every_sample_has_an_issue_completes(tmp_path: Path) -> None:
    data = tmp_path / "data" / "ds"
    for i, shade in enumerate((0, 3, 250, 255)):
        make_image(data / f"{i}.png", size=(40, 30), fill=(shade, shade, shade))
    result = _materialize(tmp_path)
    assert result.success
    issues = pd.read_csv(tmp_path / "out" / "ds" / "data_issues.csv")
    assert issues["filenames"].nunique() == 4
    assert (tmp_path / "out" / "ds" / "selection.txt").read_text() == ""  # all low_information: none to select


def test_pairs_are_ordered_as_lexsort_orders_them() -> None:
    rng = np.random.default_rng(0)
    pairs = np.sort(rng.integers(0, 5_000, (20_000, 2)), axis=1)
    pairs = np.concatenate([pairs, pairs[:50]])  # repeated pairs keep their input order
    assert pair_order(pairs).tolist() == np.lexsort((pairs[:, 1], pairs[:, 0])).tolist()
    assert pair_order(np.zeros((0, 2), dtype=np.int64)).tolist() == []
    wide = np.sort(rng.integers(0, 200_000, (20_000, 2)), axis=1).astype(np.int32)  # i * n + j above 2**31
    assert pair_order(wide).tolist() == np.lexsort((wide[:, 1], wide[:, 0])).tolist()
