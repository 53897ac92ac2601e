"""The dataset sensor on a real (temporary) instance: new, changed, removed, unstable, restart, bad names, and
datasets already materialized by someone else (its planning function: test_sensor_planning.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    Failure,
    SensorResult,
    build_sensor_context,
    job,
    op,
)

from lightly_assets.dataset.roots import find_datasets, fingerprint, key_problem
from lightly_assets.definitions import defs
from lightly_assets.defs.resources import StorageResource
from lightly_assets.defs.sensors import Seen, folder_sensor, materialized_fingerprint
from lightly_assets_tests.media import make_image

dataset_folders_sensor = folder_sensor()

# ------------------------------------------------------------------ the sensor on an instance


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data


def evaluate(instance: DagsterInstance, cursor: str | None, root: Path) -> SensorResult:
    """One evaluation with the storage resource pointing at `root` (as definitions.py binds it from the env)."""
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs(), resources={"storage": StorageResource(data_dir=str(root))}
    )
    return dataset_folders_sensor(context)


def apply(instance: DagsterInstance, result: SensorResult) -> SensorResult:
    """Apply the result's partition requests to the instance, as the daemon does."""
    for request in result.dynamic_partitions_requests or []:
        if type(request).__name__ == "AddDynamicPartitionsRequest":
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


@pytest.fixture
def tick(instance, root):
    def run(cursor: str | None, on: DagsterInstance | None = None) -> SensorResult:
        return apply(on or instance, evaluate(on or instance, cursor, root))

    return run


def partitions(instance: DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions("datasets"))


def requested(result: SensorResult) -> list[str]:
    return sorted(r.partition_key for r in result.run_requests or [])


