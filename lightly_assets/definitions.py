"""The single Dagster `Definitions` of the project: read it as the table of contents."""

from dagster import Definitions

from lightly_assets.assets import embeddings, embeddings_csv, file_index, frame_index, uploaded_dataset
from lightly_assets.jobs import lightly_assets_job
from lightly_assets.resources import EmbeddingModelResource, PublishTargetResource, StorageResource
from lightly_assets.sensors import dataset_folders_sensor

defs = Definitions(
    assets=[file_index, frame_index, embeddings, embeddings_csv, uploaded_dataset],
    jobs=[lightly_assets_job],
    sensors=[dataset_folders_sensor],
    resources={
        "storage": StorageResource(),
        "embedding_model": EmbeddingModelResource(),
        "publish_target": PublishTargetResource(),
    },
)
