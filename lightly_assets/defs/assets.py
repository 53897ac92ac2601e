"""The asset chain, one partition per dataset: file_index, frame_index, embeddings, embeddings_csv, uploaded_dataset.

Each asset calls one domain module and turns its result into an output, metadata and check results.
"""

import base64
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from lightly_assets import columns
from lightly_assets.defs import checks
from lightly_assets.defs.metadata import (
    FINGERPRINT,
    column_schema,
    contract_schema,
    counts,
    csv_preview,
    location,
    preview,
    projection_markdown,
    skipped_list,
    skipped_table,
    unreadable_by_source,
)
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.defs.resources import EmbeddingModelResource, PublishTargetResource, StorageResource
from lightly_assets.errors import LightlyAssetsError
from lightly_assets.progress import Progress

GROUP = "lightly"
OWNERS = ["team:lightly-assets"]
TRAINING_GROUP = "training"  # not part of the main job: trained only on request


def dataset_asset(**spec: Any) -> Callable:
    """`@asset` with what every asset here shares: one partition per dataset, the main group, our owners."""
    return asset(**{"partitions_def": datasets_partitions, "group_name": GROUP, "owners": OWNERS, **spec})


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


class FileIndexConfig(Config):
    """`verify_images` opens every image header, so unreadable files are reported before embedding.

    Off by default: it costs about 100x the listing on big folders, and embedding reports them anyway.
    """

    verify_images: bool = False


@dataset_asset(
    check_specs=checks.FILE_INDEX,
    kinds={"pandas"},
    metadata={"dagster/column_schema": contract_schema(columns.FILE_INDEX)},
)
def file_index(context: AssetExecutionContext, config: FileIndexConfig, storage: StorageResource):
    """Every usable image and video of the dataset with its weak label, in Lightly's order."""
    from lightly_assets.dataset.roots import fingerprint
    from lightly_assets.dataset.scan import require_usable, scan_dataset

    folder = storage.dataset_dir(context.partition_key)
    files_seen = fingerprint(folder)  # taken before the scan: a file changed meanwhile makes the sensor run again
    with user_errors():
        result = scan_dataset(folder, verify=config.verify_images)
        require_usable(result, folder)
    files = result.files
    for s in result.skipped:
        context.log.warning(f"skipped {folder / s.path}: {s.reason}")
    yield Output(
        files,
        metadata={
            "dagster/row_count": len(files),
            "dagster/column_schema": column_schema(files),
            "layout": result.layout,
            "per_kind": counts(files["kind"]),
            "per_label": counts(files["label_name"]),
            "skipped": len(result.skipped),
            "skipped_files": skipped_table(result.skipped),
            "skipped_list": skipped_list(result.skipped),
            "preview": preview(files),
            "folder": MetadataValue.path(str(folder.resolve())),
            FINGERPRINT: files_seen,
        },
    )
    yield checks.no_skipped_files(result.skipped)


@dataset_asset(
    check_specs=checks.FRAME_INDEX,
    kinds={"pandas"},
    metadata={"dagster/column_schema": contract_schema(columns.FRAME_INDEX)},
)
def frame_index(context: AssetExecutionContext, storage: StorageResource, file_index: pd.DataFrame):
    """One row per sample: images as they are, every video frame with its Lightly name and timestamp."""
    from lightly_assets.dataset.samples import build_sample_index, require_samples

    folder = storage.dataset_dir(context.partition_key)
    start = time.perf_counter()
    with user_errors():
        index = build_sample_index(file_index, folder, progress=Progress("indexing videos", context.log.info))
        require_samples(index, folder)
    samples = index.samples
    for s in index.skipped:
        context.log.warning(f"skipped {folder / s.path}: {s.reason}")
    videos = {name: v.n_frames for name, v in index.videos.items()}
    yield Output(
        samples,
        metadata={
            "dagster/row_count": len(samples),
            "dagster/column_schema": column_schema(samples),
            "per_kind": counts(samples["kind"]),
            "per_label": counts(samples["label_name"]),
            "frames_per_video": videos,
            "skipped": len(index.skipped),
            "skipped_files": skipped_table(index.skipped),
            "skipped_list": skipped_list(index.skipped),
            "index_seconds": round(time.perf_counter() - start, 3),
            "preview": preview(samples),
        },
    )
    yield checks.samples_match_files(file_index, samples, index.skipped)
    yield checks.all_videos_indexed(index.skipped)


