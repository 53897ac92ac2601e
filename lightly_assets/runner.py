"""Running the main job (and training) for datasets on the current Dagster instance.

Several `lightly-assets run` processes may share one DAGSTER_HOME: the first use of a fresh SQLite instance is
serialised (Dagster creates its tables and alembic stamps without a lock, and two processes doing it at once
leave an instance that never opens again), a partition added by another process at the same moment is fine,
and a run whose process was killed is marked failed by the next CLI run on that host, which also frees the
concurrency-pool slot it held. Runs are runs of the code location (`launch.py`), so the UI lists them with its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    Field,
    JobDefinition,
    RunsFilter,
    colored_console_logger,
    logger,
)

from lightly_assets.definitions import ENVIRONMENT, run_defs
from lightly_assets.defs.jobs import embedding_model_job, lightly_assets_job
from lightly_assets.defs.partitions import DATASETS
from lightly_assets.defs.resources import StorageResource
from lightly_assets.launch import execute_in_location
from lightly_assets.locks import exclusive
from lightly_assets.sqlite_wal import keep_wal_open
from lightly_assets.summary import (
    RunSummary,
    SummaryOutputs,
    TrainSummary,
    summarise_run,
    summarise_training,
    user_error_in_log,
)

# Bookkeeping that lets a later CLI run fail a killed one's runs. Dagster's UI hides tags under `.dagster/`
# (`TagType.HIDDEN`), so these do not show on every run; the tags of earlier versions are still read.
PID_TAG = ".dagster/lightly_assets/pid"
HOST_TAG = ".dagster/lightly_assets/host"
LEGACY_TAGS = (("lightly_assets/pid", "lightly_assets/host"),)


class _OneLineUserErrors(logging.Filter):
    """User errors (a Dagster `Failure` raised by `user_errors`) and failed checks print one line, no stack trace.

    The event log keeps the full error; only the terminal copy is shortened. Our bugs keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        short = user_error_in_log(record.getMessage())
        if short is not None:
            record.msg, record.args = short, ()
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
    with exclusive(home / ".lightly-assets.lock"):
        yield


def open_instance() -> DagsterInstance:
    """The instance in DAGSTER_HOME, with its SQLite storages created by one process at a time."""
    keep_wal_open()
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return DagsterInstance.get()
    with _home_lock(Path(home)):
        instance = DagsterInstance.get()
        instance.get_dynamic_partitions(DATASETS)  # creates the event log's index tables
        instance.get_runs(limit=1)
    return instance


def add_partitions(instance: DagsterInstance, names: list[str]) -> None:
    """Add the datasets' partitions; another process adding the same one at the same moment is not an error."""
    missing = [n for n in names if not instance.has_dynamic_partition(DATASETS, n)]
    for name in missing:
        try:
            instance.add_dynamic_partitions(DATASETS, [name])
        except Exception:  # SQLite storage: a concurrent insert hits the unique constraint
            if not instance.has_dynamic_partition(DATASETS, name):
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
    failed = []
    for pid_tag, host_tag in ((PID_TAG, HOST_TAG), *LEGACY_TAGS):
        records = instance.get_run_records(
            RunsFilter(
                statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED],
                tags={host_tag: host},
            )
        )
        for record in records:
            run = record.dagster_run
            pid = run.tags.get(pid_tag, "")
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                instance.report_run_failed(run, f"the lightly-assets process {pid} ended without finishing this run")
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
                failed.append(run.run_id)
    return failed


def storage_config(**options: str | None) -> dict[str, Any]:
    """Run config of the `storage` resource: given options, else the bound environment variable, else the default.

    Run config replaces a resource's bound values as a whole (a field left out falls back to its default, not to
    its `EnvVar`), so fields without an option name their variable explicitly, in Dagster's `{"env": ...}` form.
    """
    config: dict[str, Any] = {f: {"env": v} for f, v in ENVIRONMENT["storage"].items() if os.environ.get(v)}
    config.update({f: v for f, v in options.items() if v})
    return config


def open_storage(config: dict[str, Any]) -> StorageResource:
    """The `storage` resource as this run config resolves it (the CLI lists datasets with it).

    Built directly, not with `build_resources`: that creates an ephemeral Dagster instance, ~0.5 s of start-up
    for two strings (an `{"env": NAME}` value is read from the environment, as Dagster would).
    """
    values = {f: os.environ[v["env"]] if isinstance(v, dict) else v for f, v in config.items()}
    return StorageResource(**values)


def _prepare(instance: DagsterInstance | None, names: list[str]) -> DagsterInstance:
    """The instance, ready for these datasets: runs of killed processes marked failed, partitions added."""
    instance = instance or open_instance()
    fail_orphaned_runs(instance)
    add_partitions(instance, names)
    return instance


def _run_config(storage: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "INFO"}}}, **extra}  # not every event
    if storage:
        config["resources"] = {"storage": {"config": storage}}
    return config


def _job(job_name: str) -> JobDefinition:
    """The definitions' job, built with the environment of now (once per command), logging to the terminal."""
    return run_defs().resolve_job_def(job_name).with_logger_defs({"console": cli_console_logger})


def _execute(job: JobDefinition, name: str, run_config: dict[str, Any], instance: DagsterInstance):
    """One in-process run of the code location, tagged with this process so a later CLI run can tell when it
    was killed."""
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    return execute_in_location(job, name, run_config, tags, instance, capture=SummaryOutputs())


def run_datasets(
    names: list[str], instance: DagsterInstance | None = None, storage: dict[str, Any] | None = None
) -> list[RunSummary]:
    """Run the chain for each dataset in turn, on the instance in DAGSTER_HOME.

    `storage` is the run config of the `storage` resource (see `storage_config`).
    """
    instance = _prepare(instance, names)
    run_config = _run_config(storage)
    job = _job(lightly_assets_job.name)
    return [summarise_run(name, _execute(job, name, run_config, instance)) for name in names]


def train_datasets(
    names: list[str], config: dict, instance: DagsterInstance | None = None, storage: dict[str, Any] | None = None
) -> list[TrainSummary]:
    """Index each dataset and train its `embedding_model` with `config` (EmbeddingModelConfig fields)."""
    instance = _prepare(instance, names)
    run_config = _run_config(storage, ops={"embedding_model": {"config": config}})
    job = _job(embedding_model_job.name)
    return [summarise_training(name, _execute(job, name, run_config, instance)) for name in names]
