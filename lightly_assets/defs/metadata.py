"""Dagster metadata built from our tables: counts, column schema, previews and skip lists."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

from lightly_assets.dataset.scan import Skipped

_DTYPES = {"int64": "int", "Int64": "int", "float64": "float", "Float64": "float", "object": "string"}


def column_schema(df: pd.DataFrame) -> TableSchema:
    """The `dagster/column_schema` of a DataFrame, so the UI shows the table's columns and types."""
    return TableSchema(columns=[TableColumn(str(c), _DTYPES.get(str(t), str(t))) for c, t in df.dtypes.items()])


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
