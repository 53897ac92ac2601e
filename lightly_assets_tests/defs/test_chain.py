"""The five-asset chain stands alone on a fresh instance; curation hangs beside it and reaches the target after."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance

from lightly_assets.definitions import defs
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.summary import summarise_run
from lightly_assets_tests import EXAMPLE_DATA

CHAIN = ["file_index", "frame_index", "embeddings", "embeddings_csv", "uploaded_dataset"]
CURATION = ["data_issues", "duplicates", "selection", "published_curation"]


def materialize(instance: DagsterInstance, tmp_path: Path, assets: list[str]):
    """What a user does in the UI: pick assets of one dataset and materialize them, nothing else."""
    storage = {"data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "out")}
    job = defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config={"resources": {"storage": {"config": storage}}},
        instance=instance,
        partition_key="ds",
        asset_selection=[AssetKey(a) for a in assets],
        raise_on_error=False,
    )


def tag_names(db: Path) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {row[0] for row in con.sql("select name from tag").fetchall()}


def fresh(tmp_path: Path) -> DagsterInstance:
    data = tmp_path / "data" / "ds"
    shutil.copytree(EXAMPLE_DATA / "images_weak_labels" / "cats", data)
    shutil.copy(data / "chelsea-0.jpg", data / "chelsea-0-copy.jpg")
    (tmp_path / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
    return instance


def test_no_chain_asset_reads_curation() -> None:
    graph = defs().resolve_asset_graph()
    for key in CHAIN:
        upstream = {k.to_user_string() for k in graph.get(AssetKey(key)).parent_keys}
        assert not upstream & set(CURATION), f"{key} depends on {upstream & set(CURATION)}"
    parents = {k.to_user_string() for k in graph.get(AssetKey("published_curation")).parent_keys}
    assert {"uploaded_dataset", "duplicates", "selection", "data_issues"} <= parents


@pytest.mark.e2e  # the chain, then curation, on a fresh instance (~30 s)
def test_the_five_assets_publish_alone_then_curation_adds_its_tags(tmp_path: Path) -> None:
    instance = fresh(tmp_path)
    chain = materialize(instance, tmp_path, CHAIN)
    assert chain.success, summarise_run("ds", chain).error
    done = {event.asset_key.to_user_string() for event in chain.get_asset_materialization_events()}
    assert done == set(CHAIN)
    db = tmp_path / "out" / "lightly_studio.db"
    with duckdb.connect(str(db), read_only=True) as con:
        images = len(list((tmp_path / "data" / "ds").iterdir()))
        assert con.sql("select count(*) from image").fetchone() == (images,)
    assert not any(name.startswith(("duplicates-", "selection-")) for name in tag_names(db))

    curated = materialize(instance, tmp_path, CURATION)
    assert curated.success, summarise_run("ds", curated).error
    assert "duplicates-v1" in tag_names(db)  # the planted copy
    [meta] = [m.metadata for m in curated.asset_materializations_for_node("published_curation")]
    assert "duplicates: duplicates-v1" in meta["tags"].value

    again = materialize(instance, tmp_path, CHAIN)  # the chain again: the curation's tags stay
    assert again.success and "duplicates-v1" in tag_names(db)


def test_an_asset_whose_upstream_was_never_materialized_names_it(tmp_path: Path) -> None:
    instance = fresh(tmp_path)
    result = materialize(instance, tmp_path, ["uploaded_dataset"])
    assert not result.success
    error = summarise_run("ds", result).error
    assert error is not None and "materialize" in error and "first" in error
    assert any(name in error for name in ("embeddings", "frame_index", "file_index", "embeddings_csv")), error
    assert "\n" not in error and "Traceback" not in error
