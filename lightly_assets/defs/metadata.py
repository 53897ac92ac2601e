"""Dagster metadata built from our tables: counts, column schema, previews, skip lists, links and pictures.

One row per fact, in the units a user reads (dates, kB/MB), each explained in `FACTS`: an asset's description
ends with the meaning of every metadata row it writes (`facts_markdown`), since Dagster shows a description on the
Overview tab but has no per-entry description.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from lightly_assets.columns import TYPES, description
from lightly_assets.dataset.scan import Skipped

# Metadata key on file_index's materialization (and, prefixed, the sensor's run tag): the dataset folder's
# fingerprint when the run began; the sensor reads it back to skip folders that are already materialized.
FINGERPRINT = "fingerprint"
# Dagster's key for the rows of one partition (TableMetadataSet.partition_row_count; the set is not exported
# from `dagster` in 1.13, its key is the public contract).
PARTITION_ROW_COUNT = "dagster/partition_row_count"
PREVIEW_ROWS = 10

# What each metadata row means, shown in the asset's description (Overview tab).
FACTS: dict[str, str] = {
    PARTITION_ROW_COUNT: "rows of this dataset's table",
    "dagster/size_bytes": "size of the file on disk (shown with its unit)",
    "layout": "how weak labels were derived: `flat` (one label) or `subfolders` (one label per top-level folder)",
    "per_kind": "files (or samples) per kind: image, video",
    "per_label": "files (or samples) per weak label",
    "skipped": "what was left out, each path with its reason (also in the run summary)",
    "preview": f"the first {PREVIEW_ROWS} rows, sizes and dates in human units",
    "folder": "the dataset folder that was read",
    FINGERPRINT: "identity of the folder's files (names, sizes, modification times) when the run began; the sensor "
    "compares it to decide whether the folder changed",
    "frames_per_video": "decoded frames per video (only for datasets with videos)",
    "frame_sampling": "which frames of each video became samples (frame_index config: frame_stride, target_fps)",
    "sampled_frames_per_video": "frames kept as samples per video",
    "index_seconds": "seconds spent indexing (videos are decoded once to count their frames)",
    "samples": "samples embedded (images and video frames)",
    "dimension": "length of each embedding vector",
    "model": "the network that embedded the samples",
    "model_spec": "the model as configured (embedding_model.model / LIGHTLY_ASSETS_MODEL)",
    "preprocessing": "how pixels reach the network: size, crop, normalisation",
    "studio_space": "the LightlyStudio embedding model these vectors are stored under (one per model and weights)",
    "weights": "which weights the network used and where they came from (DESIGN: checkpoint, trained, pretrained, "
    "random)",
    "weights_sha256": "sha256 of the weights file",
    "device": "where the network ran, and in which precision (`precision`)",
    "precision": "numeric precision of the forward pass (bf16 where the hardware has it natively)",
    "engine": "what ran the network: OpenVINO (CPU, converted once and cached) or torch",
    "orientation": "`upright` (EXIF orientation and video rotation applied, as viewers show them) or `raw` pixels",
    "torch_threads": "CPU threads of the forward pass",
    "decode_workers": "threads decoding images and video frames",
    "decode_processes": "processes decoding photos beside a GPU, from 5,000 photos on (0: the threads decode them)",
    "reused": "samples whose vectors came from the cache (unchanged files)",
    "embedded": "samples embedded in this run",
    "seconds": "seconds spent embedding",
    "samples_per_second": "embedding throughput of this run (samples embedded / seconds)",
    "knn_agreement": "share of samples whose 5 nearest neighbours (cosine) vote for their own weak label",
    "knn_agreement_random_network": "the same figure for a random network on the same samples (a baseline)",
    "knn_agreement_chance": "the same figure with shuffled labels (chance, accounts for label imbalance)",
    "knn_samples": "samples the kNN figure was measured on (a seeded sample of large datasets)",
    "knn_k": "neighbours per vote",
    "knn_rule": "how video frames are measured: neighbours from the same video are excluded",
    "executor": "where embedding ran: local, or a Ray cluster",
    "ray_nodes": "Ray nodes that embedded samples",
    "csv": "the Lightly embeddings CSV (filenames, embedding_0 … embedding_{D-1}, labels)",
    "rows": "rows of the CSV",
    "custom_embeddings": "a CSV of extra embedding columns merged in, if any",
    "map": "2-D PCA map of the embeddings, coloured by weak label (thumbnail; `map_full` is the full picture)",
    "map_full": "the full 2-D map with axes and legend ([Show Markdown]); the PNG file is `map_png`",
    "map_png": "the full 2-D map as a PNG file",
    "map_legend": "which colour is which weak label, with sample counts",
    "target": "where the dataset was published: the LightlyStudio database file, or the bucket",
    "dataset": "the dataset's name in the target",
    "videos": "video samples in the target",
    "added": "samples added by this upload (0 when everything was there already)",
    "removed": "samples whose files are gone: tagged `missing-file` in LightlyStudio, never deleted",
    "unmatched": "video frames LightlyStudio decoded differently from us (not matched to a CSV row)",
    "tags": "the curation as LightlyStudio tags (duplicates, selection), versioned: a result that drops members gets "
    "a new name, one that only adds members grows the latest version",
    "files": "the curation's files under the bucket's .lightly/ (duplicates.csv, selection.txt), written or unchanged",
    "open": "links that open each LightlyStudio dataset once the GUI runs (`lightly-assets browse --open`)",
    "browse": "the command that lists these links and starts LightlyStudio's GUI",
    "text_search": "what LightlyStudio's search box can do with these vectors",
    "contact_sheet": "the largest duplicate groups, one row each, members side by side (thumbnail; "
    "`contact_sheet_full` has group numbers and similarities)",
    "contact_sheet_full": "the largest duplicate groups with their numbers, sizes, kinds and each member's cosine to "
    "the first ([Show Markdown]); the PNG file is `contact_sheet_png`",
    "contact_sheet_png": "the full contact sheet as a PNG file",
    "largest_groups": "the largest duplicate groups: size, kinds, lowest cosine to the first member, the first member",
    "groups": "duplicate groups (two or more samples each)",
    "exact_copies": "samples that are exact copies of their group's first member (same file content or frame)",
    "near_copies": "other samples in a group: cosine at or above `similarity` (directly or through a chain); "
    "searched only when the vectors mean something",
    "visual_copies": "other samples in a group found by perceptual hash (no model): resized, re-compressed, slightly "
    "cropped or brightened copies",
    "max_hash_distance": "visual copies: perceptual hashes at most this many of 64 bits apart",
    "diversity_from": "what the diverse selection spreads over: the embeddings, or the perceptual hashes when the "
    "embeddings' similarities mean nothing (random weights)",
    "excluded_issues": "data issues that keep a sample out of the selection",
    "issue_counts": "per issue: samples flagged, their share, and the threshold",
    "samples_with_issues": "samples (or files) with at least one issue",
    "issues_sheet": "the worst samples of each issue, one row per issue (thumbnail; `issues_sheet_full` is labelled)",
    "issues_sheet_full": "the worst samples of each issue with the issue's name and each sample's score "
    "([Show Markdown]); the PNG file is `issues_sheet_png`",
    "issues_sheet_png": "the full sheet of the worst samples per issue as a PNG file",
    "worst_samples": "the rows of data_issues.csv with the highest scores",
    "outlier": "how outliers were found (k-NN distance), or why they were not (random weights, uniform similarities)",
    "thresholds": "where each issue starts (data_issues config; defaults explained in curation/quality.py)",
    "scored_samples": "samples decoded and scored in this run (new or changed files)",
    "reused_stats": "samples whose statistics came from the previous run's cache (unchanged files)",
    "stats_seconds": "seconds spent decoding and measuring the new or changed samples",
    "data_issues_csv": "data_issues.csv (filenames, issue, score)",
    "samples_in_groups": "rows of duplicates.csv: samples in a group, first members included",
    "similarity": "the cosine threshold for near-duplicates",
    "similarity_source": "where the threshold came from: the config, or the default for the model setting",
    "similarity_warning": "why the near-duplicate groups cannot be trusted (random weights, too uniform), or none",
    "search": "how neighbours were searched: exact (faiss flat) or approximate (faiss inverted file)",
    "searched_samples": "samples searched in this run for near or visual copies (new or changed)",
    "reused_samples": "samples whose pairs came from the previous run's state (unchanged vector and hash)",
    "duplicates_csv": "duplicates.csv (filenames, group, kind, similarity)",
    "selected_per_label": "per weak label: samples, how many were selected, and the share",
    "selected": "samples in selection.txt",
    "requested": "samples the config asked for (n_samples, or proportion of the samples)",
    "candidates": "samples that could be selected: those in no duplicate group, and each group's first member",
    "kept_from_last_run": "selected samples kept from the last run's diverse selection (the rest were added as the "
    "farthest from them); 0: selected anew",
    "strategy": "diverse (k-center), typicality, or balance (by weak label)",
    "sampling_engine": "what selected: farthest-point sampling with numpy (diverse), LightlyStudio's sampling engine "
    "lightly_mundig (typicality, balance)",
    "coverage_radius": "largest cosine distance (1 - cosine) from any sample to its nearest selected one",
    "coverage_radius_random": "the same for a seeded random selection of the same size (a baseline)",
    "notes": "what the selection left out or could not do (duplicates left out, more requested than there are)",
    "selection_txt": "selection.txt: one Lightly filename per line, in frame_index order",
    "checkpoint": "the trained checkpoint file",
    "loss_per_epoch": "mean SimCLR loss per epoch, as a plot",
    "losses": "mean SimCLR loss per epoch",
    "epochs": "epochs trained",
    "stopped_by": "why training stopped: the epochs were done, or the time budget ran out",
    "partial_last_epoch": "whether the last epoch was cut short by the time budget",
    "steps": "optimizer steps",
    "images_seen": "images seen, counting both augmented views",
    "images_per_second": "training throughput",
    "unreadable": "samples that could not be decoded for training",
    "started_from": "the weights training started from",
    "sha256": "sha256 of the trained checkpoint",
    "knn_before": "kNN agreement with the weak labels before training",
    "knn_after": "kNN agreement with the weak labels after training",
}


def facts_markdown(keys: Iterable[str]) -> str:
    """The meaning of each metadata row an asset writes, as a Markdown list for its description."""
    lines = [f"- `{k.removeprefix('dagster/')}`: {FACTS[k]}" for k in keys]
    return "**Metadata**\n\n" + "\n".join(lines)


def partition_rows(n: int) -> dict[str, int]:
    """The row count of a partitioned asset, under Dagster's key for one partition."""
    return {PARTITION_ROW_COUNT: int(n)}


