"""Dagster resources: where data lives, which model embeds it, and where datasets are published.

Fields hold plain defaults; `definitions.py` binds the environment variables (README's table) to them as `EnvVar`s,
and run config overrides both. Nothing here reads `os.environ`: a secret (LightlyStudio's PostgreSQL URL) is
never a config value, only the NAME of its variable is, read when connecting.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import pandas as pd
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from lightly_assets.dataset.roots import DataRoot, find_datasets
from lightly_assets.defs.preloading import Preloads, embeds_later
from lightly_assets.embedding.distributed import RayExecutor
from lightly_assets.embedding.download import cached_path
from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.executor import EXECUTORS, Executor
from lightly_assets.embedding.factory import create_embedder
from lightly_assets.embedding.local import LocalExecutor
from lightly_assets.embedding.settings import Calibration, RunSettings
from lightly_assets.embedding.spec import BuildOptions, ModelSpec, parse_spec
from lightly_assets.embedding.weights import Weights, choose_weights, zoo_url
from lightly_assets.errors import LightlyAssetsError
from lightly_assets.publish.bucket import publish_curation_files, publish_to_bucket
from lightly_assets.publish.bucket.target import BucketError, BucketTarget
from lightly_assets.publish.studio import StudioTarget, upload_dataset
from lightly_assets.publish.studio.browse import gui_base_url, links, links_markdown, text_search_note
from lightly_assets.publish.studio.tags import publish_tags

TARGETS = ("studio", "bucket")


class ConfigurationError(LightlyAssetsError):
    """A resource field holds a value outside its choices (fields bound to an EnvVar are plain strings)."""


def choice(field: str, value: str, allowed: tuple[str, ...]) -> str:
    """The value if allowed, else one line naming the field, the value and the choices."""
    if value not in allowed:
        raise ConfigurationError(f"{field}={value!r} is not one of {', '.join(allowed)}")
    return value


class StorageResource(ConfigurableResource):
    """The data root (one subfolder per dataset) and the output root (`<output_dir>/<dataset>/embeddings.csv`)."""

    data_dir: str = Field(
        default="data",
        description="Data root: every immediate subfolder is a dataset. A relative path is relative to the folder "
        "`dg dev` or `lightly-assets` was started in (the project folder with `bash scripts/dev.sh`).",
    )
    output_dir: str = Field(
        default="outputs",
        description="Output root: `<output_dir>/<dataset>/embeddings.csv`. A relative path is relative to the folder "
        "`dg dev` or `lightly-assets` was started in.",
    )

    def data_root(self) -> Path:
        return Path(self.data_dir)

    def datasets(self) -> DataRoot:
        """The dataset folders under the data root (raises DatasetError when the root is missing)."""
        return find_datasets(self.data_root())

    def dataset_dir(self, name: str) -> Path:
        return self.data_root() / name

    def outputs_for(self, name: str) -> Path:
        return Path(self.output_dir) / name


class EmbeddingModelResource(ConfigurableResource):
    """The embedding network and how it runs; the loaded model is kept for the life of the step.

    `model` (LIGHTLY_ASSETS_MODEL): `lightly` (default), `torchvision:NAME`, `timm:NAME`, `open_clip:ARCH/TAG`,
    `mobileclip:s0`, `onnx:/path/model.onnx`. A named model's weights come from its library's cache (downloaded
    once; `weights_url` is a mirror of its file) and never fall back to random weights.

    Weights of `lightly`, in this order: `checkpoint` (or LIGHTLY_ASSETS_CHECKPOINT), the dataset's trained
    `embedding_model.ckpt`, Lightly's pretrained zoo file (`pretrained`, from torch's hub cache; `pretrained_url` or
    LIGHTLY_ASSETS_PRETRAINED_URL for a mirror), else a seeded random initialisation.
    """

    model: str = Field(
        default="lightly",
        description="`lightly`, `torchvision:NAME`, `timm:NAME`, `open_clip:ARCH/TAG`, `mobileclip:s0` or `onnx:PATH`.",
    )
    mean: Optional[list[float]] = Field(default=None, description="RGB mean for `onnx:` models (default ImageNet's).")
    std: Optional[list[float]] = Field(default=None, description="RGB std for `onnx:` models (default ImageNet's).")
    weights_url: Optional[str] = Field(
        default=None, description="URL of a named model's weights file (a mirror), instead of its library's."
    )
    checkpoint: Optional[str] = Field(default=None, description="Checkpoint file (lightly-ssl-train or torchvision).")
    pretrained_url: Optional[str] = Field(
        default=None, description="URL of the pretrained checkpoint, instead of Lightly's model zoo."
    )
    executor: str = Field(default="local", description="Where embedding runs: `local` or `ray`.")
    input_size: int = Field(default=64, description="Input size in pixels of the `lightly` and `onnx:` models.")
    batch_size: int = Field(default=64, description="Samples per forward pass (and per Ray task of images).")
    workers: Optional[int] = Field(
        default=None, description="Decode threads; unset: sized for the device (runtime.plan_threads)."
    )
    device: str = Field(default="auto", description="`auto` (CUDA when present, else the CPU), `cpu` or `cuda`.")
    engine: Literal["auto", "openvino", "torch"] = Field(
        default="auto", description="`auto`: OpenVINO on a CPU (converted once, cached), torch on CUDA."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        default="auto", description="auto: bf16 where native, else fp32; int8 (OpenVINO, opt-in) quantises."
    )
    engine_cache_dir: Optional[str] = Field(
        default=None, description="Converted OpenVINO models (default `~/.cache/lightly-assets/openvino`)."
    )
    orientation: Literal["upright", "raw"] = Field(
        default="upright",
        description="`upright`: photos and frames as viewers show them (EXIF orientation, video display rotation); "
        "`raw`: the stored pixels, as lightly-embed embeds them.",
    )
    seed: int = Field(default=0, description="Seed of the random initialisation (the last resort for weights).")
    pretrained: bool = Field(
        default=True, description="Use Lightly's pretrained zoo weights when no checkpoint is set."
    )
    download_timeout_s: float = Field(
        default=10.0, description="Seconds to wait for a name lookup or the server while downloading weights."
    )

    _model: Optional[Embedder] = PrivateAttr(default=None)
    _preloads: Optional[Preloads] = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Start making the model (and the random baseline) while the run's first steps run (`preloading`)."""
        if not embeds_later(context):
            return
        try:
            spec, settings, options = self.spec(), self._settings(None), self._options(None)
        except LightlyAssetsError:
            return  # the step raises it, as without a preload
        self._preloads = Preloads(spec, settings, options, self._weights_known_now)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._preloads is not None:
            self._preloads.close()
            self._preloads = None

    def _weights_known_now(self) -> Optional[Weights]:
        """`choose()` unless that needs a download (the step downloads, and logs it): the weights unless the dataset
        has a trained checkpoint, which `load` looks for."""
        if not self.checkpoint and self.pretrained and not cached_path(self.pretrained_url or zoo_url()).is_file():
            return None
        return self.choose()

    def _preloaded_choice(self, trained: Optional[Path]) -> Optional[Weights]:
        """The weights chosen on the preload's thread, where `choose(trained)` picks the same ones now."""
        if self._preloads is None or (not self.checkpoint and trained is not None and trained.is_file()):
            return None
        return self._preloads.chosen()

    def spec(self) -> ModelSpec:
        """What `model` asks for; an unknown value is one line listing what is accepted."""
        return parse_spec(self.model)

    def choose(self, trained: Optional[Path] = None, log: Optional[Callable[[str], None]] = None) -> Weights:
        """Which weights the lightly model uses; downloads the pretrained zoo file once when it is the one."""
        return choose_weights(
            checkpoint=self.checkpoint or None,
            trained=trained,
            pretrained=self.pretrained,
            url=self.pretrained_url,
            stall_timeout=self.download_timeout_s,
            log=log,
        )

    def load(
        self,
        trained: Optional[Path] = None,
        log: Optional[Callable[[str], None]] = None,
        calibration: Optional[Calibration] = None,
    ) -> Embedder:
        """Make the model once (`factory.create_embedder`); a bad checkpoint fails here, before any file is decoded.

        `calibration`: a function of the model's preprocessing returning uint8 samples, for `precision: int8`.
        """
        if self._model is None:
            spec = self.spec()
            if spec.named and self.checkpoint:
                raise ConfigurationError(
                    f"embedding_model.checkpoint={self.checkpoint!r} is a checkpoint of the lightly model, but "
                    f"embedding_model.model={self.model!r}; unset one of them"
                )
            weights = None if spec.named else self._preloaded_choice(trained) or self.choose(trained, log)
            self._model = create_embedder(spec, self._settings(calibration), self._options(log), weights)
        return self._model

    def random_model(self) -> Embedder:
        """The seeded random network with the same settings: the baseline of the quality figure."""
        return create_embedder("lightly", self._settings(None), self._options(None), Weights("random"))

    @property
    def weights(self) -> Optional[Weights]:
        """Provenance of the loaded model's weights (None before `load`)."""
        return self._model.weights if self._model is not None else None

    def _settings(self, calibration: Optional[Calibration]) -> RunSettings:
        return RunSettings(
            device=self.device,
            precision=self.precision,
            engine=self.engine,
            cache_dir=self.engine_cache_dir,
            calibration=calibration,
        )

    def _options(self, log: Optional[Callable[[str], None]]) -> BuildOptions:
        return BuildOptions(
            mirror=self.weights_url,
            stall_timeout=self.download_timeout_s,
            log=log,
            input_size=self.input_size,
            mean=_rgb("mean", self.mean),
            std=_rgb("std", self.std),
            seed=self.seed,
        )

    def executor_for(self, ray_cluster: "RayClusterResource") -> Executor:
        """The executor this field names; a bad value is one line naming the field (run config or EnvVar alike)."""
        if choice("embedding_model.executor", self.executor, EXECUTORS) == "ray":
            return ray_cluster.executor()
        return LocalExecutor()


