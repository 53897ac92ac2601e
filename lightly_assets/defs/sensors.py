"""The dataset sensor: new, changed and removed dataset folders become partitions and runs of the whole chain.

A folder runs once its fingerprint (names, sizes, modification times) is the same on two ticks in a row, so a
folder still being copied waits (a folder seen for the first time waits one tick too, unless the instance already
has it materialized with these very files, e.g. by `lightly-assets run` before `dagster dev` started).
Each fingerprint is requested at most once: run keys are
`<dataset>:<fingerprint>:<n>`, and a folder whose run failed runs again only when it changes (or a user asks).
Before requesting, the sensor reads the instance: a dataset whose latest complete materialization (by the CLI,
the UI or the sensor) recorded the folder's current fingerprint is not run again.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from lightly_assets.dataset.roots import fingerprint
from lightly_assets.dataset.scan import DatasetError
from lightly_assets.defs.common import latest_materialization
from lightly_assets.defs.jobs import lightly_assets_job
from lightly_assets.defs.metadata import FINGERPRINT
from lightly_assets.defs.partitions import DATASETS, datasets_partitions
from lightly_assets.defs.resources import StorageResource

FIRST_ASSET, LAST_ASSET = AssetKey("file_index"), AssetKey("uploaded_dataset")


@dataclass
class Seen:
    """What the sensor knows of one dataset folder between ticks."""

    fingerprint: str
    requested: str | None = None
    runs: int = 0  # part of the run key, so a folder that returns to an earlier state runs again


# The cursor, small enough to read in the UI's tick list: {"dataset": "<fingerprint> <requested> <runs>"}, where
# <requested> is `=` when the current fingerprint was requested, `-` when none was, else the one requested.
_SAME, _NONE = "=", "-"


def _load(cursor: str | None) -> dict[str, Seen]:
    if not cursor:
        return {}
    state: dict[str, Seen] = {}
    for name, value in json.loads(cursor).items():
        if isinstance(value, dict):  # the cursor of earlier versions: {"fingerprint": …, "requested": …, "runs": …}
            state[name] = Seen(**value)
            continue
        fp, requested, runs = value.split(" ")
        state[name] = Seen(fp, fp if requested == _SAME else None if requested == _NONE else requested, int(runs))
    return state


def _dump(state: dict[str, Seen]) -> str:
    def short(seen: Seen) -> str:
        requested = _SAME if seen.requested == seen.fingerprint else seen.requested or _NONE
        return f"{seen.fingerprint} {requested} {seen.runs}"

    return json.dumps({k: short(v) for k, v in sorted(state.items())}, separators=(",", ":"))


@dataclass
class Plan:
    """One tick's decisions, kept separate from Dagster types so it reads (and tests) as plain data."""

    state: dict[str, Seen]
    add: list[str]
    delete: list[str]
    run: dict[str, str]
    waiting: list[str]  # changed since the last tick
    notes: list[str]
    up_to_date: list[str]
    first_seen: list[str]  # new to the sensor: they run next tick if unchanged


def pending(state: Mapping[str, Seen], found: Mapping[str, str]) -> list[str]:
    """Datasets that would run this tick (stable and not yet requested) or are seen for the first time: the only
    ones worth asking the instance about."""
    return sorted(
        name
        for name, fp in found.items()
        if (prev := state.get(name)) is None or (prev.fingerprint == fp and prev.requested != fp)
    )


def plan_tick(
    state: Mapping[str, Seen],
    found: Mapping[str, str],
    known_partitions: set[str],
    invalid: frozenset[str] = frozenset(),
    materialized: Mapping[str, str | None] | None = None,
) -> Plan:
    """Decide from the previous state, this tick's fingerprints (`found`: name → fingerprint) and, per dataset,
    the fingerprint of its latest complete materialization on the instance (`materialized`)."""
    materialized = materialized or {}
    new_state: dict[str, Seen] = {}
    run: dict[str, str] = {}
    waiting: list[str] = []
    up_to_date: list[str] = []
    first_seen: list[str] = []
    for name, fp in found.items():
        prev = state.get(name)
        if prev is None and materialized.get(name) == fp:  # done before the sensor knew it (CLI, UI)
            new_state[name] = Seen(fp, fp, 0)
            up_to_date.append(name)
        elif prev is None:
            new_state[name] = Seen(fp, None, 0)
            first_seen.append(name)
        elif prev.fingerprint != fp:
            new_state[name] = Seen(fp, prev.requested, prev.runs)
            waiting.append(name)
        elif prev.requested == fp:
            new_state[name] = prev
        elif materialized.get(name) == fp:  # already done by the CLI, the UI or an earlier sensor
            new_state[name] = Seen(fp, fp, prev.runs)
            up_to_date.append(name)
        else:
            new_state[name] = Seen(fp, fp, prev.runs + 1)
            run[name] = f"{fp}:{prev.runs + 1}"
    removed = sorted(set(state) - set(found))
    gone = sorted(set(removed) | (known_partitions - set(found) - set(invalid)))
    notes = [
        f"dataset folder '{n}' is gone: its partition is deleted; earlier outputs and uploads are kept" for n in gone
    ]
    add = sorted(n for n in found if n not in known_partitions)
    delete = sorted(known_partitions - set(found) - set(invalid))  # also partitions the CLI added
    return Plan(new_state, add, delete, run, waiting, notes, sorted(up_to_date), first_seen)


