"""Dagster resources: where data lives, which model embeds it, and where datasets are published."""


import os
from pathlib import Path
from typing import Literal, Optional

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from lightly_assets import datasets


class StorageResource(ConfigurableResource):
    """The data root and output root; unset fields fall back to the environment variables of DESIGN.md."""

    data_dir: Optional[str] = None
    output_dir: Optional[str] = None

    def data_root(self) -> Path:
        return Path(self.data_dir) if self.data_dir else datasets.data_dir()

    def dataset_dir(self, name: str) -> Path:
        return self.data_root() / name

    def outputs_for(self, name: str) -> Path:
        root = Path(self.output_dir) if self.output_dir else datasets.output_dir()
        return root / name


class EmbeddingModelResource(ConfigurableResource):
    """The embedding network and how it runs; the loaded model is kept for the life of the step."""

    checkpoint: Optional[str] = None
    input_size: int = 64
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    seed: int = 0

    _model: object = PrivateAttr(default=None)

    def load(self):  # -> lightly_assets.model.LoadedModel
        """Build the model once; a bad checkpoint fails here, before any file is decoded."""
        if self._model is None:
            from lightly_assets.model import load_model

            checkpoint = self.checkpoint or os.environ.get("LIGHTLY_ASSETS_CHECKPOINT") or None
            self._model = load_model(
                checkpoint,
                input_size=self.input_size,
                seed=self.seed,
                device=self.device,
                precision=self.precision,
            )
        return self._model


class PublishTargetResource(ConfigurableResource):
    """Where `uploaded_dataset` publishes: LightlyStudio (default) or a bucket datasource through fsspec.

    Secrets are never fields: a PostgreSQL URL and bucket credentials are read from the environment variables
    named here, so they cannot end up in run config, metadata or logs.
    """

    target: Literal["studio", "bucket"] = "studio"
    studio_db_file: Optional[str] = None
    studio_db_url_env: Optional[str] = None
    bucket_url: Optional[str] = None
    dataset_id: Optional[str] = None

    def resolved_target(self) -> str:
        return os.environ.get("LIGHTLY_ASSETS_TARGET", self.target)
