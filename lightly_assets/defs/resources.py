"""Dagster resources: where data lives, which model embeds it, and where datasets are published."""

import os
from pathlib import Path
from typing import Any, Literal, Optional

import pandas as pd
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from lightly_assets.dataset import roots as datasets


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
    workers: Optional[int] = None  # decode threads; None: sized for the device (runtime.plan_threads)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where native, else fp32
    seed: int = 0

    _model: object = PrivateAttr(default=None)

    def load(self):  # -> lightly_assets.embedding.model.LoadedModel
        """Build the model once; a bad checkpoint fails here, before any file is decoded."""
        if self._model is None:
            from lightly_assets.embedding.model import load_model

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

    def publish(
        self,
        name: str,
        dataset_dir: Path,
        outputs_root: Path,
        file_index: pd.DataFrame,
        frame_index: pd.DataFrame,
        csv_path: Path,
    ) -> dict[str, Any]:
        """Publish one dataset and return what was counted in the target afterwards (never a secret)."""
        dataset_name = self.dataset_id or name
        if self.resolved_target() == "bucket":
            return self._to_bucket(dataset_name, dataset_dir, file_index, frame_index, csv_path)
        return self._to_studio(dataset_name, dataset_dir, outputs_root, frame_index, csv_path)

    def _to_studio(
        self, dataset_name: str, dataset_dir: Path, outputs_root: Path, frame_index: pd.DataFrame, csv_path: Path
    ) -> dict[str, Any]:
        from lightly_assets.publish.studio import StudioTarget, upload_dataset

        url_env = self.studio_db_url_env or (
            "LIGHTLY_STUDIO_DATABASE_URL" if os.environ.get("LIGHTLY_STUDIO_DATABASE_URL") else None
        )
        if url_env:
            target = StudioTarget(db_url_env=url_env, dataset_name=dataset_name)
        else:
            db_file = Path(
                self.studio_db_file or os.environ.get("LIGHTLY_STUDIO_DB_FILE") or outputs_root / "lightly_studio.db"
            )
            target = StudioTarget(db_file=db_file.resolve(), dataset_name=dataset_name)
        result = upload_dataset(target, dataset_dir, frame_index, csv_path)
        return {
            "target": result.target,
            "dataset": result.dataset_name,
            "dataset_id": str(result.dataset_id),
            "samples": result.samples,
            "embeddings": result.embeddings,
            "browse": result.gui_command,
            **{k: v for k, v in result.as_metadata().items() if isinstance(v, (int, str))},
        }

    def _to_bucket(
        self,
        dataset_name: str,
        dataset_dir: Path,
        file_index: pd.DataFrame,
        frame_index: pd.DataFrame,
        csv_path: Path,
    ) -> dict[str, Any]:
        from lightly_assets.publish.bucket import BucketError, BucketTarget, publish_to_bucket

        url = self.bucket_url or os.environ.get("LIGHTLY_ASSETS_BUCKET_URL")
        if not url:
            raise BucketError("bucket target needs bucket_url or LIGHTLY_ASSETS_BUCKET_URL")
        result = publish_to_bucket(BucketTarget(url=url), dataset_name, dataset_dir, frame_index, file_index, csv_path)
        return {
            "target": result.url,
            "dataset": dataset_name,
            "dataset_id": f"{result.url.rstrip('/')}/{dataset_name}",
            "samples": result.samples,
            "embeddings": result.embeddings,
            "browse": f"{result.url.rstrip('/')}/{dataset_name}/.lightly/embeddings/{dataset_name}.csv",
        }