@dataset_asset(
    check_specs=checks.EMBEDDINGS,
    kinds={"pytorch", "numpy"},
    deps=["embedding_model"],  # lineage only: the trained checkpoint is used when it exists, never required
)
def embeddings(
    context: AssetExecutionContext,
    storage: StorageResource,
    embedding_model: EmbeddingModelResource,
    frame_index: pd.DataFrame,
):
    """One float32 vector per sample; only new or changed samples are embedded, the rest come from the cache.

    Weights: the configured checkpoint, else the dataset's trained `embedding_model.ckpt`, else Lightly's
    pretrained zoo weights (torch's hub cache), else a seeded random initialisation (said loudly).
    """
    from lightly_assets.embedding.pipeline import EmbeddingCache, EmbeddingError, embed_samples
    from lightly_assets.embedding.quality import Quality, measure, sample_embedder
    from lightly_assets.embedding.ray_executor import choose_executor
    from lightly_assets.embedding.weights import TRAINED_NAME

    name = context.partition_key
    out = storage.outputs_for(name)
    with user_errors():
        executor = choose_executor(embedding_model.executor)  # LIGHTLY_ASSETS_EXECUTOR: local or ray
        model = embedding_model.load(trained=out / TRAINED_NAME, log=context.log.info)
        weights = embedding_model.weights
        context.log.info(f"{name}: weights {weights.describe()}")
        if model.random_init:
            context.log.warning(
                f"{name}: embedding with RANDOM seeded weights ({model.description}): "
                f"{weights.note or 'pretrained weights switched off'}"
            )
        cache = EmbeddingCache(out / "embedding_cache.npz")
        result = embed_samples(
            frame_index,
            storage.dataset_dir(name),
            model,
            batch_size=embedding_model.batch_size,
            workers=embedding_model.workers,
            cache=cache,
            progress=Progress("embedding", context.log.info),
            executor=executor,
        )
    left_out = unreadable_by_source(result.unreadable, frame_index)
    for s in left_out:
        context.log.warning(f"could not embed {s.path}: {s.reason}")
    if not result.filenames:
        with user_errors():
            detail = "; ".join(f"{n}: {r}" for n, r in result.unreadable[:5])
            raise EmbeddingError(f"{storage.dataset_dir(name)}: no sample could be decoded ({detail})")
    with user_errors():
        baseline = None
        if not model.random_init:
            baseline = sample_embedder(
                frame_index,
                storage.dataset_dir(name),
                embedding_model.random_model(),
                batch_size=embedding_model.batch_size,
                workers=embedding_model.workers,
                cache=EmbeddingCache(out / "embedding_cache_random.npz"),
            )
        quality = measure(result.matrix, np.asarray(result.labels), result.indices, baseline)
        if model.random_init and quality.knn is not None:
            quality = Quality(quality.knn, quality.knn)  # the model is the random network
    context.log.info(f"{name}: kNN agreement with the weak labels {quality.describe()}")
    yield Output(
        result,
        metadata={
            "samples": len(result.filenames),
            "dimension": int(result.matrix.shape[1]) if result.matrix.ndim == 2 else 0,
            "model": model.description,
            "checkpoint": model.checkpoint or "none (RANDOM seeded initialisation)",
            "random_init": model.random_init,
            **weights.metadata(),
            "device": str(model.device),
            "precision": model.precision,
            "torch_threads": model.threads,
            "decode_workers": result.workers,
            "reused": result.reused,
            "embedded": len(result.filenames) - result.reused,
            "unreadable": len(result.unreadable),
            "skipped_list": skipped_list(left_out),
            "seconds": round(result.seconds, 3),
            "samples_per_second": round(result.samples_per_s, 1),
            **quality.metadata(),
            "executor": executor.describe() if executor else "local",
            **({"ray_nodes": len(executor.nodes)} if executor else {}),
        },
    )
    yield checks.finite_values(result.matrix, result.filenames)
    yield checks.all_samples_embedded(result.unreadable, len(frame_index))
    yield checks.trained_weights(model.random_init, model.description, weights.note)
    yield checks.knn_better_than_chance(quality)


