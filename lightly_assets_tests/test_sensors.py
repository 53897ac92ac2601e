"""The dataset sensor on a real (temporary) instance: new, changed, removed, unstable, restart, bad names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from lightly_assets.dataset.roots import find_datasets, fingerprint, key_problem
from lightly_assets.definitions import defs
from lightly_assets.defs.sensors import dataset_folders_sensor
from lightly_assets_tests.conftest import make_image


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("LIGHTLY_ASSETS_DATA_DIR", str(data))
    return data


def tick(instance: DagsterInstance, cursor: str | None) -> SensorResult:
    """One evaluation, applying its partition requests to the instance as the daemon does."""
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = dataset_folders_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        if type(request).__name__ == "AddDynamicPartitionsRequest":
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def partitions(instance: DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions("datasets"))


def requested(result: SensorResult) -> list[str]:
    return sorted(r.partition_key for r in result.run_requests or [])


def test_new_folder_is_added_then_run_once_stable(instance, root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    first = tick(instance, None)
    assert partitions(instance) == ["cats"]
    assert requested(first) == []
    assert "waiting for cats" in first.skip_reason.skip_message
    second = tick(instance, first.cursor)
    assert requested(second) == ["cats"]
    assert second.run_requests[0].run_key == f"cats:{fingerprint(root / 'cats')}:1"
    third = tick(instance, second.cursor)
    assert requested(third) == []


def _settled(instance, root: Path) -> str:
    result = tick(instance, tick(instance, None).cursor)
    assert requested(result) == sorted(p.name for p in root.iterdir())
    return result.cursor


def test_added_and_changed_files_trigger_a_new_run(instance, root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    cursor = _settled(instance, root)
    make_image(root / "cats" / "b.jpg", seed=3)
    r1 = tick(instance, cursor)
    assert requested(r1) == []  # changed since last tick: wait one more
    r2 = tick(instance, r1.cursor)
    assert requested(r2) == ["cats"]
    path = root / "cats" / "a.jpg"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    r3 = tick(instance, tick(instance, r2.cursor).cursor)
    assert requested(r3) == ["cats"]
    assert r3.run_requests[0].run_key != r2.run_requests[0].run_key


def test_removed_file_and_removed_folder(instance, root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    make_image(root / "cats" / "b.jpg", seed=1)
    make_image(root / "dogs" / "a.jpg")
    cursor = _settled(instance, root)
    (root / "cats" / "b.jpg").unlink()
    shutil.rmtree(root / "dogs")
    r1 = tick(instance, cursor)
    assert partitions(instance) == ["cats"]
    assert "'dogs' is gone" in r1.skip_reason.skip_message
    r2 = tick(instance, r1.cursor)
    assert requested(r2) == ["cats"]


def test_unstable_folder_waits_until_unchanged(instance, root: Path) -> None:
    cursor = None
    for i in range(3):  # a copy in progress: one more file every tick
        make_image(root / "big" / f"{i}.jpg", seed=i)
        result = tick(instance, cursor)
        assert requested(result) == []
        cursor = result.cursor
    assert requested(tick(instance, cursor)) == ["big"]


def test_cursor_survives_a_restart(instance, root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    cursor = _settled(instance, root)
    with DagsterInstance.ephemeral() as fresh:  # a new process: only the stored cursor carries over
        fresh.add_dynamic_partitions("datasets", ["cats"])
        assert requested(tick(fresh, cursor)) == []


def test_folder_names_that_cannot_be_partition_keys_are_reported(instance, root: Path) -> None:
    make_image(root / "a...b" / "x.jpg")
    make_image(root / "fine" / "x.jpg")
    result = tick(instance, None)
    assert partitions(instance) == ["fine"]
    assert "'a...b'" in result.skip_reason.skip_message
    assert key_problem("tab\tname") and key_problem("ok name") is None
    assert "a...b" in find_datasets(root).invalid


def test_missing_data_root_is_a_skip_not_a_crash(instance, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIGHTLY_ASSETS_DATA_DIR", str(tmp_path / "nowhere"))
    result = dataset_folders_sensor(build_sensor_context(instance=instance, definitions=defs))
    assert "data root does not exist" in str(getattr(result, "skip_message", result))


def test_a_folder_back_in_an_earlier_state_runs_again(instance, root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    cursor = _settled(instance, root)
    extra = make_image(root / "cats" / "b.jpg", seed=2)
    changed = tick(instance, tick(instance, cursor).cursor)
    extra.unlink()  # back to the first state: a new run key, or Dagster would drop the run as a duplicate
    back = tick(instance, tick(instance, changed.cursor).cursor)
    assert requested(back) == ["cats"]
    assert back.run_requests[0].run_key.endswith(":3")


def test_partitions_without_a_folder_are_deleted_even_if_never_seen(instance, root: Path) -> None:
    instance.add_dynamic_partitions("datasets", ["added_by_cli"])
    make_image(root / "cats" / "a.jpg")
    result = tick(instance, None)
    assert partitions(instance) == ["cats"]
    assert "'added_by_cli' is gone" in result.skip_reason.skip_message


def test_custom_embeddings_file_changes_the_fingerprint(root: Path) -> None:
    make_image(root / "cats" / "a.jpg")
    before = fingerprint(root / "cats")
    (root / "cats" / ".lightly").mkdir()
    (root / "cats" / ".lightly" / "custom_embeddings.csv").write_text("filenames,x\na.jpg,1\n")
    assert fingerprint(root / "cats") != before