def materialized_fingerprint(instance: DagsterInstance, dataset: str) -> str | None:
    """The fingerprint recorded by the dataset's latest `file_index`, if the chain's last asset materialized after
    it in a run that did not fail; None when the dataset has no such complete materialization."""
    first = latest_materialization(instance, FIRST_ASSET, dataset)
    last = latest_materialization(instance, LAST_ASSET, dataset)
    if first is None or last is None or last.storage_id < first.storage_id:
        return None
    run = instance.get_run_by_id(last.run_id)
    if run is not None and run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        return None  # e.g. a blocking check of the last asset failed
    materialization = first.asset_materialization
    value = materialization.metadata.get(FINGERPRINT) if materialization else None
    return str(value.value) if value is not None else None


DEFAULT_INTERVAL_S = 30


def skip_reason(plan: Plan, found: Mapping[str, str], bad: list[str], data_dir: str) -> str:
    """Why a tick requested no run, in the words the tick list shows: what it saw and what it waits for."""
    reasons = []
    if plan.add:
        reasons.append(f"new dataset folder(s) {', '.join(plan.add)}: partitions added")
    if plan.first_seen:
        reasons.append(f"first seen: {', '.join(plan.first_seen)} (runs on the next tick if its files stay the same)")
    if plan.waiting:
        reasons.append(
            f"{', '.join(plan.waiting)} changed since the last tick: waiting until unchanged (still copying?)"
        )
    if plan.up_to_date:
        reasons.append(f"already materialized with the current files: {', '.join(plan.up_to_date)}")
    unchanged = sorted(set(found) - set(plan.waiting) - set(plan.first_seen) - set(plan.up_to_date) - set(plan.run))
    if unchanged:
        reasons.append(f"unchanged since their last run: {', '.join(unchanged)}")
    if bad:
        reasons.append(f"folders that cannot be partition keys: {'; '.join(bad)}")
    reasons += plan.notes
    return "; ".join(reasons) or f"no dataset folder under {data_dir}"


def folder_sensor(interval_s: int = DEFAULT_INTERVAL_S) -> SensorDefinition:
    """The sensor, ticking every `interval_s` seconds: built by `definitions.py`, which reads the interval from
    the environment (LIGHTLY_ASSETS_SENSOR_INTERVAL), so it is not a module-level object of this folder."""
    return sensor(
        name="dataset_folders_sensor",
        job=lightly_assets_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Adds a partition per dataset folder under the data root and runs the chain when it changes.",
    )(dataset_folders)


def dataset_folders(context: SensorEvaluationContext, storage: StorageResource) -> SensorResult | SkipReason:
    """One tick: new, changed and removed folders under the data root become partitions and run requests."""
    try:
        data_root = storage.datasets()
    except DatasetError as exc:
        return SkipReason(str(exc))
    found = {name: fingerprint(path) for name, path in data_root.datasets.items()}
    known = set(context.instance.get_dynamic_partitions(DATASETS))
    state = _load(context.cursor)
    done = {name: materialized_fingerprint(context.instance, name) for name in pending(state, found)}
    plan = plan_tick(state, found, known, frozenset(data_root.invalid), done)
    bad = [f"'{n}': {why}" for n, why in data_root.invalid.items()]
    requests = [
        RunRequest(
            run_key=f"{name}:{key}", partition_key=name, tags={f"lightly_assets/{FINGERPRINT}": key.split(":")[0]}
        )
        for name, key in plan.run.items()
    ]
    partition_requests = []
    if plan.add:
        partition_requests.append(datasets_partitions.build_add_request(plan.add))
    if plan.delete:
        partition_requests.append(datasets_partitions.build_delete_request(plan.delete))
    # Said once per tick: a tick without runs says everything in its skip reason (the daemon prints it), a tick
    # with runs logs only what went wrong beside them.
    skip = SkipReason(skip_reason(plan, found, bad, storage.data_dir)) if not requests else None
    if skip is None:
        for line in plan.notes + [f"skipped folder {b}" for b in bad]:
            context.log.warning(line)
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=_dump(plan.state),
        skip_reason=skip,
    )
