"""Running the main job for datasets on the current Dagster instance, and summarising each run for a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field

from dagster import AssetCheckSeverity, DagsterInstance

from lightly_assets.definitions import defs
from lightly_assets.defs.jobs import lightly_assets_job
from lightly_assets.defs.partitions import datasets_partitions


@dataclass
class RunSummary:
    """What a user wants to read after a run: where things are and whether the checks passed."""

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
        if self.checks:
            lines.append("  checks: " + ", ".join(f"{k}={v}" for k, v in sorted(self.checks.items())))
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def run_datasets(names: list[str], instance: DagsterInstance | None = None) -> list[RunSummary]:
    """Add the partitions and run the chain for each dataset in turn, on the instance in DAGSTER_HOME."""
    instance = instance or DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    missing = [n for n in names if n not in known]
    if missing:
        instance.add_dynamic_partitions(datasets_partitions.name, missing)
    job = defs.resolve_job_def(lightly_assets_job.name)
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # progress and warnings, not every event
    return [
        _summarise(
            name,
            job.execute_in_process(run_config=quiet, instance=instance, partition_key=name, raise_on_error=False),
        )
        for name in names
    ]


def _summarise(name: str, result) -> RunSummary:
    summary = RunSummary(dataset=name, run_id=result.run_id, success=result.success)
    for evaluation in result.get_asset_check_evaluations():
        check = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
        summary.checks[check] = (
            "pass" if evaluation.passed else ("warn" if evaluation.severity == AssetCheckSeverity.WARN else "FAIL")
        )
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            summary.failed_blocking.append(check)
    for event in result.get_step_failure_events():
        info = event.step_failure_data.error
        summary.error = (info.message.strip().splitlines() or ["failed"])[-1] if info else "step failed"
    if result.success:
        csv = result.output_for_node("embeddings_csv")
        upload = result.output_for_node("uploaded_dataset")
        summary.samples, summary.dimension, summary.csv = csv["rows"], csv["dimension"], csv["path"]
        summary.reused = result.output_for_node("embeddings").reused
        summary.browse = upload.get("browse")
    return summary
