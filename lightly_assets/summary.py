"""What a terminal shows after a run: where things are, which weights, whether the checks passed, what was skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckSeverity, DagsterEvent, DagsterEventType

from lightly_assets.errors import first_line

SKIPPED_SHOWN = 20
# Errors whose message is the user's own text (a Failure's description, a blocking check's verdict): shown without
# their class; any other error keeps it (`OperationalError: ...` says which library failed).
USER_TEXT = ("Failure", "DagsterAssetCheckFailedError")
# How such an error is printed in a log line: `package.module.ClassName: text`, whatever the module path.
_USER_TEXT_HEAD = re.compile(rf"(?<![\w.])(?:[A-Za-z_]\w*\.)*(?:{'|'.join(USER_TEXT)}): ")


class Facts(dict):
    """What the summary reads of one step's output (see `summary_facts`)."""


class SummaryOutputs(dict):
    """Dagster's output capture for `summarise_run`: each output is kept as the few facts the summary prints.

    Dagster holds what it captures until the run ends: with whole outputs (the indexes, the vectors, the curation
    tables) a million-sample run held 1-2 GB more between its steps and peaked 0.85 GB higher."""

    def __setitem__(self, handle: Any, value: Any) -> None:
        main = handle.output_name == "result"  # not an asset check's output (None)
        super().__setitem__(handle, summary_facts(handle.step_key, value) if main else None)


def summary_facts(step: str, value: Any) -> Facts | None:
    """The facts of `step`'s output that the summary prints (None for a step it does not read)."""
    if isinstance(value, Facts):
        return value
    if step == "embeddings":
        return Facts(reused=value.reused)
    if step == "duplicates":
        return Facts((k, v) for k, v in value.items() if k != "table")
    if step == "selection":
        return Facts(path=value["path"], strategy=value["strategy"], samples=value["samples"],
                     selected=len(value["filenames"]))  # fmt: skip
    if step == "data_issues":
        return Facts(path=value["path"], counts=value["counts"], with_issues=value["table"]["filenames"].nunique())
    return None


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
    urls: list[str] = field(default_factory=list)
    weights: str | None = None
    knn: str | None = None
    duplicates: str | None = None
    selection: str | None = None
    data_issues: str | None = None
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
        if self.weights:
            lines.append(f"  weights: {self.weights}")
        if self.knn:
            lines.append(f"  kNN agreement with weak labels: {self.knn}")
        if self.csv:
            lines.append(f"  csv: {self.csv}")
        if self.duplicates:
            lines.append(f"  duplicates: {self.duplicates}")
        if self.selection:
            lines.append(f"  selection: {self.selection}")
        if self.data_issues:
            lines.append(f"  data issues: {self.data_issues}")
        if self.browse:
            lines.append(f"  browse: {self.browse}")
        lines += [f"  open: {url}" for url in self.urls]
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


def summarise_run(name: str, result) -> RunSummary:
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
        csv = _metadata(result, "embeddings_csv")
        upload = _metadata(result, "uploaded_dataset")
        summary.samples, summary.dimension, summary.csv = csv.get("rows"), csv.get("dimension"), csv.get("csv")
        summary.reused = _facts(result, "embeddings")["reused"]
        summary.browse = upload.get("browse")
        summary.urls = _urls(str(upload.get("open") or ""))
        summary.weights, summary.knn = _provenance(result)
        summary.duplicates, summary.selection = _curation(result)
        summary.data_issues = _data_issues(result)
    return summary


def _metadata(result, node: str) -> dict:
    """The plain values of the latest materialization of `node` in this run (empty when it did not run)."""
    found = result.asset_materializations_for_node(node)
    return {k: getattr(v, "value", v) for k, v in found[-1].metadata.items()} if found else {}


def _facts(result, node: str) -> Facts:
    """The summary's facts of `node`'s output, from a full capture (`execute_in_process`) or a `SummaryOutputs`."""
    facts = summary_facts(node, result.output_for_node(node))
    assert facts is not None, f"the summary reads nothing of {node}"
    return facts


def _urls(markdown: str) -> list[str]:
    """`name: url` for each `- [name](url)` line of the `open` metadata of `uploaded_dataset`."""
    return [f"{name}: {url}" for name, url in re.findall(r"^- \[(.*)\]\((\S+)\)$", markdown, re.MULTILINE)]