def human_bytes(n: float) -> str:
    """A size with its unit (decimal, as file managers show it)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def human_time(ns: int) -> str:
    """A modification time (ns since the epoch) as a UTC date and time."""
    return dt.datetime.fromtimestamp(int(ns) / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_DTYPES = {"int64": "int", "Int64": "int", "float64": "float", "Float64": "float", "object": "string"}


def column_schema(df: pd.DataFrame) -> TableSchema:
    """The `dagster/column_schema` of a DataFrame, so the UI shows the table's columns and types."""
    return TableSchema(
        columns=[
            TableColumn(str(c), _DTYPES.get(str(t), str(t)), description=description(str(c)) or None)
            for c, t in df.dtypes.items()
        ]
    )


def contract_schema(contract: Mapping[str, str]) -> TableSchema:
    """A column contract (columns.py) as the schema an asset declares, so the UI shows it before any run."""
    return TableSchema(
        columns=[TableColumn(name, TYPES.get(name, "string"), description=text) for name, text in contract.items()]
    )


def csv_preview(filenames: Sequence[str], matrix: np.ndarray, labels: np.ndarray, rows: int = 8, dims: int = 4):
    """The first rows of the CSV as a table: filenames, labels and the first embedding columns.

    Only data rows: how many rows the CSV has is the `rows` fact beside it.
    """
    shown = min(dims, matrix.shape[1] if matrix.ndim == 2 else 0)
    names = [f"embedding_{i}" for i in range(shown)]
    schema = TableSchema(
        columns=[TableColumn("filenames", "string"), TableColumn("labels", "int")]
        + [TableColumn(n, "float") for n in names]
    )
    records = [
        TableRecord(
            {"filenames": str(filenames[r]), "labels": int(labels[r])}
            | {n: round(float(matrix[r, i]), 4) for i, n in enumerate(names)}
        )
        for r in range(min(rows, len(filenames)))
    ]
    return MetadataValue.table(records=records, schema=schema)


