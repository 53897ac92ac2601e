"""The single Dagster `Definitions` of the project: read it as the table of contents.

Configuration has one precedence rule: run config > environment variable > the resource field's default.
`ENVIRONMENT` below is the one place where environment variables are bound to resource fields.
"""

import os
import warnings

from dagster import BetaWarning, Definitions, EnvVar, with_source_code_references

from lightly_assets.defs.embedding import embeddings
from lightly_assets.defs.indexing import file_index, frame_index
from lightly_assets.defs.io_manager import AtomicFilesystemIOManager
from lightly_assets.defs.jobs import embedding_model_job, lightly_assets_job
from lightly_assets.defs.publishing import embeddings_csv, uploaded_dataset
from lightly_assets.defs.resources import EmbeddingModelResource, PublishTargetResource, StorageResource
from lightly_assets.defs.sensors import dataset_folders_sensor
from lightly_assets.defs.training import embedding_model

# resource key -> {field: environment variable}. `TORCH_HOME`, `RAY_ADDRESS` and the bucket credentials are read
# by torch, Ray and fsspec themselves.
ENVIRONMENT: dict[str, dict[str, str]] = {
    "storage": {"data_dir": "LIGHTLY_ASSETS_DATA_DIR", "output_dir": "LIGHTLY_ASSETS_OUTPUT_DIR"},
    "embedding_model": {
        "checkpoint": "LIGHTLY_ASSETS_CHECKPOINT",
        "pretrained_url": "LIGHTLY_ASSETS_PRETRAINED_URL",
        "executor": "LIGHTLY_ASSETS_EXECUTOR",
        "engine_cache_dir": "LIGHTLY_ASSETS_ENGINE_CACHE",
    },
    "publish_target": {
        "target": "LIGHTLY_ASSETS_TARGET",
        "bucket_url": "LIGHTLY_ASSETS_BUCKET_URL",
        "studio_db_file": "LIGHTLY_STUDIO_DB_FILE",
    },
}
# Secrets: the field gets the variable's NAME (never its value) when the variable is set; the URL is read from it
# only when connecting, so it cannot reach run config, metadata or logs.
SECRET_NAMES: dict[str, dict[str, str]] = {"publish_target": {"studio_db_url_env": "LIGHTLY_STUDIO_DATABASE_URL"}}


def from_env(resource: str) -> dict[str, EnvVar | str]:
    """`EnvVar`s for the fields whose variable is set when the definitions load; the others keep their default.

    Dagster fails a run whose resource names an unset `EnvVar` (an `EnvVar` has no default: dagster#16232),
    so an unset variable is left out rather than bound. Set values are still resolved by Dagster at launch and
    shown as environment-sourced in the UI; restart `dagster dev` after changing one.
    """
    bound: dict[str, EnvVar | str] = {f: EnvVar(n) for f, n in ENVIRONMENT[resource].items() if os.environ.get(n)}
    return bound | {f: n for f, n in SECRET_NAMES.get(resource, {}).items() if os.environ.get(n)}


with warnings.catch_warnings():  # code references (links from each asset to its source) are a beta feature
    warnings.simplefilter("ignore", BetaWarning)
    assets = with_source_code_references(
        [file_index, frame_index, embeddings, embeddings_csv, uploaded_dataset, embedding_model]
    )

defs = Definitions(
    assets=assets,
    jobs=[lightly_assets_job, embedding_model_job],
    sensors=[dataset_folders_sensor],
    resources={
        # Declared, so `execute_in_process` (the CLI) keeps values on disk like the daemon's runs do; atomic, so
        # several runs of one dataset at once never read each other's half-written values.
        "io_manager": AtomicFilesystemIOManager(),
        "storage": StorageResource(**from_env("storage")),
        "embedding_model": EmbeddingModelResource(**from_env("embedding_model")),
        "publish_target": PublishTargetResource(**from_env("publish_target")),
    },
)