class RayClusterResource(ConfigurableResource):
    """The Ray cluster that embeds when `embedding_model.executor` is `ray`; unused (never joined) otherwise.

    Ours rather than dagster-ray's `RayResource`: that one joins (or starts) a cluster when the step starts,
    through Ray Client with minutes of retries, whatever the executor; this one joins only for the `ray` executor,
    at a GCS address (host:port) as `ray start` prints it, after a TCP probe that fails within seconds.
    """

    address: Optional[str] = Field(
        default=None, description="Head node as host:port, ray://host:10001 or `auto` (RAY_ADDRESS)."
    )
    num_cpus: float = Field(default=1.0, description="CPUs each Ray task asks for.")
    num_gpus: Optional[float] = Field(
        default=None, description="GPUs each Ray task asks for; unset: one where the cluster has GPUs, else none."
    )
    max_retries: int = Field(default=3, description="Retries of a task whose node or worker dies.")

    def executor(self) -> RayExecutor:
        return RayExecutor(
            address=self.address or "", num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries
        )


def _rgb(name: str, values: Optional[list[float]]) -> Optional[tuple[float, float, float]]:
    if values is None:
        return None
    if len(values) != 3 or (name == "std" and any(v <= 0 for v in values)):
        raise ConfigurationError(f"embedding_model.{name}={values!r} must be three numbers (R, G, B), std above 0")
    return (float(values[0]), float(values[1]), float(values[2]))


