"""The asset chain, one partition per dataset: file_index, frame_index, embeddings, embeddings_csv, uploaded_dataset.

Each asset calls one domain module and turns its result into an output, metadata and check results.
"""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from lightly_assets.defs import checks
from lightly_assets.defs.metadata import column_schema, counts, preview, skipped_table
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.defs.resources import EmbeddingModelResource, PublishTargetResource, StorageResource
from lightly_assets.errors import LightlyAssetsError
from lightly_assets.progress import Progress

GROUP = "lightly"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Our own errors (bad input, bad checkpoint, unreachable target) become a short Dagster Failure."""
    try:
        yield
    except LightlyAssetsError as exc:
        raise Failure(description=str(exc)) from None
    except OSError as exc:  # unwritable output folder, disk full: name the path and the reason
        where = exc.filename or "output"
        raise Failure(description=f"{where}: {exc.strerror or exc}") from None


class FileIndexConfig(Config):
    """`verify_images` opens every image header, so unreadable files are reported before embedding.

    Off by default: it costs about 100x the listing on big folders, and embedding reports them anyway.
    """

    verify_images: bool = False


@asset(partitions_def=datasets_partitions, group_name=GROUP, check_specs=checks.FILE_INDEX)
def file_index(context: AssetExecutionContext, config: FileIndexConfig, storage: StorageResource):
    """Every usable image and video of the dataset with its weak label, in Lightly's order."""
    from lightly_assets.dataset.scan import require_usable, scan_dataset

    folder = storage.dataset_dir(context.partition_key)
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
            "preview": preview(files),
            "folder": MetadataValue.path(str(folder.resolve())),
        },
    )
    yield checks.no_skipped_files(result.skipped)


@asset(partitions_def=datasets_partitions, group_name=GROUP, check_specs=checks.FRAME_INDEX)
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
            "index_seconds": round(time.perf_counter() - start, 3),
            "preview": preview(samples),
        },
    )
    yield checks.samples_match_files(file_index, samples, index.skipped)
    yield checks.all_videos_indexed(index.skipped)


@asset(partitions_def=datasets_partitions, group_name=GROUP, check_specs=checks.EMBEDDINGS)
def embeddings(
    context: AssetExecutionContext,
    storage: StorageResource,
    embedding_model: EmbeddingModelResource,
    frame_index: pd.DataFrame,
):
    """One float32 vector per sample; only new or changed samples are embedded, the rest come from the cache."""
    from lightly_assets.embedding.pipeline import EmbeddingCache, EmbeddingError, embed_samples

    name = context.partition_key
    with user_errors():
        model = embedding_model.load()
        if model.random_init:
            context.log.warning(
                f"{name}: no checkpoint given, embedding with RANDOM seeded weights ({model.description})"
            )
        cache = EmbeddingCache(storage.outputs_for(name) / "embedding_cache.npz")
        result = embed_samples(
            frame_index,
            storage.dataset_dir(name),
            model,
            batch_size=embedding_model.batch_size,
            workers=embedding_model.workers,
            cache=cache,
            progress=Progress("embedding", context.log.info),
        )
    for sample, reason in result.unreadable:
        context.log.warning(f"could not embed {sample}: {reason}")
    if not result.filenames:
        with user_errors():
            detail = "; ".join(f"{n}: {r}" for n, r in result.unreadable[:5])
            raise EmbeddingError(f"{storage.dataset_dir(name)}: no sample could be decoded ({detail})")
    yield Output(
        result,
        metadata={
            "samples": len(result.filenames),
            "dimension": int(result.matrix.shape[1]) if result.matrix.ndim == 2 else 0,
            "model": model.description,
            "checkpoint": model.checkpoint or "none (RANDOM seeded initialisation)",
            "random_init": model.random_init,
            "device": str(model.device),
            "precision": model.precision,
            "torch_threads": model.threads,
            "decode_workers": result.workers,
            "reused": result.reused,
            "embedded": len(result.filenames) - result.reused,
            "unreadable": len(result.unreadable),
            "seconds": round(result.seconds, 3),
            "samples_per_second": round(result.samples_per_s, 1),
        },
    )
    yield checks.finite_values(result.matrix, result.filenames)
    yield checks.all_samples_embedded(result.unreadable, len(frame_index))
    yield checks.trained_weights(model.random_init, model.description)


class EmbeddingsCsvConfig(Config):
    """An optional CSV of extra embedding columns (default: `<dataset>/.lightly/custom_embeddings.csv` if present)."""

    custom_embeddings: str | None = None


@asset(partitions_def=datasets_partitions, group_name=GROUP, check_specs=checks.EMBEDDINGS_CSV)
def embeddings_csv(
    context: AssetExecutionContext,
    config: EmbeddingsCsvConfig,
    storage: StorageResource,
    embeddings,
    frame_index: pd.DataFrame,
):
    """The Lightly embeddings CSV at `<outputs>/<dataset>/embeddings.csv`, written atomically."""
    from lightly_assets.embedding.projection import write_projection
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
    with user_errors():
        picture = write_projection(matrix, np.asarray(embeddings.labels), out / "embeddings_2d.png")
    yield Output(
        {
            "path": str(path),
            "rows": len(embeddings.filenames),
            "dimension": int(matrix.shape[1]),
            "unreadable": [n for n, _ in embeddings.unreadable],
        },
        metadata={
            "path": MetadataValue.path(str(path.resolve())),
            "rows": len(embeddings.filenames),
            "dimension": int(matrix.shape[1]),
            "custom_embeddings": str(custom) if custom else "none",
            "bytes": path.stat().st_size,
            "projection_2d": MetadataValue.md(_image_md(picture)),
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


def _image_md(path: Path) -> str:
    import base64

    data = base64.b64encode(path.read_bytes()).decode()
    return f"PCA of the embeddings, coloured by weak label:\n\n![projection](data:image/png;base64,{data})"


@asset(partitions_def=datasets_partitions, group_name=GROUP, check_specs=checks.UPLOADED)
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
    yield Output(result, metadata={k: v for k, v in result.items() if v is not None})
    yield checks.target_counts_match_csv(result["samples"], result["embeddings"], embeddings_csv["rows"])
