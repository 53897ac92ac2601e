"""The single Dagster `Definitions` of the project: read it as the table of contents."""

from dagster import Definitions

from lightly_assets.defs.assets import embeddings, embeddings_csv, file_index, frame_index, uploaded_dataset
from lightly_assets.defs.io_manager import AtomicFilesystemIOManager
from lightly_assets.defs.jobs import lightly_assets_job
from lightly_assets.defs.resources import EmbeddingModelResource, PublishTargetResource, StorageResource
from lightly_assets.defs.sensors import dataset_folders_sensor

defs = Definitions(
    assets=[file_index, frame_index, embeddings, embeddings_csv, uploaded_dataset],
    jobs=[lightly_assets_job],
    sensors=[dataset_folders_sensor],
    resources={
        # Declared, so `execute_in_process` (the CLI) keeps values on disk like the daemon's runs do; atomic, so
        # several runs of one dataset at once never read each other's half-written values.
        "io_manager": AtomicFilesystemIOManager(),
        "storage": StorageResource(),
        "embedding_model": EmbeddingModelResource(),
        "publish_target": PublishTargetResource(),
    },
)
