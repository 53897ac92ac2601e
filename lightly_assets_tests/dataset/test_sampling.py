"""Frame subsampling: `frame_stride` / `target_fps` on frame_index, the names and timestamps of kept frames, and
the same frames in the CSV, the checks and LightlyStudio."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from lightly.utils.io import save_embeddings

from lightly_assets.dataset.samples import build_sample_index
from lightly_assets.dataset.sampling import FrameSampling, SamplingError
from lightly_assets.dataset.scan import scan_dataset
from lightly_assets.defs.checks import samples_match_files
from lightly_assets.publish.studio import StudioTarget, count_in_studio, upload_dataset
from lightly_assets_tests.media import make_image, make_video

pytestmark = pytest.mark.lightly_studio  # LightlyStudio's own sampling is the reference


def test_stride_keeps_every_nth_frame() -> None:
    assert FrameSampling(frame_stride=4).kept(10, 30.0) == [0, 4, 8]
    assert FrameSampling().kept(3, None) == [0, 1, 2]


@pytest.mark.parametrize("fps", [30.0, 29.97002997002997, 25.0, 23.976023976023978, 12.5, 7.0])
@pytest.mark.parametrize("target", [1.0, 2.5, 5.0, 10.0, 24.0, 60.0])
def test_target_fps_keeps_the_frames_lightly_studio_keeps(fps: float, target: float) -> None:
    from lightly_studio.core.video.add_videos import _should_keep_frame

    theirs = [i for i in range(3000) if _should_keep_frame(i, target, fps)]
    assert FrameSampling(target_fps=target).kept(3000, fps) == theirs


def test_unknown_rate_keeps_every_frame_for_target_fps() -> None:
    assert FrameSampling(target_fps=2).kept(5, None) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"frame_stride": 0}, "frame_stride must be at least 1"),
        ({"target_fps": 0}, "target_fps must be greater"),
        ({"frame_stride": 2, "target_fps": 5}, "not both"),
    ],
)
def test_bad_settings_say_which(settings: dict, message: str) -> None:
    with pytest.raises(SamplingError, match=message):
        FrameSampling(**settings)


def test_kept_frames_keep_original_numbers_padded_to_the_full_count_and_their_timestamps(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    make_video(folder / "clip.mp4", n_frames=125)
    make_image(folder / "photo.png")
    files = scan_dataset(folder).files
    full = build_sample_index(files, folder).samples
    index = build_sample_index(files, folder, sampling=FrameSampling(frame_stride=60))
    samples = index.samples
    assert samples["filename"].tolist() == ["clip-000-mp4.png", "clip-060-mp4.png", "clip-120-mp4.png", "photo.png"]
    assert samples["frame"].tolist()[:3] == [0, 60, 120]
    by_name = full.set_index("filename")
    for column in ("pts", "time_s"):
        assert samples[column].tolist()[:3] == by_name.loc[samples["filename"][:3], column].tolist()
    assert index.kept == {"clip.mp4": [0, 60, 120]}
    assert samples_match_files(files, samples, index.skipped, index.kept).passed
    assert not samples_match_files(files, full.iloc[[0, 1, 2, 125]], [], index.kept).passed


def _csv(index: pd.DataFrame, path: Path) -> np.ndarray:
    vectors = np.random.default_rng(0).normal(size=(len(index), 8)).astype(np.float32)
    save_embeddings(str(path), vectors, index["label"].tolist(), index["filename"].tolist())
    return vectors


def _published_frames(db: Path) -> list[int]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return sorted(n for (n,) in con.execute("select frame_number from video_frame").fetchall())


def test_lightly_studio_holds_exactly_the_kept_frames_and_reloads_when_sampling_changes(tmp_path: Path) -> None:
    folder, db, csv = tmp_path / "clips", tmp_path / "s.db", tmp_path / "clips.csv"
    make_video(folder / "clip.mp4", n_frames=25)
    files = scan_dataset(folder).files
    target = StudioTarget(db_file=db, dataset_name="clips")
    for sampling, frames in ((FrameSampling(frame_stride=10), [0, 10, 20]), (FrameSampling(target_fps=2.5), None)):
        index = build_sample_index(files, folder, sampling=sampling).samples
        _csv(index, csv)
        result = upload_dataset(target, folder, index, csv)
        kept = frames or FrameSampling(target_fps=2.5).kept(25, 10.0)
        assert _published_frames(db) == kept == index["frame"].tolist()
        assert (result.samples, result.embeddings, result.unmatched) == (len(kept), len(kept), 0)
        assert count_in_studio(target, "clips") == (len(kept), len(kept))
    with av.open(str(folder / "clip.mp4")) as container:
        assert float(container.streams.video[0].average_rate) == 10.0