@dataclass(frozen=True)
class Curation:
    """What `published_curation` brings to the target: tags (base name -> sample names) and files (name -> bytes)."""

    tags: dict[str, list[str]]
    files: dict[str, bytes]


class PublishTargetResource(ConfigurableResource):
    """Where `uploaded_dataset` publishes: LightlyStudio (default) or a bucket datasource through fsspec.

    Secrets are never fields: a PostgreSQL URL and bucket credentials are read from the environment variables
    named here, so they cannot end up in run config, metadata or logs.
    """

    target: str = Field(default="studio", description="`studio` (LightlyStudio) or `bucket` (a bucket datasource).")
    studio_db_file: Optional[str] = Field(
        default=None, description="LightlyStudio DuckDB file (default `<output_dir>/lightly_studio.db`)."
    )
    studio_db_url_env: Optional[str] = Field(
        default=None,
        description="NAME of the environment variable holding LightlyStudio's PostgreSQL URL (instead of DuckDB).",
    )
    bucket_url: Optional[str] = Field(default=None, description="fsspec URL of the bucket datasource.")
    s3_endpoint: Optional[str] = Field(
        default=None, description="S3-compatible endpoint of the bucket (unset: AWS_ENDPOINT_URL_S3, else AWS's)."
    )
    s3_region: Optional[str] = Field(default=None, description="The bucket's region (unset: AWS_REGION).")
    dataset_id: Optional[str] = Field(
        default=None, description="Name of the dataset in the target (default: the dataset folder's name)."
    )

    def publish(
        self,
        name: str,
        dataset_dir: Path,
        outputs_root: Path,
        file_index: pd.DataFrame,
        frame_index: pd.DataFrame,
        csv_path: Path,
        space: Optional[str] = None,
    ) -> dict[str, Any]:
        """Publish one dataset and return what was counted in the target afterwards (never a secret).

        `space`: LightlyStudio's embedding model for these vectors (one per model; None: the default key).
        Curation already in the target (tags, `.lightly/` files) is kept: `publish_curation` writes it.
        """
        dataset_name = self.dataset_id or name
        if choice("publish_target.target", self.target, TARGETS) == "bucket":
            return self._to_bucket(dataset_name, dataset_dir, file_index, frame_index, csv_path)
        return self._to_studio(dataset_name, dataset_dir, outputs_root, frame_index, csv_path, space)

    def publish_curation(
        self, name: str, dataset_dir: Path, outputs_root: Path, frame_index: pd.DataFrame, curation: Curation
    ) -> dict[str, Any]:
        """Bring the curation to the published dataset: versioned LightlyStudio tags, or files under the bucket's
        `.lightly/`. Returns the target and what was written (tag names, or file name -> written/unchanged)."""
        dataset_name = self.dataset_id or name
        if choice("publish_target.target", self.target, TARGETS) == "bucket":
            target = self._bucket_target()
            files = publish_curation_files(target, dataset_name, curation.files)
            return {"target": target.safe_url, "dataset": dataset_name, "files": files, "tags": {}}

        target, db_file = self._studio_target(dataset_name, outputs_root)
        tags = publish_tags(target, dataset_dir, frame_index, curation.tags)
        return {"target": "lightly_studio", "location": str(db_file) if db_file else None, "dataset": dataset_name,
                "tags": tags, "files": {}}  # fmt: skip

    def _studio_target(self, dataset_name: str, outputs_root: Path):  # -> tuple[StudioTarget, Path | None]
        """LightlyStudio's database: the PostgreSQL URL's variable when set, else the DuckDB file."""
        if self.studio_db_url_env:  # the URL is read from that variable when connecting, and never shown
            return StudioTarget(db_url_env=self.studio_db_url_env, dataset_name=dataset_name), None
        db_file = Path(self.studio_db_file or outputs_root / "lightly_studio.db").resolve()
        return StudioTarget(db_file=db_file, dataset_name=dataset_name), db_file

    def _bucket_target(self) -> BucketTarget:
        if not self.bucket_url:
            raise BucketError("bucket target needs bucket_url (LIGHTLY_ASSETS_BUCKET_URL)")
        return BucketTarget(url=self.bucket_url, endpoint_url=self.s3_endpoint, region_name=self.s3_region)

    def _to_studio(
        self,
        dataset_name: str,
        dataset_dir: Path,
        outputs_root: Path,
        frame_index: pd.DataFrame,
        csv_path: Path,
        space: Optional[str] = None,
    ) -> dict[str, Any]:
        target, db_file = self._studio_target(dataset_name, outputs_root)
        result = upload_dataset(target, dataset_dir, frame_index, csv_path, space)
        return {
            "target": result.target,
            "dataset": result.dataset_name,
            "samples": result.samples,
            "embeddings": result.embeddings,
            "videos": result.videos,
            "added": result.added,
            "removed": result.removed,
            "unmatched": result.unmatched,
            "urls": links_markdown(links(result.datasets, gui_base_url())),
            "browse": f"lightly-assets browse {dataset_name}",
            "gui_command": result.gui_command,
            "text_search": text_search_note(space),
            "location": str(db_file) if db_file else None,
        }

    def _to_bucket(
        self,
        dataset_name: str,
        dataset_dir: Path,
        file_index: pd.DataFrame,
        frame_index: pd.DataFrame,
        csv_path: Path,
    ) -> dict[str, Any]:
        result = publish_to_bucket(
            self._bucket_target(),
            dataset_name,
            dataset_dir,
            frame_index,
            file_index,
            csv_path,
        )
        return {
            "target": result.url,
            "dataset": dataset_name,
            "dataset_id": f"{result.url.rstrip('/')}/{dataset_name}",
            "samples": result.samples,
            "embeddings": result.embeddings,
            "browse": f"{result.url.rstrip('/')}/{dataset_name}/.lightly/embeddings/{dataset_name}.csv",
            "location": f"{result.url.rstrip('/')}/{dataset_name}",
        }
