"""The dataset sensor: new, changed and removed dataset folders become partitions and runs of the whole chain.

A folder runs once its fingerprint (names, sizes, modification times) is the same on two ticks in a row, so a
folder still being copied waits. Run keys are `<dataset>:<fingerprint>`, so a repeated tick requests nothing new.
"""

import json
import os
from dataclasses import asdict, dataclass

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from lightly_assets.dataset.roots import data_dir, find_datasets, fingerprint
from lightly_assets.dataset.scan import DatasetError
from lightly_assets.defs.jobs import lightly_assets_job
from lightly_assets.defs.partitions import datasets_partitions


@dataclass
class Seen:
    """What the sensor knows of one dataset folder between ticks."""

    fingerprint: str
    requested: str | None = None
    runs: int = 0  # part of the run key, so a folder that returns to an earlier state runs again


def _load(cursor: str | None) -> dict[str, Seen]:
    return {k: Seen(**v) for k, v in json.loads(cursor).items()} if cursor else {}


def _dump(state: dict[str, Seen]) -> str:
    return json.dumps({k: asdict(v) for k, v in sorted(state.items())})


@dataclass
class Plan:
    """One tick's decisions, kept separate from Dagster types so it reads (and tests) as plain data."""

    state: dict[str, Seen]
    add: list[str]
    delete: list[str]
    run: dict[str, str]
    waiting: list[str]
    notes: list[str]


def plan_tick(
    state: dict[str, Seen], found: dict[str, str], known_partitions: set[str], invalid: frozenset[str] = frozenset()
) -> Plan:
    """Decide from the previous state and this tick's fingerprints (`found`: name → fingerprint)."""
    new_state: dict[str, Seen] = {}
    run: dict[str, str] = {}
    waiting: list[str] = []
    for name, fp in found.items():
        prev = state.get(name)
        if prev is None or prev.fingerprint != fp:
            new_state[name] = Seen(fp, prev.requested if prev else None, prev.runs if prev else 0)
            waiting.append(name)
        elif prev.requested != fp:
            new_state[name] = Seen(fp, fp, prev.runs + 1)
            run[name] = f"{fp}:{prev.runs + 1}"
        else:
            new_state[name] = prev
    removed = sorted(set(state) - set(found))
    gone = sorted(set(removed) | (known_partitions - set(found) - set(invalid)))
    notes = [
        f"dataset folder '{n}' is gone: its partition is deleted; earlier outputs and uploads are kept" for n in gone
    ]
    add = sorted(n for n in found if n not in known_partitions)
    delete = sorted(known_partitions - set(found) - set(invalid))  # also partitions the CLI added
    return Plan(new_state, add, delete, run, waiting, notes)


def _interval() -> int:
    return int(os.environ.get("LIGHTLY_ASSETS_SENSOR_INTERVAL", "30"))


@sensor(
    job=lightly_assets_job,
    minimum_interval_seconds=_interval(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition per dataset folder under the data root and runs the chain when it changes.",
)
def dataset_folders_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    root = data_dir()
    try:
        data_root = find_datasets(root)
    except DatasetError as exc:
        return SkipReason(str(exc))
    found = {name: fingerprint(path) for name, path in data_root.datasets.items()}
    known = set(context.instance.get_dynamic_partitions(datasets_partitions.name))
    plan = plan_tick(_load(context.cursor), found, known, frozenset(data_root.invalid))
    bad = [f"'{n}': {why}" for n, why in data_root.invalid.items()]
    for line in plan.notes + [f"skipped folder {b}" for b in bad]:
        context.log.warning(line)
    requests = [
        RunRequest(run_key=f"{name}:{key}", partition_key=name, tags={"lightly_assets/fingerprint": key.split(":")[0]})
        for name, key in plan.run.items()
    ]
    partition_requests = []
    if plan.add:
        partition_requests.append(datasets_partitions.build_add_request(plan.add))
    if plan.delete:
        partition_requests.append(datasets_partitions.build_delete_request(plan.delete))
    reasons = []
    if plan.waiting:
        reasons.append(f"waiting for {', '.join(plan.waiting)} to be unchanged for one more tick")
    if bad:
        reasons.append(f"folders that cannot be partition keys: {'; '.join(bad)}")
    reasons += plan.notes
    skip = SkipReason("; ".join(reasons) or "no new or changed dataset") if not requests else None
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=_dump(plan.state),
        skip_reason=skip,
    )
