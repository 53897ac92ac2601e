from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lightly_assets import collector
from lightly_assets.__main__ import main  # the console script's entry: it imports the CLI after its pause
from lightly_assets.launch import execute_in_location


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Each test leaves the collector as pytest had it: on, nothing frozen."""
    yield
    collector.resume()
    gc.unfreeze()
    gc.enable()


def test_pause_stops_collecting_and_resume_freezes_what_start_up_made() -> None:
    collector.pause()
    assert not gc.isenabled()
    kept = [object() for _ in range(10)]
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() >= len(kept)


def test_resume_leaves_a_callers_own_setting_alone() -> None:
    gc.disable()
    collector.pause()  # already off: not ours to turn back on
    collector.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0
    gc.enable()
    collector.resume()  # no pause before: nothing frozen
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_run_executes_with_the_collector_on() -> None:
    seen: list[tuple[bool, int]] = []

    @dg.op
    def look() -> None:
        seen.append((gc.isenabled(), gc.get_freeze_count()))

    partitions = dg.StaticPartitionsDefinition(["a"])

    @dg.job(partitions_def=partitions)
    def probe() -> None:
        look()

    collector.pause()  # as `lightly-assets` does before it imports Dagster
    with dg.instance_for_test() as instance:
        result = execute_in_location(probe, "a", {}, {}, instance)
    assert result.success and seen[0][0] and seen[0][1] > 0


def test_the_command_leaves_the_collector_on_when_it_returns(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    assert main(["list", "--data-dir", str(tmp_path)]) == 0
    assert gc.isenabled() and gc.get_freeze_count() > 0
