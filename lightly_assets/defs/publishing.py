"""Writing and publishing: `embeddings_csv` (the Lightly CSV), `uploaded_dataset` (LightlyStudio or a bucket), and
`published_curation` (the curation's tags and files, brought to the published dataset).

The five-asset chain `file_index → frame_index → embeddings → embeddings_csv → uploaded_dataset` stands alone:
curation reads the chain's outputs and feeds nothing in it, and reaches the target through `published_curation`.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
)

from lightly_assets import columns
from lightly_assets.dataset.keys import same_names
from lightly_assets.defs import checks
from lightly_assets.defs.common import dataset_asset, latest_materialization, user_errors
from lightly_assets.defs.metadata import (
    PARTITION_ROW_COUNT,
    contract_schema,
    csv_preview,
    location,
    partition_rows,
    projection_markdown,
)
from lightly_assets.defs.resources import Curation, PublishTargetResource, StorageResource
from lightly_assets.embedding.projection import legend_markdown, write_projections
from lightly_assets.lightly_csv import (
    EmbeddingsFileError,
    check_header,
    merge_custom_embeddings,
    read_embeddings_csv,
    write_embeddings_csv,
)


class EmbeddingsCsvConfig(Config):
    """An optional CSV of extra embedding columns (default: `<dataset>/.lightly/custom_embeddings.csv` if present)."""

    custom_embeddings: str | None = None


CSV_FACTS = ["csv", "rows", "dimension", "custom_embeddings", "dagster/size_bytes", "preview", "map", "map_legend",
             "map_full", "map_png"]  # fmt: skip


@dataset_asset(
    facts=CSV_FACTS,
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
) -> MaterializeResult:
    """The Lightly embeddings CSV at `<outputs>/<dataset>/embeddings.csv`, written atomically.

    The file is the asset: nothing is pickled, and `uploaded_dataset` finds it through the storage resource.
    """
    name = context.partition_key
    out = storage.outputs_for(name)
    custom = _custom_csv(config, storage.dataset_dir(name))
    matrix = embeddings.matrix
    with user_errors():
        if custom is not None:
            matrix = merge_custom_embeddings(embeddings.filenames, matrix, custom, frame_index["filename"].tolist())
        path = write_embeddings_csv(csv_path(storage, name), embeddings.filenames, matrix, embeddings.labels)
    labels = np.asarray(embeddings.labels)
    names = _label_names(frame_index)
    title = f"{name}: {len(labels)} samples, {embeddings.model or 'unknown model'}"
    with user_errors():
        picture, thumbnail = write_projections(matrix, labels, out / "embeddings_2d.png", names, title)
    try:  # judge the file on disk, not the values we meant to write
        csv_labels = read_embeddings_csv(path)[2]
    except EmbeddingsFileError:
        csv_labels = []
    return MaterializeResult(
        metadata={
            "csv": MetadataValue.path(str(path.resolve())),
            "rows": len(embeddings.filenames),
            "dimension": int(matrix.shape[1]),
            "custom_embeddings": str(custom) if custom else "none",
            "dagster/size_bytes": path.stat().st_size,
            "preview": csv_preview(embeddings.filenames, matrix, labels),
            "map": MetadataValue.md(projection_markdown(thumbnail, "2-D map")),
            "map_legend": MetadataValue.md(legend_markdown(labels, names)),
            "map_full": MetadataValue.md(projection_markdown(picture, f"{title}: 2-D PCA map, by weak label")),
            "map_png": MetadataValue.path(str(picture.resolve())),
        },
        check_results=[
            checks.column_order(check_header(path)),
            checks.label_counts(np.asarray(csv_labels), frame_index, [n for n, _ in embeddings.unreadable]),
        ],
    )


def csv_path(storage: StorageResource, name: str) -> Path:
    """Where `embeddings_csv` writes the dataset's CSV (DESIGN: `<outputs>/D/embeddings.csv`)."""
    return storage.outputs_for(name) / "embeddings.csv"


def _custom_csv(config: EmbeddingsCsvConfig, dataset_dir: Path) -> Path | None:
    if config.custom_embeddings:
        return Path(config.custom_embeddings)
    default = dataset_dir / ".lightly" / "custom_embeddings.csv"
    return default if default.is_file() else None


def _label_names(frame_index: pd.DataFrame) -> dict[int, str]:
    pairs = frame_index.loc[:, ["label", "label_name"]].drop_duplicates("label")
    return {int(k): str(v) for k, v in zip(pairs["label"], pairs["label_name"], strict=True)}


def require_file(path: Path, asset: str, dataset: str) -> None:
    """An upstream file that was never written stops the step with one line naming the asset to materialize."""
    if not path.is_file():
        raise Failure(description=f"{dataset}: {path} does not exist: materialize {asset} for {dataset} first")


def curation_to_publish(
    duplicates: dict, selection: dict, data_issues: dict | None = None, frame_index: pd.DataFrame | None = None
) -> Curation:
    """The tags and files that publish `duplicates`, `selection` and `data_issues` (as written on disk)."""
    tags = {
        "duplicates": duplicates["table"]["filenames"].tolist(),
        f"selection-{selection['strategy']}": selection["filenames"],
    }
    files = {
        "duplicates.csv": Path(duplicates["path"]).read_bytes(),
        "selection.txt": Path(selection["path"]).read_bytes(),
    }
    if data_issues is not None:
        tags |= issue_tags(data_issues["table"], frame_index)
        files["data_issues.csv"] = Path(data_issues["path"]).read_bytes()
    return Curation(tags=tags, files=files)