class EmbeddingModelConfig(Config):
    """A self-supervised training run (lightly-ssl-train's defaults), stopped early by `max_minutes`.

    `resume` continues from the dataset's previous `embedding_model.ckpt` instead of the pretrained weights.
    """

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1.0
    max_minutes: float = 60.0
    resume: bool = False
    workers: int = -1


@dataset_asset(group_name=TRAINING_GROUP, kinds={"pytorch"})
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
    from lightly_assets.embedding.quality import knn_of_model
    from lightly_assets.embedding.training import TrainSettings, loss_curve_png, train
    from lightly_assets.embedding.weights import TRAINED_NAME, load_chosen

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
    kwargs = dict(input_size=embedding_model.input_size, device=embedding_model.device, precision="auto")
    embed = dict(batch_size=embedding_model.batch_size, workers=embedding_model.workers)
    with user_errors():
        start = embedding_model.choose(trained=out if config.resume else None, log=context.log.info)
        context.log.info(f"{name}: training starts from {start.describe()}")
        before = knn_of_model(frame_index, data_dir, load_chosen(start, seed=embedding_model.seed, **kwargs), **embed)
        result = train(frame_index, data_dir, out, settings, start=start.path, progress=context.log.info)
        after = knn_of_model(frame_index, data_dir, load_chosen(_trained(out), **kwargs), **embed)
    context.log.info(f"{name}: kNN agreement before {before.describe()}, after {after.describe()}")
    plot = base64.b64encode(loss_curve_png(result.losses)).decode()
    yield Output(
        {"path": str(out), "epochs": result.epochs, "losses": result.losses, "seconds": result.seconds},
        metadata={
            "checkpoint": MetadataValue.path(str(out.resolve())),  # not "path": the IO manager writes that key
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
            **{f"start_{k}": v for k, v in start.metadata().items()},
            "sha256": _trained(out).sha256 or "",
            "knn_before": before.describe(),
            "knn_after": after.describe(),
        },
    )


def _trained(path: Path):  # -> lightly_assets.embedding.weights.Weights
    from lightly_assets.embedding.weights import Weights, sha256_of

    return Weights("trained", path, sha256_of(path))


class EmbeddingsCsvConfig(Config):
    """An optional CSV of extra embedding columns (default: `<dataset>/.lightly/custom_embeddings.csv` if present)."""

    custom_embeddings: str | None = None