def location(where: str) -> MetadataValue:
    """A target as a link when it is a URL (bucket), or as a path to copy (DuckDB file)."""
    return MetadataValue.url(where) if "://" in where else MetadataValue.path(where)


def projection_markdown(picture: Path | bytes, title: str) -> str:
    """The PNG inline in Markdown (Dagster's Markdown allows `data:` images)."""
    raw = picture if isinstance(picture, bytes) else picture.read_bytes()
    data = base64.b64encode(raw).decode()
    title = title.replace("[", "(").replace("]", ")")  # alt text: a bracket would end it
    return f"![{title}](data:image/png;base64,{data})"


# Dagster's metadata table renders a Markdown value inline only below this many characters; longer ones hide
# behind "[Show Markdown]" (dagster-webserver 1.13's MetadataEntry renderer).
INLINE_MARKDOWN_LIMIT = 1000


def preview(df: pd.DataFrame, rows: int = PREVIEW_ROWS) -> MetadataValue:
    """The first rows as a Markdown table that says how many there are, sizes and times in human units.

    Columns with no value in the shown rows (frame, pts, time_s of an image dataset) are left out.
    """
    if not len(df):
        return MetadataValue.md("_empty_")
    head = df.head(rows).copy()
    if "size" in head:
        head["size"] = [human_bytes(v) for v in head["size"]]
    if "mtime_ns" in head:
        head = head.rename(columns={"mtime_ns": "modified"})
        head["modified"] = [human_time(v) for v in head["modified"]]
    head = head.loc[:, head.notna().any(axis=0)]
    caption = f"_first {len(head)} of {len(df)} rows_" if len(df) > len(head) else f"_all {len(df)} rows_"
    return markdown_table(head, caption)


