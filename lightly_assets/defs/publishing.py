"""Writing and publishing: `embeddings_csv` (the Lightly CSV) and `uploaded_dataset` (LightlyStudio or a bucket)."""

from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    MetadataValue,
    Output,
)

from lightly_assets import columns
from lightly_assets.defs import checks
from lightly_assets.defs.common import dataset_asset, user_errors
from lightly_assets.defs.metadata import (
    contract_schema,
    csv_preview,
    location,
    projection_markdown,
)
from lightly_assets.defs.resources import Curation, PublishTargetResource, StorageResource


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


def curation_to_publish(duplicates: dict, selection: dict) -> Curation:
    """The tags and files that publish `duplicates` and `selection` (as written on disk)."""
    return Curation(
        tags={
            "duplicates": duplicates["table"]["filenames"].tolist(),
            f"selection-{selection['strategy']}": selection["filenames"],
        },
        files={
            "duplicates.csv": Path(duplicates["path"]).read_bytes(),
            "selection.txt": Path(selection["path"]).read_bytes(),
        },
    )


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
    duplicates: dict,
    selection: dict,
):
    """The dataset with its embeddings in LightlyStudio (default) or in a bucket datasource, counted after upload;
    the duplicates and the selection as versioned LightlyStudio tags, or as files under the bucket's `.lightly/`."""
    name = context.partition_key
    embedded = frame_index[~frame_index["filename"].isin(embeddings_csv.get("unreadable", []))]
    space = _upstream_metadata(context, "embeddings", "studio_space")  # one LightlyStudio embedding model per model
    with user_errors():
        result = publish_target.publish(
            name,
            storage.dataset_dir(name),
            storage.outputs_for(name).parent,
            file_index,
            embedded,
            Path(embeddings_csv["path"]),
            space=space if space and space != "none" else None,
            curation=curation_to_publish(duplicates, selection),
        )
    context.log.info(f"{name}: published to {result['target']}; browse with: {result['browse']}")
    metadata = {k: v for k, v in result.items() if v is not None and k != "location"}
    if result.get("location"):
        metadata["target"] = location(result["location"])  # the DuckDB file or the bucket URL, clickable
    yield Output(result, metadata=metadata)
    yield checks.target_counts_match_csv(result["samples"], result["embeddings"], embeddings_csv["rows"])
