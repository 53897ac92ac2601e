"""Running the main job for datasets on the current Dagster instance, and summarising each run for a terminal.

Several `lightly-assets run` processes may share one DAGSTER_HOME: the first use of a fresh SQLite instance is
serialised (Dagster creates its tables and alembic stamps without a lock, and two processes doing it at once
leave an instance that never opens again), a partition added by another process at the same moment is fine,
and a run whose process was killed is marked failed by the next CLI run on that host, which also frees the
concurrency-pool slot it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetCheckSeverity,
    DagsterInstance,
    DagsterRunStatus,
    Field,
    RunsFilter,
    colored_console_logger,
    logger,
)

from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.errors import first_line

PID_TAG = "lightly_assets/pid"
HOST_TAG = "lightly_assets/host"
_FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "
_CHECK_PREFIX = "dagster._core.errors.DagsterAssetCheckFailedError: "
SKIPPED_SHOWN = 20


@dataclass
class RunSummary:
    """What a user wants to read after a run: where things are, what was left out and whether the checks passed."""

    dataset: str
    run_id: str
    success: bool
    samples: int | None = None
    dimension: int | None = None
    reused: int | None = None
    csv: str | None = None
    browse: str | None = None
    checks: dict[str, str] = field(default_factory=dict)
    failed_blocking: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_blocking

    def render(self) -> str:
        status = "OK" if self.ok else "FAILED"
        lines = [f"[{status}] {self.dataset} (run {self.run_id})"]
        if self.samples is not None:
            lines.append(f"  samples: {self.samples}, dimension: {self.dimension}, reused from cache: {self.reused}")
        if self.csv:
            lines.append(f"  csv: {self.csv}")
        if self.browse:
            lines.append(f"  browse: {self.browse}")
        if self.skipped:
            lines.append(f"  skipped: {len(self.skipped)} (not in the CSV nor the target)")
            lines += [f"    {path}: {reason}" for path, reason in self.skipped[:SKIPPED_SHOWN]]
            if len(self.skipped) > SKIPPED_SHOWN:
                lines.append(f"    … and {len(self.skipped) - SKIPPED_SHOWN} more (see the run's metadata)")
        if self.checks:
            lines.append("  checks: " + ", ".join(f"{k}={v}" for k, v in sorted(self.checks.items())))
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


class _OneLineUserErrors(logging.Filter):
    """User errors (a Dagster `Failure` raised by `user_errors`) and failed checks print one line, no stack trace.

    The event log keeps the full error; only the terminal copy is shortened. Our bugs keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for prefix in (_FAILURE_PREFIX, _CHECK_PREFIX):
            if prefix in message:
                head, _, _ = message.partition("\n\nStack Trace:")
                record.msg, record.args = head.replace(prefix, "").rstrip(), ()
        return True


@logger(
    Field(
        {
            "log_level": Field(str, is_required=False, default_value="INFO"),
            "name": Field(str, is_required=False, default_value="dagster"),
        }
    ),
    description="Dagster's coloured console logger, with one-line user errors.",
)
def cli_console_logger(init_context) -> logging.Logger:
    log = colored_console_logger.logger_fn(init_context)
    log.addFilter(_OneLineUserErrors())
    return log


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """An exclusive lock on DAGSTER_HOME, held only while a CLI process opens the instance (cheap once it exists)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lightly-assets.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_instance() -> DagsterInstance:
    """The instance in DAGSTER_HOME, with its SQLite storages created by one process at a time."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return DagsterInstance.get()
    with _home_lock(Path(home)):
        instance = DagsterInstance.get()
        instance.get_dynamic_partitions(datasets_partitions.name)  # creates the event log's index tables
        instance.get_runs(limit=1)
    return instance