def markdown_table(table: pd.DataFrame, caption: str = "") -> MetadataValue:
    """`table` as a Markdown metadata value, below `caption` when there is one."""
    text = table.to_markdown(index=False) or ""  # always text without a buffer; pandas types it `str | None`
    return MetadataValue.md(f"{caption}\n\n{text}" if caption else text)


def counts(series: pd.Series) -> dict[str, int]:
    """Value counts as a plain dict in sorted key order."""
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def count_table(values: pd.Series | Mapping[str, int], key: str, count: str) -> MetadataValue:
    """Counts as a two-column table (`key`, `count`), in sorted key order: the UI shows a table, not JSON."""
    found = counts(values) if isinstance(values, pd.Series) else {str(k): int(v) for k, v in values.items()}
    schema = TableSchema(columns=[TableColumn(key, "string"), TableColumn(count, "int")])
    return MetadataValue.table(records=[TableRecord({key: k, count: v}) for k, v in found.items()], schema=schema)


def skipped(items: Iterable[Skipped], limit: int = 1000) -> MetadataValue:
    """What was left out, one fact: each path with its reason (`path`, `reason`), for the UI and the run summary."""
    return MetadataValue.json([{"path": s.path, "reason": s.reason} for s in list(items)[:limit]])


def unreadable_by_source(unreadable: Iterable[tuple[str, str]], samples: pd.DataFrame) -> list[Skipped]:
    """Samples that could not be embedded, one entry per file: a video's frames share one line."""
    source_of = dict(zip(samples["filename"], samples["source"], strict=True))
    grouped: dict[str, list[str]] = {}
    for name, reason in unreadable:
        grouped.setdefault(str(source_of.get(name, name)), []).append(reason)
    return [
        Skipped(source, reasons[0] if len(reasons) == 1 else f"{len(reasons)} frames: {reasons[0]}")
        for source, reasons in grouped.items()
    ]


def weights_fact(weights) -> str:  # weights: lightly_assets.embedding.weights.Weights
    """Which weights, from where, in one line: the one fact the UI shows (the sha256 is a row of its own)."""
    if weights.random:
        return f"RANDOM ({weights.note or 'seeded initialisation'})"
    if weights.source == "pretrained":
        return f"pretrained: Lightly's {weights.zoo_key} from {weights.url}, cached at {weights.path}"
    if weights.source == "trained":
        return f"trained on this dataset: {weights.path}"
    return f"{weights.source}: {weights.path}"
