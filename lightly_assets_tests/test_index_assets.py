"""file_index and frame_index materialized through Dagster, with a real instance, on the shipped example data."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from dagster import DagsterInstance, materialize

from lightly_assets.defs.indexing import file_index, frame_index
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.defs.resources import StorageResource
from lightly_assets_tests.conftest import EXAMPLE_DATA


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    with DagsterInstance.local_temp(str(home)) as inst:
        inst.add_dynamic_partitions(datasets_partitions.name, ["images_flat", "images_weak_labels", "videos"])
        yield inst


def _materialize(instance, name: str, tmp_path: Path, frame_config: dict | None = None):
    storage = StorageResource(data_dir=str(EXAMPLE_DATA), output_dir=str(tmp_path / "out"))
    run_config = {"ops": {"frame_index": {"config": frame_config}}} if frame_config else None
    result = materialize(
        [file_index, frame_index],
        instance=instance,
        partition_key=name,
        resources={"storage": storage},
        run_config=run_config,
    )
    assert result.success
    return result


def test_flat_images(instance, tmp_path: Path) -> None:
    result = _materialize(instance, "images_flat", tmp_path)
    files = result.output_for_node("file_index")
    samples = result.output_for_node("frame_index")
    assert files["filename"].tolist() == sorted(p.name for p in (EXAMPLE_DATA / "images_flat").glob("*.*g"))
    assert samples["filename"].tolist() == files["filename"].tolist()
    assert set(samples["label"]) == {0} and samples["frame"].isna().all()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"no_skipped_files": True, "samples_match_files": True, "all_videos_indexed": True}


def test_weak_label_folders_with_nested_folder(instance, tmp_path: Path) -> None:
    samples = _materialize(instance, "images_weak_labels", tmp_path).output_for_node("frame_index")
    by_label = samples.groupby("label_name")["label"].first().to_dict()
    assert by_label == {"cats": 0, "space": 1, "textures": 2}
    assert "space/deep_field/hubble-0.jpg" in samples["filename"].tolist()


def test_videos_expand_to_every_frame_with_lightly_names(instance, tmp_path: Path) -> None:
    result = _materialize(instance, "videos", tmp_path)
    files = result.output_for_node("file_index")
    samples = result.output_for_node("frame_index")
    assert files[["filename", "label"]].values.tolist() == [
        ["my_video_1.mp4", 0], ["my_video_2.mov", 1], ["my_video_3.avi", 2],
    ]  # fmt: skip
    for video in files["filename"]:
        frames = samples[samples["source"] == video]
        assert len(frames) == _decoded_frames(EXAMPLE_DATA / "videos" / video)
    assert samples["filename"].iloc[7] == "my_video_1-07-mp4.png"
    assert samples["time_s"].notna().all() and samples["pts"].notna().all()
    materialization = result.asset_materializations_for_node("frame_index")[0]
    frames = materialization.metadata["frames_per_video"].value  # a table the UI shows, not JSON
    assert [(r.data["video"], r.data["frames"]) for r in frames.records] == [
        ("my_video_1.mp4", 40),
        ("my_video_2.mov", 30),
        ("my_video_3.avi", 24),
    ]
    per_kind = materialization.metadata["per_kind"].value
    assert [c.name for c in per_kind.schema.columns] == ["kind", "samples"]
    assert [(r.data["kind"], r.data["samples"]) for r in per_kind.records] == [("video", 94)]
    files_per_label = result.asset_materializations_for_node("file_index")[0].metadata["per_label"].value
    assert [r.data["files"] for r in files_per_label.records] == [1, 1, 1]


def test_dataset_without_usable_files_fails_with_its_path(instance, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "empty").mkdir(parents=True)
    (data / "empty" / "notes.txt").write_text("nothing to see")
    instance.add_dynamic_partitions(datasets_partitions.name, ["empty"])
    result = materialize(
        [file_index], instance=instance, partition_key="empty", raise_on_error=False,
        resources={"storage": StorageResource(data_dir=str(data), output_dir=str(tmp_path / "out"))},
    )  # fmt: skip
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert (
        "empty: no usable image or video file (notes.txt: unsupported file type)"
        in failure.user_failure_data.description
    )


def test_frame_stride_through_dagster_config(instance, tmp_path: Path) -> None:
    """Run config `frame_stride` subsamples; the check compares the rows with the frames the sampling keeps."""
    result = _materialize(instance, "videos", tmp_path, {"frame_stride": 7})
    samples = result.output_for_node("frame_index")
    for source, frames in samples.groupby("source")["frame"]:
        assert frames.tolist() == list(range(0, _decoded_frames(EXAMPLE_DATA / "videos" / source), 7))
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["samples_match_files"]
    metadata = result.asset_materializations_for_node("frame_index")[0].metadata
    assert metadata["frame_sampling"].value == "frame_stride=7"
