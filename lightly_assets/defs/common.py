"""What every dataset asset shares: the partition, the group, the owners, and how user errors reach Dagster."""

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from dagster import AssetsDefinition, BetaWarning, Failure, asset, with_source_code_references

from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.errors import LightlyAssetsError

GROUP = "lightly"
OWNERS = ["team:lightly-assets"]
TRAINING_GROUP = "training"  # not part of the main job: trained only on request


def dataset_asset(**spec: Any) -> Callable[[Callable], AssetsDefinition]:
    """`@asset` with what every asset here shares: one partition per dataset, the main group, our owners, and a
    link from the UI to its source (`dagster/code_references`)."""
    decorate = asset(**{"partitions_def": datasets_partitions, "group_name": GROUP, "owners": OWNERS, **spec})

    def with_source(fn: Callable) -> AssetsDefinition:
        with warnings.catch_warnings():  # code references are a beta feature
            warnings.simplefilter("ignore", BetaWarning)
            (linked,) = with_source_code_references([decorate(fn)])
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
