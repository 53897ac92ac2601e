"""The single Dagster `Definitions` of the project: the `defs/` folder, autoloaded, plus the resources.

Every asset, check, job and sensor lives in a module of `lightly_assets/defs/` (one per domain: indexing,
embedding, training, publishing, jobs) and is found there by `dg.load_from_defs_folder`, so
`dg scaffold defs ...` writes objects that load. What is bound here: the environment, into the resources, the
sensor's interval and the target's badges (the objects built here, since they are read from the environment).

`defs` is built lazily (`@dagster.definitions`): importing this module builds nothing and reads no environment;
Dagster (`dagster dev`, `dg`, a code server) calls `defs()` when it loads the code location and the CLI calls
`run_defs()` (the same objects, without the UI's component listing), so the environment of that moment is the one
bound.

Configuration has one precedence rule: run config > environment variable > the resource field's default.
`ENVIRONMENT` below is the one place where environment variables are bound to resource fields.
"""

import os
import warnings
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetSpec,
    ComponentTree,
    Definitions,
    EnvVar,
    PreviewWarning,
    SensorDefinition,
    definitions,
    load_from_defs_folder,
)

from lightly_assets.defs.io_manager import AtomicFilesystemIOManager
from lightly_assets.defs.publishing import target_kinds
from lightly_assets.defs.resources import (
    EmbeddingModelResource,
    PublishTargetResource,
    RayClusterResource,
    StorageResource,
)
from lightly_assets.defs.sensors import DEFAULT_INTERVAL_S, folder_sensor

# resource key -> {field: environment variable}. `TORCH_HOME`, `HF_HOME`, `LIGHTLY_STUDIO_MODEL_CACHE_DIR` and AWS's
# own variables (`AWS_*`: credentials, and the endpoint and region when ours are unset;
# `publish.bucket.target.S3_STORAGE_OPTIONS_ENV`) are read by torch, Hugging Face, LightlyStudio and the bucket
# target themselves, when they connect, like any secret.
ENVIRONMENT: dict[str, dict[str, str]] = {
    "storage": {"data_dir": "LIGHTLY_ASSETS_DATA_DIR", "output_dir": "LIGHTLY_ASSETS_OUTPUT_DIR"},
    "embedding_model": {
        "model": "LIGHTLY_ASSETS_MODEL",
        "checkpoint": "LIGHTLY_ASSETS_CHECKPOINT",
        "pretrained_url": "LIGHTLY_ASSETS_PRETRAINED_URL",
        "executor": "LIGHTLY_ASSETS_EXECUTOR",
        "engine_cache_dir": "LIGHTLY_ASSETS_ENGINE_CACHE",
    },
    "ray_cluster": {"address": "RAY_ADDRESS"},  # read by Ray itself too; bound here so the UI shows it
    "publish_target": {
        "target": "LIGHTLY_ASSETS_TARGET",
        "bucket_url": "LIGHTLY_ASSETS_BUCKET_URL",
        "s3_endpoint": "LIGHTLY_ASSETS_S3_ENDPOINT",
        "s3_region": "LIGHTLY_ASSETS_S3_REGION",
        "studio_db_file": "LIGHTLY_STUDIO_DB_FILE",
    },
}
# Not a resource field: the sensor's tick interval in seconds (`dagster dev` checks folders this often).
SENSOR_INTERVAL = "LIGHTLY_ASSETS_SENSOR_INTERVAL"
# Secrets: the field gets the variable's NAME (never its value) when the variable is set; the URL is read from it
# only when connecting, so it cannot reach run config, metadata or logs.
SECRET_NAMES: dict[str, dict[str, str]] = {"publish_target": {"studio_db_url_env": "LIGHTLY_STUDIO_DATABASE_URL"}}


def from_env(resource: str) -> dict[str, Any]:
    """`EnvVar`s for the fields whose variable is set when the definitions load; the others keep their default.

    Dagster fails a run whose resource names an unset `EnvVar` (an `EnvVar` has no default: dagster#16232),
    so an unset variable is left out rather than bound. Set values are still resolved by Dagster at launch and
    shown as environment-sourced in the UI; restart `dagster dev` after changing one.
    """
    bound: dict[str, Any] = {f: EnvVar(n) for f, n in ENVIRONMENT[resource].items() if os.environ.get(n)}
    return bound | {f: n for f, n in SECRET_NAMES.get(resource, {}).items() if os.environ.get(n)}


def resources() -> dict[str, Any]:
    """The resources, with the environment variables set now bound to their fields."""
    return {
        # Declared, so `execute_in_process` (the CLI) keeps values on disk like the daemon's runs do; atomic, so
        # several runs of one dataset at once never read each other's half-written values.
        "io_manager": AtomicFilesystemIOManager(),
        "storage": StorageResource(**from_env("storage")),
        "embedding_model": EmbeddingModelResource(**from_env("embedding_model")),
        "ray_cluster": RayClusterResource(**from_env("ray_cluster")),
        "publish_target": PublishTargetResource(**from_env("publish_target")),
    }


def sensor() -> SensorDefinition:
    """The folder sensor, ticking at the interval the environment sets."""
    return folder_sensor(int(os.environ.get(SENSOR_INTERVAL) or DEFAULT_INTERVAL_S))


def uploaded_dataset_kinds() -> set[str]:
    """The badges of `uploaded_dataset`: the target the environment configures (kinds are fixed when the
    definitions load)."""
    return target_kinds(
        os.environ.get(ENVIRONMENT["publish_target"]["target"]) or "studio",
        os.environ.get(ENVIRONMENT["publish_target"]["bucket_url"]),
        bool(os.environ.get(SECRET_NAMES["publish_target"]["studio_db_url_env"])),
    )


def _bound(found: Definitions) -> Definitions:
    """The defs folder's objects with the sensor and resources added and the target's badges set."""
    kinds = uploaded_dataset_kinds()

    def with_target_kinds(spec: AssetSpec) -> AssetSpec:
        return spec.replace_attributes(kinds=kinds) if spec.key == AssetKey("uploaded_dataset") else spec

    with warnings.catch_warnings():  # `map_asset_specs` is public; Dagster 1.13 implements it with a preview method
        warnings.simplefilter("ignore", PreviewWarning)
        return Definitions.merge(found, Definitions(sensors=[sensor()], resources=resources())).map_asset_specs(
            func=with_target_kinds
        )


@definitions
def defs() -> Definitions:
    """The definitions, with the environment of this moment bound."""
    return _bound(load_from_defs_folder(path_within_project=Path(__file__).parent))


def run_defs() -> Definitions:
    """The same definitions without the component-library listing Dagster adds for its UI: what a CLI run needs.

    The listing (every installed component type's JSON schema, found through entry points) is repository
    metadata only; building it is ~0.25 s of `lightly-assets run`'s start.
    """
    with warnings.catch_warnings():  # what `load_from_defs_folder` silences: its loaders are in preview
        warnings.simplefilter("ignore", PreviewWarning)
        tree = ComponentTree.for_project(path_within_project=Path(__file__).parent)
        found = tree.build_defs(tree.defs_module_path)
    return _bound(found)
