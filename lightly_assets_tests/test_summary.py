"""The one-line summaries of `lightly-assets run`: read from Dagster's public event data, shown without tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, Failure, asset, materialize

from lightly_assets.summary import RunSummary, SummaryOutputs, failure_reason, summarise_run, user_error_in_log


def _reason(target, **kwargs) -> str:
    result = materialize([target], raise_on_error=False, **kwargs)
    (event,) = result.get_step_failure_events()
    return failure_reason(event)


def test_a_failure_shows_the_first_line_of_its_description() -> None:
    @asset
    def user_error() -> None:
        raise Failure(description="/data/x: no usable image or video file\nmore detail")

    assert _reason(user_error) == "/data/x: no usable image or video file"


def test_a_library_error_shows_its_first_line_not_the_background_link(tmp_path: Path) -> None:
    """A SQLAlchemy error ends with a "Background on this error" link; the summary shows its first line."""
    from sqlalchemy import create_engine

    @asset
    def unreachable() -> None:
        create_engine(f"sqlite:///{tmp_path}/missing/folder/x.db").connect()

    reason = _reason(unreachable)
    assert "unable to open database file" in reason and "Background" not in reason and "\n" not in reason, reason
    assert reason.startswith("sqlalchemy.exc.OperationalError: "), reason  # which library failed stays said


def test_a_failure_raised_from_another_error_is_shown_without_dagsters_class_path() -> None:
    @asset
    def wrapped() -> None:
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise Failure(description=f"/out/e.csv: {exc.strerror}") from exc

    assert _reason(wrapped) == "/out/e.csv: No space left on device"


def test_a_failed_blocking_check_is_named_with_its_metadata() -> None:
    @asset(check_specs=[AssetCheckSpec("columns", asset="table", blocking=True)])
    def table():
        from dagster import Output

        yield Output(1)
        yield AssetCheckResult(check_name="columns", passed=False, metadata={"missing": "labels"})

    @asset(deps=[table])
    def after() -> None:
        pass

    result = materialize([table, after], raise_on_error=False)
    summary = summarise_run("ds", result)
    assert not summary.ok and summary.failed_blocking == ["table.columns"]
    assert summary.error == "blocking check table.columns failed (missing=labels)"
    assert summary.checks == {"table.columns": "FAIL"}
    (event,) = result.get_step_failure_events()
    assert failure_reason(event).startswith("1 blocking asset check failed"), failure_reason(event)


def test_render_lists_what_was_skipped_and_the_error() -> None:
    skipped = [(f"f{i}.png", "unreadable") for i in range(25)]
    text = RunSummary("ds", "r1", False, checks={"a.b": "pass"}, skipped=skipped, error="boom").render()
    assert text.splitlines()[0] == "[FAILED] ds (run r1)"
    assert "  skipped: 25 (not in the CSV nor the target)" in text and "    f19.png: unreadable" in text
    assert "f20.png" not in text and "… and 5 more" in text
    assert "  checks: a.b=pass" in text and text.endswith("  error: boom")
    assert RunSummary("ds", "r2", True).render() == "[OK] ds (run r2)"


def test_a_user_error_in_the_console_log_is_one_line_without_dagsters_class_path() -> None:
    logged = (
        'Execution of step "file_index" failed.\n\ndagster._core.definitions.events.Failure: /d: no usable file\n\n'
        "Stack Trace:\n  File ..."
    )
    assert user_error_in_log(logged) == 'Execution of step "file_index" failed.\n\n/d: no usable file'
    moved = "Step failed.\n\ndagster.somewhere_else.DagsterAssetCheckFailedError: 1 blocking asset check failed"
    assert user_error_in_log(moved) == "Step failed.\n\n1 blocking asset check failed"
    assert user_error_in_log("Step failed.\n\nKeyError: 'x'\n\nStack Trace:\n ...") is None  # a bug keeps its trace
    assert user_error_in_log("NoFailure: x") is None


class Handle(NamedTuple):  # the two fields of Dagster's StepOutputHandle that the capture reads
    step_key: str
    output_name: str = "result"


def test_the_runs_capture_keeps_the_printed_facts_not_the_outputs() -> None:
    table = pd.DataFrame({"filenames": ["a", "a", "b"], "issue": ["dark", "blurry", "dark"], "score": 1.0})
    counts = {"dark": 2, "blurry": 1}
    capture = SummaryOutputs()
    capture[Handle("data_issues")] = {"path": "i.csv", "table": table, "stats": table, "counts": counts}
    capture[Handle("selection")] = {"path": "s.txt", "filenames": ["a", "b"], "strategy": "diverse", "samples": 3}
    capture[Handle("duplicates")] = {"path": "d.csv", "table": table, "groups": 1, "exact": 1}
    capture[Handle("frame_index")] = table
    capture[Handle("selection", "selection_no_duplicates_selected")] = None  # an asset check's output
    assert capture[Handle("data_issues")] == {"path": "i.csv", "counts": counts, "with_issues": 2}
    assert capture[Handle("selection")] == {"path": "s.txt", "strategy": "diverse", "samples": 3, "selected": 2}
    assert capture[Handle("duplicates")] == {"path": "d.csv", "groups": 1, "exact": 1}
    assert capture[Handle("frame_index")] is None
    kept = [v for facts in capture.values() if facts for v in facts.values()]
    assert not any(isinstance(v, pd.DataFrame | np.ndarray | list) for v in kept)
