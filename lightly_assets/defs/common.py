"""What every dataset asset shares: the partition, the group, the owners, and how user errors reach Dagster."""

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    BetaWarning,
    DagsterInstance,
    EventLogRecord,
    Failure,
    asset,
    with_source_code_references,
)

from lightly_assets.defs.metadata import facts_markdown
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.errors import LightlyAssetsError

GROUP = "lightly"
OWNERS = ["team:lightly-assets"]
TRAINING_GROUP = "training"  # not part of the main job: trained only on request


def dataset_asset(facts: Sequence[str] = (), **spec: Any) -> Callable[[Callable], AssetsDefinition]:
    """`@asset` with what every asset here shares: one partition per dataset, the main group, our owners, and a
    link from the UI to its source (`dagster/code_references`).

    `facts` are the metadata keys the asset writes: their meanings (metadata.FACTS) end its description, which the
    Overview tab shows, since Dagster has no description per metadata entry.
    """

    def with_source(fn: Callable) -> AssetsDefinition:
        text = spec.get("description") or inspect.cleandoc(fn.__doc__ or "")
        described = {"description": f"{text}\n\n{facts_markdown(facts)}"} if facts else {}
        shared = {"partitions_def": datasets_partitions, "group_name": GROUP, "owners": OWNERS}
        decorate = asset(**{**shared, **spec, **described})
        with warnings.catch_warnings():  # code references are a beta feature
            warnings.simplefilter("ignore", BetaWarning)
            (linked,) = with_source_code_references([decorate(fn)])
        assert isinstance(linked, AssetsDefinition)
        return linked

    return with_source


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Our own errors (bad input, bad checkpoint, unreachable target) become a short Dagster Failure."""
    try:
        yield
    except LightlyAssetsError as exc:
        raise Failure(description=str(exc)) from None
    except OSError as exc:  # unwritable output folder, disk full: name the path and the reason
        where = exc.filename or "an output file"
        raise Failure(description=f"{where}: {exc.strerror or exc}") from None


def latest_materialization(instance: DagsterInstance, asset: str | AssetKey, partition: str) -> EventLogRecord | None:
    """The latest materialization of `asset` for one dataset (from this run or an earlier one), or None."""
    key = asset if isinstance(asset, AssetKey) else AssetKey(asset)
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), 1)
    return records.records[0] if records.records else None