def _curation(result) -> tuple[str | None, str | None]:
    """The two curation lines: duplicate groups found, and the selection written."""
    found, chosen = _facts(result, "duplicates"), _facts(result, "selection")
    duplicates = (
        f"{found['groups']} groups found ({found['exact']} exact, {found.get('visual', 0)} visual, {found['near']} "
        f"near copies at cosine >= {found['similarity']}), {found['path']}"
        + (f"; WARNING: {found['warning']}" if found.get("warning") else "")
    )
    selection = f"{chosen['selected']} of {chosen['samples']} samples written ({chosen['strategy']}), {chosen['path']}"
    return duplicates, selection


def _data_issues(result) -> str | None:
    """One line of counts per issue found (None when data_issues did not run)."""
    if not result.asset_materializations_for_node("data_issues"):
        return None
    found = _facts(result, "data_issues")
    counts = ", ".join(f"{n} {issue}" for issue, n in found["counts"].items() if n) or "none found"
    return f"{found['with_issues']} samples with issues ({counts}), {found['path']}"


def failure_reason(event: DagsterEvent) -> str:
    """The line of a step failure that names its cause: a `dagster.Failure`'s description, else the first line
    of the error's own message.

    Read from the `STEP_FAILURE` event's public data (`user_failure_data`, and `error` with its `cls_name` and
    `cause`), never from Dagster's module paths. Libraries put their detail first and boilerplate last
    (SQLAlchemy's "Background on this error" link), so the last line of a message is rarely the reason.
    """
    data = event.step_failure_data if event.event_type == DagsterEventType.STEP_FAILURE else None
    if data is None:
        return "step failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return first_line(data.user_failure_data.description)
    info = data.error
    while info is not None and info.cls_name == "DagsterExecutionStepExecutionError" and info.cause is not None:
        info = info.cause  # Dagster's wrapper around an exception of the asset's code
    if info is None:
        return "step failed"
    text = _own_message(info.message, info.cls_name) if info.cls_name in USER_TEXT else info.message
    return first_line(text) or info.cls_name or "step failed"


def user_error_in_log(message: str) -> str | None:
    """A log line of a step failure whose error is the user's text, without the class and the stack trace;
    None for any other line (our bugs keep their traceback)."""
    head, _, _ = message.partition("\n\nStack Trace:")
    if not _USER_TEXT_HEAD.search(head):
        return None
    return _USER_TEXT_HEAD.sub("", head).rstrip()


def _own_message(message: str, cls_name: str) -> str:
    """The message without the `package.module.ClassName: ` that `traceback.format_exception_only` puts first."""
    head, sep, rest = message.partition(f"{cls_name}: ")
    if sep and (not head or head.endswith(".")) and not any(c.isspace() for c in head):
        return rest
    return message


def _skipped(result) -> list[tuple[str, str]]:
    """Everything left out of the CSV and the target, from the metadata of the steps that ran."""
    found: list[tuple[str, str]] = []
    for node in ("file_index", "frame_index", "embeddings"):
        try:
            materializations = result.asset_materializations_for_node(node)
        except Exception:  # noqa: BLE001 - a step that did not run has nothing to list
            continue
        for materialization in materializations:
            value = materialization.metadata.get("skipped")
            found += [(str(item["path"]), str(item["reason"])) for item in (value.value if value else [])]
    return found


def _provenance(result) -> tuple[str | None, str | None]:
    """Which weights embedded the dataset, and the quality figure, from the `embeddings` materialization."""
    found = result.asset_materializations_for_node("embeddings")
    if not found:
        return None, None
    meta = {k: getattr(v, "value", v) for k, v in found[-1].metadata.items()}
    weights = str(meta.get("weights"))
    if meta.get("weights_sha256"):
        weights += f", sha256 {str(meta['weights_sha256'])[:16]}"
    weights += f"; {meta.get('model')}, {meta.get('device')}, {meta.get('precision')}"
    if meta.get("preprocessing"):
        weights += f"; preprocessing: {meta.get('preprocessing')}"
    knn = meta.get("knn_agreement")
    if isinstance(knn, float):
        rnd, chance = meta.get("knn_agreement_random_network"), meta.get("knn_agreement_chance")
        rnd = f"random network {rnd:.3f}, " if isinstance(rnd, float) else ""
        knn = f"{knn:.3f} ({rnd}chance {chance:.3f}, {meta.get('knn_samples')} samples)"
    return weights, str(knn) if knn is not None else None


def _start(meta: dict) -> str:
    return str(meta.get("started_from"))


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


def summarise_training(name: str, result) -> TrainSummary:
    """The training run's checkpoint, cost and quality change, from the `embedding_model` materialization."""
    summary = TrainSummary(dataset=name, run_id=result.run_id, success=result.success)
    failures = result.get_step_failure_events()
    if failures:
        summary.error = failure_reason(failures[0])
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
    return summary
