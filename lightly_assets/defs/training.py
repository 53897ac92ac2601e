"""Training Lightly's self-supervised model on a dataset: `embedding_model`, run only on request."""

import base64
from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from lightly_assets.defs.common import TRAINING_GROUP, dataset_asset, user_errors
from lightly_assets.defs.metadata import weights_fact
from lightly_assets.defs.resources import EmbeddingModelResource, StorageResource
from lightly_assets.embedding.factory import create_embedder
from lightly_assets.embedding.quality import knn_of_model
from lightly_assets.embedding.settings import RunSettings
from lightly_assets.embedding.spec import BuildOptions
from lightly_assets.embedding.weights import TRAINED_NAME, Weights, file_weights
from lightly_assets.plots import loss_curve_png


class EmbeddingModelConfig(Config):
    """A self-supervised training run (lightly-ssl-train's defaults), stopped early by `max_minutes`.

    `resume` continues from the dataset's previous `embedding_model.ckpt` instead of the pretrained weights.
    """

    epochs: int = Field(default=100, description="Epochs (lightly-ssl-train's default).")
    batch_size: int = Field(default=16, description="Samples per batch, at least 2 (SimCLR contrasts a batch).")
    learning_rate: float = Field(default=1.0, description="SGD learning rate.")
    max_minutes: float = Field(default=60.0, description="Time budget: training stops early when it runs out.")
    resume: bool = Field(default=False, description="Continue from the previous embedding_model.ckpt.")
    workers: int = Field(default=-1, description="Decode threads; -1: sized for the machine.")


TRAINING_FACTS = ["checkpoint", "loss_per_epoch", "losses", "epochs", "stopped_by", "partial_last_epoch", "steps",
                  "samples", "images_seen", "images_per_second", "seconds", "device", "precision", "unreadable",
                  "started_from", "sha256", "knn_before", "knn_after"]  # fmt: skip


@dataset_asset(facts=TRAINING_FACTS, group_name=TRAINING_GROUP, kinds={"pytorch"})
def embedding_model(
    context: AssetExecutionContext,
    config: EmbeddingModelConfig,
    storage: StorageResource,
    embedding_model: EmbeddingModelResource,
    frame_index: pd.DataFrame,
):
    """Lightly's SimCLR trained on this dataset: `<outputs>/<dataset>/embedding_model.ckpt`, which `embeddings` uses.

    Runs only when asked (UI or `lightly-assets train DATASET`): on a CPU it is a long job.
    """
    # torch and lightly (seconds): only when training, not when the definitions load
    from lightly_assets.embedding.training import TrainSettings, train

    name = context.partition_key
    out = storage.outputs_for(name) / TRAINED_NAME
    data_dir = storage.dataset_dir(name)
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        max_minutes=config.max_minutes,
        input_size=embedding_model.input_size,
        device=embedding_model.device,
        precision="auto",
        workers=config.workers,
        seed=embedding_model.seed,
    )
    run = RunSettings(device=embedding_model.device, engine="torch")  # the network just trained: nothing to convert
    options = BuildOptions(input_size=embedding_model.input_size, seed=embedding_model.seed)
    batch, workers = embedding_model.batch_size, embedding_model.workers
    with user_errors():
        start = embedding_model.choose(trained=out if config.resume else None, log=context.log.info)
        context.log.info(f"{name}: training starts from {start.describe()}")
        before = knn_of_model(
            frame_index, data_dir, create_embedder("lightly", run, options, start), batch_size=batch, workers=workers
        )
        result = train(frame_index, data_dir, out, settings, start=start.path, progress=context.log.info)
        after = knn_of_model(
            frame_index,
            data_dir,
            create_embedder("lightly", run, options, _trained(out)),
            batch_size=batch,
            workers=workers,
        )
    context.log.info(f"{name}: kNN agreement before {before.describe()}, after {after.describe()}")
    plot = base64.b64encode(loss_curve_png(result.losses)).decode()
    return MaterializeResult(  # the checkpoint file is the asset; `embeddings` finds it through the storage resource
        metadata={
            "checkpoint": MetadataValue.path(str(out.resolve())),
            "loss_per_epoch": MetadataValue.md(f"Mean SimCLR loss per epoch:\n\n![loss](data:image/png;base64,{plot})"),
            "losses": [round(v, 5) for v in result.losses],
            "epochs": result.epochs,
            "stopped_by": result.stopped_by,
            "partial_last_epoch": result.partial_last_epoch,
            "steps": result.steps,
            "samples": result.samples,
            "images_seen": result.images_seen,
            "images_per_second": round(result.images_per_s, 2),
            "seconds": round(result.seconds, 1),
            "device": result.device,
            "precision": result.precision,
            "unreadable": len(result.unreadable),
            "started_from": weights_fact(start),
            "sha256": _trained(out).sha256 or "",
            "knn_before": before.describe(),
            "knn_after": after.describe(),
        },
    )


def _trained(path: Path) -> Weights:
    return file_weights("trained", path)
