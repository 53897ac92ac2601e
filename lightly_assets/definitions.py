"""The single Dagster `Definitions` of the project: read it as the table of contents."""

from dagster import Definitions, FilesystemIOManager

from lightly_assets.defs.assets import (
    embedding_model,
    embeddings,
    embeddings_csv,
    file_index,
    frame_index,
    uploaded_dataset,
)
from lightly_assets.defs.jobs import embedding_model_job, lightly_assets_job
from lightly_assets.defs.resources import EmbeddingModelResource, PublishTargetResource, StorageResource
from lightly_assets.defs.sensors import dataset_folders_sensor

defs = Definitions(
    assets=[file_index, frame_index, embeddings, embeddings_csv, uploaded_dataset, embedding_model],
    jobs=[lightly_assets_job, embedding_model_job],
    sensors=[dataset_folders_sensor],
    resources={
        # Declared, so `execute_in_process` (the CLI) keeps values on disk like the daemon's runs do.
        "io_manager": FilesystemIOManager(),
        "storage": StorageResource(),
        "embedding_model": EmbeddingModelResource(),
        "publish_target": PublishTargetResource(),
    },
)
