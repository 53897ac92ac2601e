"""Dagster metadata built from our tables: counts, column schema, previews, skip lists, links and pictures."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from lightly_assets.columns import description
from lightly_assets.dataset.scan import Skipped

# Metadata key on file_index's materialization (and, prefixed, the sensor's run tag): the dataset folder's
# fingerprint when the run began; the sensor reads it back to skip folders that are already materialized.
FINGERPRINT = "fingerprint"

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
    return TableSchema(columns=[TableColumn(name, "", description=text) for name, text in contract.items()])


def csv_preview(filenames: Sequence[str], matrix: np.ndarray, labels: np.ndarray, rows: int = 8, dims: int = 4):
    """The first rows of the CSV as a table: filenames, labels and the first embedding columns."""
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


def projection_markdown(picture: Path, title: str) -> str:
    """The PNG inline in Markdown (Dagster's Markdown allows `data:` images)."""
    data = base64.b64encode(picture.read_bytes()).decode()
    title = title.replace("[", "(").replace("]", ")")  # alt text: a bracket would end it
    return f"![{title}: 2-D PCA map of the embeddings, coloured by weak label](data:image/png;base64,{data})"


def preview(df: pd.DataFrame, rows: int = 10) -> MetadataValue:
    """The first rows as a Markdown table."""
    return MetadataValue.md(df.head(rows).to_markdown(index=False) if len(df) else "_empty_")


def counts(series: pd.Series) -> dict[str, int]:
    """Value counts as a plain dict in sorted key order (JSON metadata)."""
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def skipped_table(skipped: Iterable[Skipped], limit: int = 200) -> MetadataValue:
    """Every skipped path with its reason (up to `limit` rows, then a count of the rest)."""
    items = list(skipped)
    if not items:
        return MetadataValue.md("_nothing skipped_")
    lines = ["| path | reason |", "|---|---|"]
    lines += [f"| `{_cell(s.path)}` | {_cell(s.reason)} |" for s in items[:limit]]
    if len(items) > limit:
        lines.append(f"| … | {len(items) - limit} more |")
    return MetadataValue.md("\n".join(lines))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def skipped_list(skipped: Iterable[Skipped], limit: int = 1000) -> MetadataValue:
    """The same list as JSON (`path`, `reason`), for tools and the CLI summary."""
    return MetadataValue.json([{"path": s.path, "reason": s.reason} for s in list(skipped)[:limit]])


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