def issue_tags(table: pd.DataFrame, frame_index: pd.DataFrame | None) -> dict[str, list[str]]:
    """`issue-<name>` per issue found, its samples as members; a row naming a video (its shape) tags every frame."""
    frames: dict[str, list[str]] = {}
    if frame_index is not None:
        videos = frame_index[frame_index["kind"].astype(str) == "video"]
        frames = {str(s): rows["filename"].astype(str).tolist() for s, rows in videos.groupby("source", sort=False)}
    out: dict[str, list[str]] = {}
    for issue, rows in table.groupby("issue", sort=True):
        names = [n for name in rows["filenames"].astype(str) for n in frames.get(name, [name])]
        out[f"issue-{issue}"] = list(dict.fromkeys(names))
    return out


# One writer at a time per target, across runs: set a limit with `dagster instance concurrency set lightly_studio 1`
# (the DuckDB file is also locked by the upload itself, so without a limit concurrent uploads wait on that lock).
STUDIO_POOL = "lightly_studio"


def target_kinds(target: str = "studio", bucket_url: str | None = None, studio_database: bool = False) -> set[str]:
    """The badges of `uploaded_dataset` for a target; `definitions.py` gives the one its environment configures.

    Kinds are static per asset definition, so they follow the environment at load time (restart `dagster dev`
    after changing the target); run config that switches the target does not change them.
    """
    if target == "bucket":
        scheme = (bucket_url or "s3://").split("://", 1)[0]
        return {{"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}.get(scheme, "file")}
    return {"lightlystudio", "postgres" if studio_database else "duckdb"}


UPLOAD_FACTS = ["target", "dataset", PARTITION_ROW_COUNT, "videos", "added", "removed", "unmatched", "open", "browse",
                "text_search"]  # fmt: skip


@dataset_asset(
    facts=UPLOAD_FACTS,
    check_specs=checks.UPLOADED,
    kinds=target_kinds(),
    pool=STUDIO_POOL,
    deps=["embeddings_csv"],  # the CSV file, found through the storage resource
)
def uploaded_dataset(
    context: AssetExecutionContext,
    storage: StorageResource,
    publish_target: PublishTargetResource,
    embeddings,
    frame_index: pd.DataFrame,
    file_index: pd.DataFrame,
) -> MaterializeResult:
    """The dataset with its embeddings in LightlyStudio (default) or in a bucket datasource, counted after upload.
    Curation already published there is kept; `published_curation` brings new results.

    `lightly-assets browse DATASET` prints the link of each LightlyStudio dataset and `--open` starts the GUI.
    """
    name = context.partition_key
    path = csv_path(storage, name)
    require_file(path, "embeddings_csv", name)
    with user_errors():
        in_csv = read_embeddings_csv(path)[0]  # samples that could not be decoded are not in the CSV
        if not same_names(frame_index["filename"].to_numpy(dtype=object), in_csv):
            frame_index = frame_index.loc[frame_index["filename"].isin(in_csv)]
        embedded = frame_index
        result = publish_target.publish(
            name,
            storage.dataset_dir(name),
            storage.outputs_for(name).parent,
            file_index,
            embedded,
            path,
            space=embeddings.space,
        )
    context.log.info(f"{name}: published to {result['target']}; browse with: {result['browse']}")
    return MaterializeResult(
        metadata=upload_metadata(result),
        check_results=[checks.target_counts_match_csv(result["samples"], result["embeddings"], len(in_csv))],
    )


def upload_metadata(result: dict) -> dict:
    """One row per fact of the upload: where, what, how many, and the links into LightlyStudio."""
    metadata: dict = {
        "target": location(result["location"]) if result.get("location") else result["target"],
        "dataset": result["dataset"],
        **partition_rows(result["samples"]),
    }
    for key in ("videos", "added", "removed", "unmatched"):
        if result.get(key):
            metadata[key] = result[key]
    if result.get("urls"):
        metadata["open"] = MetadataValue.md(result["urls"])
    metadata["browse"] = result["browse"]
    if result.get("text_search"):
        metadata["text_search"] = result["text_search"]
    return metadata


CURATION_FACTS = ["target", "dataset", "tags", "files"]


@dataset_asset(facts=CURATION_FACTS, kinds=target_kinds(), pool=STUDIO_POOL, deps=["uploaded_dataset"])
def published_curation(
    context: AssetExecutionContext,
    storage: StorageResource,
    publish_target: PublishTargetResource,
    frame_index: pd.DataFrame,
    duplicates: dict,
    selection: dict,
    data_issues: dict,
) -> MaterializeResult:
    """The curation in the published dataset: the duplicates, the selection and the data issues as versioned
    LightlyStudio tags (`duplicates-v<k>`, `selection-<strategy>-v<k>`, `issue-<name>-v<k>`), or as files under
    the bucket's `.lightly/` (duplicates.csv, selection.txt, data_issues.csv).

    Beside the chain, never in it: `uploaded_dataset` publishes without curation and keeps what this wrote.
    """
    name = context.partition_key
    if latest_materialization(context.instance, "uploaded_dataset", name) is None:
        raise Failure(description=f"{name}: the dataset is not published yet: materialize uploaded_dataset first")
    with user_errors():
        result = publish_target.publish_curation(
            name,
            storage.dataset_dir(name),
            storage.outputs_for(name).parent,
            frame_index,
            curation_to_publish(duplicates, selection, data_issues, frame_index),
        )
    metadata: dict = {
        "target": location(result["location"]) if result.get("location") else result["target"],
        "dataset": result["dataset"],
    }
    if result["tags"]:
        metadata["tags"] = "; ".join(f"{base}: {names}" for base, names in result["tags"].items())
    if result["files"]:
        metadata["files"] = "; ".join(f"{file}: {state}" for file, state in result["files"].items())
    context.log.info(f"{name}: curation published to {result['target']}")
    return MaterializeResult(metadata=metadata)
