"""Running the main job for datasets on the current Dagster instance, and summarising each run for a terminal."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckSeverity, DagsterInstance, build_resources

from lightly_assets.definitions import ENVIRONMENT, defs
from lightly_assets.defs.jobs import embedding_model_job, lightly_assets_job
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.defs.resources import StorageResource


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
    weights: str | None = None
    knn: str | None = None
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
        if self.weights:
            lines.append(f"  weights: {self.weights}")
        if self.knn:
            lines.append(f"  kNN agreement with weak labels: {self.knn}")
        if self.csv:
            lines.append(f"  csv: {self.csv}")
        if self.browse:
            lines.append(f"  browse: {self.browse}")
        if self.checks:
            lines.append("  checks: " + ", ".join(f"{k}={v}" for k, v in sorted(self.checks.items())))
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def storage_config(**options: str | None) -> dict[str, Any]:
    """Run config of the `storage` resource: given options, else the bound environment variable, else the default.

    Run config replaces a resource's bound values as a whole (a field left out falls back to its default, not to
    its `EnvVar`), so fields without an option name their variable explicitly, in Dagster's `{"env": ...}` form.
    """
    config: dict[str, Any] = {f: {"env": v} for f, v in ENVIRONMENT["storage"].items() if os.environ.get(v)}
    config.update({f: v for f, v in options.items() if v})
    return config


def open_storage(config: dict[str, Any]) -> StorageResource:
    """The `storage` resource of the definitions, resolved with this run config (the CLI lists datasets with it)."""
    with build_resources({"storage": defs.resources["storage"]}, resource_config={"storage": {"config": config}}) as r:
        return r.storage


def run_datasets(
    names: list[str], instance: DagsterInstance | None = None, storage: dict[str, Any] | None = None
) -> list[RunSummary]:
    """Add the partitions and run the chain for each dataset in turn, on the instance in DAGSTER_HOME.

    `storage` is the run config of the `storage` resource (see `storage_config`).
    """
    instance = instance or DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    missing = [n for n in names if n not in known]
    if missing:
        instance.add_dynamic_partitions(datasets_partitions.name, missing)
    job = defs.resolve_job_def(lightly_assets_job.name)
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # not every event
    if storage:
        run_config["resources"] = {"storage": {"config": storage}}
    return [
        _summarise(
            name,
            job.execute_in_process(run_config=run_config, instance=instance, partition_key=name, raise_on_error=False),
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
        summary.weights, summary.knn = _provenance(result)
    return summary


def _provenance(result) -> tuple[str | None, str | None]:
    """Which weights embedded the dataset, and the quality figure, from the `embeddings` materialization."""
    found = result.asset_materializations_for_node("embeddings")
    if not found:
        return None, None
    meta = {k: getattr(v, "value", v) for k, v in found[-1].metadata.items()}
    source = meta.get("weights")
    where = meta.get("weights_url") if source == "pretrained" else meta.get("weights_file")
    sha = str(meta.get("weights_sha256", ""))[:16]
    weights = f"{source}, {where}, sha256 {sha}" if source != "random" else f"RANDOM ({meta.get('weights_note')})"
    weights += f"; {meta.get('model')}, {meta.get('device')}, {meta.get('precision')}"
    knn = meta.get("knn_agreement")
    if isinstance(knn, float):
        rnd, chance = meta.get("knn_agreement_random_network"), meta.get("knn_agreement_chance")
        rnd = f"{rnd:.3f}" if isinstance(rnd, float) else rnd
        knn = f"{knn:.3f} (random network {rnd}, chance {chance:.3f}, {meta.get('knn_samples')} samples)"
    return weights, str(knn) if knn is not None else None


def _start(meta: dict) -> str:
    if meta.get("start_weights") == "random":
        return f"random initialisation ({meta.get('start_weights_note')})"
    return f"{meta.get('start_weights')} weights {meta.get('start_weights_file')}"


@dataclass
class TrainSummary:
    """A training run, for a terminal: where the checkpoint is, what it cost and what it changed."""

    dataset: str
    run_id: str
    success: bool
    lines: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.success

    def render(self) -> str:
        head = f"[{'OK' if self.ok else 'FAILED'}] train {self.dataset} (run {self.run_id})"
        tail = [f"  error: {self.error}"] if self.error else []
        return "\n".join([head, *(f"  {line}" for line in self.lines), *tail])


def train_datasets(
    names: list[str], config: dict, instance: DagsterInstance | None = None, storage: dict[str, Any] | None = None
) -> list[TrainSummary]:
    """Index each dataset and train its `embedding_model` with `config` (EmbeddingModelConfig fields)."""
    instance = instance or DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    missing = [n for n in names if n not in known]
    if missing:
        instance.add_dynamic_partitions(datasets_partitions.name, missing)
    job = defs.resolve_job_def(embedding_model_job.name)
    run_config = {
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
        "ops": {"embedding_model": {"config": config}},
    }
    if storage:
        run_config["resources"] = {"storage": {"config": storage}}
    summaries = []
    for name in names:
        result = job.execute_in_process(
            run_config=run_config, instance=instance, partition_key=name, raise_on_error=False
        )
        summary = TrainSummary(dataset=name, run_id=result.run_id, success=result.success)
        for event in result.get_step_failure_events():
            info = event.step_failure_data.error
            summary.error = (info.message.strip().splitlines() or ["failed"])[-1] if info else "step failed"
        found = result.asset_materializations_for_node("embedding_model") if result.success else []
        if found:
            meta = {k: getattr(v, "value", v) for k, v in found[-1].metadata.items()}
            summary.lines = [
                f"checkpoint: {meta['checkpoint']} (sha256 {str(meta['sha256'])[:16]})",
                f"epochs: {meta['epochs']} ({meta['stopped_by']}), samples: {meta['samples']}, "
                f"{meta['seconds']} s on {meta['device']} {meta['precision']}, {meta['images_per_second']} img/s",
                f"loss per epoch: {meta['losses']}",
                f"started from: {_start(meta)}",
                f"kNN agreement before: {meta['knn_before']}",
                f"kNN agreement after:  {meta['knn_after']}",
                f"next: lightly-assets run {name}  (re-embeds with the trained weights)",
            ]
        summaries.append(summary)
    return summaries