def add_partitions(instance: DagsterInstance, names: list[str]) -> None:
    """Add the datasets' partitions; another process adding the same one at the same moment is not an error."""
    missing = [n for n in names if not instance.has_dynamic_partition(datasets_partitions.name, n)]
    for name in missing:
        try:
            instance.add_dynamic_partitions(datasets_partitions.name, [name])
        except Exception:  # SQLite storage: a concurrent insert hits the unique constraint
            if not instance.has_dynamic_partition(datasets_partitions.name, name):
                raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Mark runs of this host whose CLI process is gone (killed) as failed, and free their pool slots.

    Without this a killed run stays STARTED forever in the UI and keeps its slot of the LightlyStudio pool.
    """
    host = socket.gethostname()
    records = instance.get_run_records(
        RunsFilter(
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED],
            tags={HOST_TAG: host},
        )
    )
    failed = []
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            instance.report_run_failed(run, f"the lightly-assets process {pid} ended without finishing this run")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            failed.append(run.run_id)
    return failed


def run_datasets(names: list[str], instance: DagsterInstance | None = None) -> list[RunSummary]:
    """Add the partitions and run the chain for each dataset in turn, on the instance in DAGSTER_HOME."""
    from lightly_assets.definitions import defs  # the assets and their imports: only when running
    from lightly_assets.defs.jobs import lightly_assets_job

    instance = instance or open_instance()
    fail_orphaned_runs(instance)
    add_partitions(instance, names)
    job = defs.resolve_job_def(lightly_assets_job.name).with_logger_defs({"console": cli_console_logger})
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # progress and warnings, not every event
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    return [
        _summarise(
            name,
            job.execute_in_process(
                run_config=quiet, instance=instance, partition_key=name, raise_on_error=False, tags=tags
            ),
        )
        for name in names
    ]


def failure_reason(event) -> str:
    """The line of a step failure that names its cause: a user error's own message, else the error's first line.

    Libraries put their detail first and boilerplate last (SQLAlchemy's "Background on this error" link), so
    the last line of a message is rarely the reason.
    """
    data = event.step_failure_data
    if data is None:
        return "step failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return first_line(data.user_failure_data.description)
    info = data.error
    while info is not None and info.cls_name == "DagsterExecutionStepExecutionError" and info.cause is not None:
        info = info.cause  # Dagster's wrapper around an exception of the asset's code
    if info is None:
        return "step failed"
    text = info.message.replace(_FAILURE_PREFIX, "").replace(_CHECK_PREFIX, "")
    return first_line(text) or info.cls_name or "step failed"


def _skipped(result) -> list[tuple[str, str]]:
    """Everything left out of the CSV and the target, from the metadata of the steps that ran."""
    found: list[tuple[str, str]] = []
    for node in ("file_index", "frame_index", "embeddings"):
        try:
            materializations = result.asset_materializations_for_node(node)
        except Exception:  # noqa: BLE001 - a step that did not run has nothing to list
            continue
        for materialization in materializations:
            value = materialization.metadata.get("skipped_list")
            found += [(str(item["path"]), str(item["reason"])) for item in (value.value if value else [])]
    return found


def _summarise(name: str, result) -> RunSummary:
    summary = RunSummary(dataset=name, run_id=result.run_id, success=result.success)
    for evaluation in result.get_asset_check_evaluations():
        check = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
        summary.checks[check] = (
            "pass" if evaluation.passed else ("warn" if evaluation.severity == AssetCheckSeverity.WARN else "FAIL")
        )
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            summary.failed_blocking.append(check)
            details = ", ".join(f"{k}={v.value}" for k, v in evaluation.metadata.items())
            summary.error = f"blocking check {check} failed" + (f" ({details})" if details else "")
    for event in result.get_step_failure_events():
        if summary.error is None:  # the first failure is the cause; later ones follow from it
            summary.error = failure_reason(event)
    summary.skipped = _skipped(result)
    if result.success:
        csv = result.output_for_node("embeddings_csv")
        upload = result.output_for_node("uploaded_dataset")
        summary.samples, summary.dimension, summary.csv = csv["rows"], csv["dimension"], csv["path"]
        summary.reused = result.output_for_node("embeddings").reused
        summary.browse = upload.get("browse")
    return summary
