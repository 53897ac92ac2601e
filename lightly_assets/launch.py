"""A CLI run that is a run of the code location: listed by Dagster's UI like the runs it launches itself.

`JobDefinition.execute_in_process` creates runs with no code-location origin, and Dagster's UI finds a job's runs
(its Runs tab, "Latest run", the Overview timeline) by the origin's `<repository>@<location>` label, so such runs
are listed under Runs only. Here the run is created on the instance with the origin the UI gives the job (the
location named in `pyproject.toml` / `workspace.yaml`), then executed in this process exactly as
`execute_in_process` does: in-process executor, outputs captured for the summary, the caller's loggers.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, ExecuteInProcessResult, JobDefinition
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import (
    ExecuteRunWithPlanIterable,
    create_execution_plan,
    job_execution_iterator,
)
from dagster._core.execution.context_creation_job import (
    PlanOrchestrationContextManager,
    orchestration_context_event_generator,
)
from dagster._core.execution.execute_in_process import merge_run_tags
from dagster._core.origin import JobPythonOrigin
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from lightly_assets import collector

# The code location as `dg dev` / `dagster dev` load it: [tool.dagster] and workspace.yaml name the same ones.
DEFINITIONS_MODULE = "lightly_assets.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
CODE_LOCATION = "lightly_assets"
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a `Definitions` object
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def remote_origin(job_name: str) -> RemoteJobOrigin:
    """The job's origin as the UI's workspace has it (matched by repository and location name)."""
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=str(PROJECT_ROOT)
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, CODE_LOCATION)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job_name)


def code_origin(job_name: str) -> JobPythonOrigin:
    """Where the job's code is, so the run can be reconstructed (re-executed) from what the instance stores."""
    repository = ReconstructableRepository.for_module(DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE, str(PROJECT_ROOT))
    return JobPythonOrigin(job_name, repository.get_python_origin())


def execute_in_location(
    job: JobDefinition,
    partition_key: str,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
    instance: DagsterInstance,
    capture: dict | None = None,
) -> ExecuteInProcessResult:
    """Run `job` for one partition in this process, as a run of the code location; never raises on failure.

    `job` is the definitions' job, possibly with other loggers; its name must be the definitions' job name. The
    steps' outputs go into `capture` (a plain dict keeps each whole to the end of the run).
    """
    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={})  # the in-process executor
    wrapped = InMemoryJob(ephemeral)
    run_tags = merge_run_tags(job, partition_key, tags, [], instance, run_config)
    plan = create_execution_plan(wrapped, run_config=run_config, instance_ref=instance.get_ref(), tags=run_tags)
    run = instance.create_run_for_job(
        job_def=ephemeral,
        execution_plan=plan,
        run_config=run_config,
        tags={**ephemeral.run_tags, **run_tags},
        remote_job_origin=remote_origin(job.name),
        job_code_origin=code_origin(job.name),
    )
    captured: dict = {} if capture is None else capture
    collector.resume()  # start-up ends here: the steps collect their cycles (see `lightly_assets.collector`)
    events = list(
        ExecuteRunWithPlanIterable(
            execution_plan=plan,
            iterator=job_execution_iterator,
            execution_context_manager=PlanOrchestrationContextManager(
                context_event_generator=orchestration_context_event_generator,
                job=wrapped,
                execution_plan=plan,
                dagster_run=run,
                instance=instance,
                run_config=run_config,
                executor_defs=None,
                output_capture=captured,
                raise_on_error=False,
            ),
        )
    )
    finished = instance.get_run_by_id(run.run_id) or run
    return ExecuteInProcessResult(job_def=ephemeral, event_list=events, dagster_run=finished, output_capture=captured)
