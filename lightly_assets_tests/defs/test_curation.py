"""The curation assets in the main job: planted duplicates found, a selection without them, tags in LightlyStudio."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import DagsterInstance

from lightly_assets.definitions import defs
from lightly_assets.defs.metadata import FACTS, INLINE_MARKDOWN_LIMIT
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.publish.studio import images as studio_images
from lightly_assets.publish.studio import tags as studio_tags
from lightly_assets.summary import summarise_run
from lightly_assets_tests import EXAMPLE_DATA
from lightly_assets_tests.media import make_video, still_then_moving


def run(instance: DagsterInstance, tmp_path: Path, duplicates: dict, selection: dict, target: dict | None = None):
    storage = {"data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "out")}
    config = {
        "ops": {"duplicates": {"config": duplicates}, "selection": {"config": selection}},
        "resources": {"storage": {"config": storage}, **({"publish_target": {"config": target}} if target else {})},
    }
    job = defs().resolve_job_def("lightly_assets_job")
    return job.execute_in_process(run_config=config, instance=instance, partition_key="ds", raise_on_error=False)


def tags(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql(
            "select t.name, count(*) from tag t join sampletaglinktable l on l.tag_id = t.tag_id group by 1"
        ).fetchall()
    return {name: n for name, n in rows}


@pytest.mark.e2e  # the whole chain, four times (~50 s)
def test_duplicates_and_selection_in_the_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data" / "ds"
    shutil.copytree(EXAMPLE_DATA / "images_weak_labels" / "cats", data / "cats")
    shutil.copy(data / "cats" / "chelsea-0.jpg", data / "cats" / "copy-of-chelsea-0.jpg")
    make_video(data / "clips" / "still.mp4", n_frames=8, frames=still_then_moving(5))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])

    every = {"n_samples": 100, "exclude_issues": []}  # the clip's two-tone frames are low_information
    result = run(instance, tmp_path, {"similarity": 1.0}, every)
    assert result.success
    out = tmp_path / "out" / "ds"
    table = pd.read_csv(out / "duplicates.csv")
    assert list(table.columns) == ["filenames", "group", "kind", "similarity"]
    groups = table.groupby("group")["filenames"].apply(list).tolist()
    assert ["cats/chelsea-0.jpg", "cats/copy-of-chelsea-0.jpg"] in groups  # the same file content
    frames = [g for g in groups if g[0].startswith("clips/")]
    assert frames == [[f"clips/still-{i}-mp4.png" for i in range(5)]]  # the static scene, frame by frame
    assert set(table["kind"]) == {"exact"}
    selected = (out / "selection.txt").read_text().splitlines()
    assert len(selected) == 5 + 8 - 1 - 4  # 5 images and 8 frames, less one copy and four still frames
    assert "cats/copy-of-chelsea-0.jpg" not in selected and "clips/still-0-mp4.png" in selected
    order = {name: i for i, name in enumerate(result.output_for_node("frame_index")["filename"])}
    assert [order[n] for n in selected] == sorted(order[n] for n in selected)  # frame_index order
    summary = summarise_run("ds", result).render()
    assert "duplicates: 2 groups found (5 exact, 0 visual, 0 near copies at cosine >= 1.0)" in summary
    assert "selection: 8 of 13 samples written (diverse)" in summary
    assert "data issues: 8 samples with issues (" in summary and "8 low_information" in summary
    issues = pd.read_csv(out / "data_issues.csv")
    assert set(issues.loc[issues["issue"] == "low_information", "filenames"]) == {
        f"clips/still-{i}-mp4.png" for i in range(8)
    }
    [meta] = [m.metadata for m in result.asset_materializations_for_node("duplicates")]
    assert meta["contact_sheet_full"].value.startswith("![ds: the 2 largest of 2 duplicate groups](data:image/png;")
    assert len(meta["contact_sheet"].value) < INLINE_MARKDOWN_LIMIT  # the thumbnail shows inline in Dagster's UI
    assert not set(meta) - set(FACTS) - {"dagster/column_schema"}  # every row of metadata is described
    assert meta["search"].value.startswith("none")  # random weights: no near-duplicates searched
    assert meta["searched_samples"].value == meta["samples"].value == 13  # a first run: all, for visual copies
    [chosen] = [m.metadata for m in result.asset_materializations_for_node("selection")]
    assert not set(chosen) - set(FACTS)
    per_label = chosen["selected_per_label"].value.records
    assert sum(r.data["selected"] for r in per_label) == len(selected)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_duplicates"] is False and checks["no_duplicates_selected"] is True
    assert checks["similarities_meaningful"] is False  # the tests' weights are random
    db = tmp_path / "out" / "lightly_studio.db"
    assert {k: tags(db).get(k) for k in ("duplicates-v1", "selection-diverse-v1", "issue-low_information-v1")} == {
        "duplicates-v1": 7,
        "selection-diverse-v1": 8,
        "issue-low_information-v1": 8,
    }

    monkeypatch.setattr(studio_images, "_SCAN_ABOVE", 0)  # the tags' members found by one scan, as at 100,000
    again = run(instance, tmp_path, {"similarity": 1.0}, every)  # unchanged: nothing decoded again, same tags
    [meta] = [m.metadata for m in again.asset_materializations_for_node("data_issues")]
    assert meta["scored_samples"].value == 0 and meta["reused_stats"].value == 13
    assert not {"duplicates-v2", "selection-diverse-v2", "issue-low_information-v2"} & set(tags(db))

    shutil.copy(data / "cats" / "chelsea-1.jpg", data / "cats" / "copy-of-chelsea-1.jpg")
    monkeypatch.setattr(studio_tags, "id_table", lambda session, ids: contextlib.nullcontext(None))  # as on PostgreSQL
    grown = run(instance, tmp_path, {"similarity": 1.0}, every)  # a new pair: the latest version grows
    [meta] = [m.metadata for m in grown.asset_materializations_for_node("published_curation")]
    assert tags(db)["duplicates-v1"] == 9 and "duplicates-v2" not in tags(db)  # the new pair joined the tag
    assert "duplicates: duplicates-v1 (+2 members)" in meta["tags"].value

    smaller = run(instance, tmp_path, {"similarity": 1.0}, {"n_samples": 3, "exclude_issues": []})  # a new tag
    assert smaller.success and tags(db)["selection-diverse-v2"] == 3 and tags(db)["selection-diverse-v1"] == 8

    for bad, message in [
        (({"similarity": 1.5}, {}), "similarity must be in (0, 1]"),
        (({}, {"n_samples": -1}), "n_samples must be 0 or more"),
    ]:
        failed = run(instance, tmp_path, *bad)
        assert not failed.success
        assert message in summarise_run("ds", failed).error


@pytest.mark.e2e  # the whole chain once, into a bucket datasource (~20 s)
def test_the_bucket_target_gets_both_files_under_dot_lightly(tmp_path: Path) -> None:
    data = tmp_path / "data" / "ds"
    shutil.copytree(EXAMPLE_DATA / "images_weak_labels" / "cats", data)
    shutil.copy(data / "chelsea-1.jpg", data / "chelsea-1-copy.jpg")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
    bucket = tmp_path / "bucket"
    target = {"target": "bucket", "bucket_url": f"file://{bucket}"}
    result = run(instance, tmp_path, {"similarity": 1.0}, {"proportion": 0.5}, target)
    assert result.success
    out, published = tmp_path / "out" / "ds", bucket / "ds" / ".lightly"
    assert (published / "duplicates.csv").read_bytes() == (out / "duplicates.csv").read_bytes()
    assert (published / "selection.txt").read_bytes() == (out / "selection.txt").read_bytes()
    assert (published / "data_issues.csv").read_bytes() == (out / "data_issues.csv").read_bytes()
    assert len((out / "selection.txt").read_text().splitlines()) == 2  # half of 5, rounded down
    assert pd.read_csv(out / "duplicates.csv")["filenames"].tolist() == ["chelsea-1-copy.jpg", "chelsea-1.jpg"]


@pytest.mark.e2e  # the whole chain once on one image (~20 s)
def test_a_dataset_of_one_sample_gives_empty_outputs(tmp_path: Path) -> None:
    data = tmp_path / "data" / "ds"
    data.mkdir(parents=True)
    shutil.copy(EXAMPLE_DATA / "images_weak_labels" / "cats" / "chelsea-0.jpg", data / "only.jpg")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
    result = run(instance, tmp_path, {}, {})
    assert result.success, summarise_run("ds", result).error
    out = tmp_path / "out" / "ds"
    assert (out / "duplicates.csv").read_text() == "filenames,group,kind,similarity\n"
    assert (out / "selection.txt").read_text() == "only.jpg\n"  # a tenth of one sample: never 0 of some
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_duplicates"] and checks["no_duplicates_selected"]
    summary = summarise_run("ds", result).render()
    assert "duplicates: 0 groups found" in summary and "selection: 1 of 1 samples written" in summary
    assert "data issues: 0 samples with issues (none found)" in summary