def test_new_folder_is_added_then_run_once_stable(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.jpg")
    first = tick(None)
    assert partitions(instance) == ["cats"]
    assert requested(first) == []
    assert (
        "first seen: cats" in first.skip_reason.skip_message and "still copying" not in first.skip_reason.skip_message
    )
    second = tick(first.cursor)
    assert requested(second) == ["cats"]
    assert second.run_requests[0].run_key == f"cats:{fingerprint(root / 'cats')}:1"
    third = tick(second.cursor)
    assert requested(third) == []


def _settled(tick, root: Path) -> str:
    result = tick(tick(None).cursor)
    assert requested(result) == sorted(p.name for p in root.iterdir())
    return result.cursor


def test_added_and_changed_files_trigger_a_new_run(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.jpg")
    cursor = _settled(tick, root)
    make_image(root / "cats" / "b.jpg", seed=3)
    r1 = tick(cursor)
    assert requested(r1) == []  # changed since last tick: wait one more
    r2 = tick(r1.cursor)
    assert requested(r2) == ["cats"]
    path = root / "cats" / "a.jpg"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    r3 = tick(tick(r2.cursor).cursor)
    assert requested(r3) == ["cats"]
    assert r3.run_requests[0].run_key != r2.run_requests[0].run_key


def test_removed_file_and_removed_folder(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.jpg")
    make_image(root / "cats" / "b.jpg", seed=1)
    make_image(root / "dogs" / "a.jpg")
    cursor = _settled(tick, root)
    (root / "cats" / "b.jpg").unlink()
    shutil.rmtree(root / "dogs")
    r1 = tick(cursor)
    assert partitions(instance) == ["cats"]
    assert "'dogs' is gone" in r1.skip_reason.skip_message
    r2 = tick(r1.cursor)
    assert requested(r2) == ["cats"]


def test_unstable_folder_waits_until_unchanged(instance, root: Path, tick) -> None:
    cursor = None
    for i in range(3):  # a copy in progress: one more file every tick
        make_image(root / "big" / f"{i}.jpg", seed=i)
        result = tick(cursor)
        assert requested(result) == []
        cursor = result.cursor
    assert requested(tick(cursor)) == ["big"]


def test_cursor_survives_a_restart(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.jpg")
    cursor = _settled(tick, root)
    with DagsterInstance.ephemeral() as fresh:  # a new process: only the stored cursor carries over
        fresh.add_dynamic_partitions("datasets", ["cats"])
        assert requested(tick(cursor, on=fresh)) == []


def test_folder_names_that_cannot_be_partition_keys_are_reported(instance, root: Path, tick) -> None:
    make_image(root / "a...b" / "x.jpg")
    make_image(root / "fine" / "x.jpg")
    result = tick(None)
    assert partitions(instance) == ["fine"]
    assert "'a...b'" in result.skip_reason.skip_message
    assert key_problem("tab\tname") and key_problem("ok name") is None
    assert "a...b" in find_datasets(root).invalid


def test_missing_data_root_is_a_skip_not_a_crash(instance, tmp_path: Path) -> None:
    result = evaluate(instance, None, tmp_path / "nowhere")
    assert "data root does not exist" in result.skip_message


def test_a_folder_back_in_an_earlier_state_runs_again(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.jpg")
    cursor = _settled(tick, root)
    extra = make_image(root / "cats" / "b.jpg", seed=2)
    changed = tick(tick(cursor).cursor)
    extra.unlink()  # back to the first state: a new run key, or Dagster would drop the run as a duplicate
    back = tick(tick(changed.cursor).cursor)
    assert requested(back) == ["cats"]
    assert back.run_requests[0].run_key.endswith(":3")


def test_partitions_without_a_folder_are_deleted_even_if_never_seen(instance, root: Path, tick) -> None:
    instance.add_dynamic_partitions("datasets", ["added_by_cli"])
    make_image(root / "cats" / "a.jpg")
    result = tick(None)
    assert partitions(instance) == ["cats"]
    assert "'added_by_cli' is gone" in result.skip_reason.skip_message


def test_custom_embeddings_file_changes_the_fingerprint(root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    before = fingerprint(root / "cats")
    (root / "cats" / ".lightly").mkdir()
    (root / "cats" / ".lightly" / "custom_embeddings.csv").write_text("filenames,x\na.jpg,1\n")
    assert fingerprint(root / "cats") != before


# ------------------------------------------------------------------ materializations made elsewhere (CLI, UI)


def _materialize(instance: DagsterInstance, dataset: str, fp: str, last: bool = True) -> None:
    """What a complete run records: file_index with the folder's fingerprint, then the chain's last asset."""
    instance.report_runless_asset_event(
        AssetMaterialization("file_index", partition=dataset, metadata={"fingerprint": fp})
    )
    if last:
        instance.report_runless_asset_event(AssetMaterialization("uploaded_dataset", partition=dataset))


def test_dataset_materialized_with_the_current_files_is_not_run_again(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.jpg")
    _materialize(instance, "cats", fingerprint(root / "cats"))  # e.g. `lightly-assets run` before `dagster dev`
    first = tick(None)  # the sensor's first look: nothing is being copied, and nothing needs to run
    assert requested(first) == [] and first.skip_reason.skip_message == (
        "new dataset folder(s) cats: partitions added; already materialized with the current files: cats"
    )
    result = tick(first.cursor)
    assert requested(result) == []
    assert "unchanged since their last run: cats" in result.skip_reason.skip_message
    make_image(root / "dogs" / "a.jpg")
    _materialize(instance, "dogs", "an-older-fingerprint")
    result = tick(tick(result.cursor).cursor)
    assert requested(result) == ["dogs"]
    make_image(root / "cats" / "b.jpg", seed=1)  # a change afterwards runs as usual
    assert requested(tick(tick(result.cursor).cursor)) == ["cats"]


def test_a_chain_that_stopped_before_its_last_asset_is_not_complete(instance, root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    fp = fingerprint(root / "cats")
    assert materialized_fingerprint(instance, "cats") is None
    _materialize(instance, "cats", fp, last=False)
    assert materialized_fingerprint(instance, "cats") is None
    _materialize(instance, "cats", fp)
    assert materialized_fingerprint(instance, "cats") == fp
    _materialize(instance, "cats", "newer", last=False)  # a later run began and stopped: not complete
    assert materialized_fingerprint(instance, "cats") is None


def test_a_run_that_failed_after_the_last_asset_is_not_complete(instance, root: Path) -> None:
    @op
    def last_asset_then_fail(context):
        context.log_event(AssetMaterialization("uploaded_dataset", partition="cats"))
        raise Failure("a blocking check failed")

    @job
    def failing():
        last_asset_then_fail()

    _materialize(instance, "cats", "fp", last=False)
    assert not failing.execute_in_process(instance=instance, raise_on_error=False).success
    assert materialized_fingerprint(instance, "cats") is None


def test_cursor_is_small_and_reads_the_earlier_format() -> None:
    from lightly_assets.defs.sensors import _dump, _load

    state = {"cats": Seen("a" * 16, "a" * 16, 1), "dogs": Seen("b" * 16, None, 0), "owls": Seen("c" * 16, "d" * 16, 2)}
    cursor = _dump(state)
    assert cursor == f'{{"cats":"{"a" * 16} = 1","dogs":"{"b" * 16} - 0","owls":"{"c" * 16} {"d" * 16} 2"}}'
    assert _load(cursor) == state
    old = '{"cats": {"fingerprint": "f1", "requested": "f1", "runs": 3}}'
    assert _load(old) == {"cats": Seen("f1", "f1", 3)}


def test_every_tick_without_runs_says_why(instance, root: Path, tick) -> None:
    make_image(root / "cats" / "a.png")
    cursor = _settled(tick, root)
    quiet = tick(cursor)
    assert not quiet.run_requests and "unchanged since their last run: cats" in quiet.skip_reason.skip_message