@dataset_asset(
    check_specs=checks.EMBEDDINGS_CSV,
    kinds={"csv"},
    metadata={"dagster/column_schema": contract_schema(columns.EMBEDDINGS_CSV)},
)
def embeddings_csv(
    context: AssetExecutionContext,
    config: EmbeddingsCsvConfig,
    storage: StorageResource,
    embeddings,
    frame_index: pd.DataFrame,
):
    """The Lightly embeddings CSV at `<outputs>/<dataset>/embeddings.csv`, written atomically."""
    from lightly_assets.embedding.projection import legend_markdown, write_projection
    from lightly_assets.lightly_csv import (
        EmbeddingsFileError,
        check_header,
        merge_custom_embeddings,
        read_embeddings_csv,
        write_embeddings_csv,
    )

    name = context.partition_key
    out = storage.outputs_for(name)
    custom = _custom_csv(config, storage.dataset_dir(name))
    matrix = embeddings.matrix
    with user_errors():
        if custom is not None:
            matrix = merge_custom_embeddings(embeddings.filenames, matrix, custom, frame_index["filename"].tolist())
        path = write_embeddings_csv(out / "embeddings.csv", embeddings.filenames, matrix, embeddings.labels)
    labels = np.asarray(embeddings.labels)
    names = _label_names(frame_index)
    model = _upstream_metadata(context, "embeddings", "model") or "unknown model"
    title = f"{name}: {len(labels)} samples, {model}"
    with user_errors():
        picture = write_projection(matrix, labels, out / "embeddings_2d.png", names, title)
    yield Output(
        {
            "path": str(path),
            "rows": len(embeddings.filenames),
            "dimension": int(matrix.shape[1]),
            "unreadable": [n for n, _ in embeddings.unreadable],
        },
        metadata={  # not `path`: the IO manager writes its pickle's path under that key after us
            "csv_path": MetadataValue.path(str(path.resolve())),
            "rows": len(embeddings.filenames),
            "dimension": int(matrix.shape[1]),
            "custom_embeddings": str(custom) if custom else "none",
            "bytes": path.stat().st_size,
            "preview": csv_preview(embeddings.filenames, matrix, labels),
            "projection_legend": MetadataValue.md(legend_markdown(labels, names)),
            "projection_2d": MetadataValue.md(projection_markdown(picture, title)),
            "projection_png": MetadataValue.path(str(picture.resolve())),
        },
    )
    yield checks.column_order(check_header(path))
    try:  # judge the file on disk, not the values we meant to write
        csv_labels = read_embeddings_csv(path)[2]
    except EmbeddingsFileError:
        csv_labels = []
    yield checks.label_counts(np.asarray(csv_labels), frame_index, [n for n, _ in embeddings.unreadable])


def _custom_csv(config: EmbeddingsCsvConfig, dataset_dir: Path) -> Path | None:
    if config.custom_embeddings:
        return Path(config.custom_embeddings)
    default = dataset_dir / ".lightly" / "custom_embeddings.csv"
    return default if default.is_file() else None


def _label_names(frame_index: pd.DataFrame) -> dict[int, str]:
    pairs = frame_index[["label", "label_name"]].drop_duplicates("label")
    return {int(k): str(v) for k, v in zip(pairs["label"], pairs["label_name"], strict=True)}


def _upstream_metadata(context: AssetExecutionContext, asset_key: str, key: str) -> str | None:
    """A metadata value of the partition's latest materialization of an upstream asset (e.g. its model)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset_key), asset_partitions=[context.partition_key]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get(key) if materialization else None
    return str(value.value) if value is not None else None


# One writer at a time per target, across runs: set a limit with `dagster instance concurrency set lightly_studio 1`
# (the DuckDB file is also locked by the upload itself, so without a limit concurrent uploads wait on that lock).
STUDIO_POOL = "lightly_studio"


@dataset_asset(
    check_specs=checks.UPLOADED,
    kinds={"lightlystudio", "duckdb", "s3"},
    pool=STUDIO_POOL,
)
def uploaded_dataset(
    context: AssetExecutionContext,
    storage: StorageResource,
    publish_target: PublishTargetResource,
    embeddings_csv: dict,
    frame_index: pd.DataFrame,
    file_index: pd.DataFrame,
):
    """The dataset with its embeddings in LightlyStudio (default) or in a bucket datasource, counted after upload."""
    name = context.partition_key
    embedded = frame_index[~frame_index["filename"].isin(embeddings_csv.get("unreadable", []))]
    with user_errors():
        result = publish_target.publish(
            name,
            storage.dataset_dir(name),
            storage.outputs_for(name).parent,
            file_index,
            embedded,
            Path(embeddings_csv["path"]),
        )
    context.log.info(f"{name}: published to {result['target']}; browse with: {result['browse']}")
    metadata = {k: v for k, v in result.items() if v is not None and k != "location"}
    if result.get("location"):
        metadata["target"] = location(result["location"])  # the DuckDB file or the bucket URL, clickable
    yield Output(result, metadata=metadata)
    yield checks.target_counts_match_csv(result["samples"], result["embeddings"], embeddings_csv["rows"])
