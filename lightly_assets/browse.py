"""`lightly-assets browse [DATASET ...] [--open]`: the LightlyStudio link of each published dataset, and its GUI.

The links come from the latest `uploaded_dataset` materialization of each dataset on the Dagster instance, so
they are there while the GUI holds the database (a DuckDB file has one user at a time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from lightly_assets.publish.studio.browse import text_search_note

UPLOADED = AssetKey("uploaded_dataset")
_LINK = re.compile(r"^- \[(.*)\]\((\S+)\)$", re.MULTILINE)
_ORIGIN = re.compile(r"^https?://[^/]+")


@dataclass
class Published:
    """One of our datasets as the instance last saw it in its target."""

    dataset: str
    target: str
    urls: dict[str, str] = field(default_factory=dict)  # LightlyStudio dataset name → URL
    search: str = ""  # what text search can do for this dataset's vectors


def published(instance: DagsterInstance, names: Iterable[str]) -> list[Published]:
    """The datasets among `names` that have been uploaded, with their links."""
    found: list[Published] = []
    for name in names:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=UPLOADED, asset_partitions=[name]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None:
            continue
        meta = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        urls = dict(_LINK.findall(str(meta.get("open") or "")))
        search = str(meta.get("text_search") or text_search_note())
        found.append(Published(name, str(meta.get("target", "")), urls, search))
    return found


def rebase(url: str, base: str) -> str:
    """The same page on another host or port (the links are recorded for LightlyStudio's default address)."""
    return _ORIGIN.sub(base.rstrip("/"), url)


def render(items: list[Published], base: str, gui_command: str, opening: bool) -> str:
    """What the command prints: a link per LightlyStudio dataset, how to serve them, what search can do.

    The search note is long and usually the same for every dataset: it is printed once, naming the datasets it
    is about only when they differ.
    """
    lines: list[str] = []
    notes: dict[str, list[str]] = {}
    for item in items:
        lines.append(f"{item.dataset}  ({item.target})")
        lines += [f"  {name}: {rebase(url, base)}" for name, url in item.urls.items()]
        if not item.urls:
            lines.append("  (published to a bucket: no LightlyStudio link)")
        else:
            notes.setdefault(item.search, []).append(item.dataset)
    for note, datasets in notes.items():
        lines.append(f"search: {note}" if len(notes) == 1 else f"search in {', '.join(datasets)}: {note}")
    if opening:
        lines.append(f"starting LightlyStudio on {base} (Ctrl+C stops it)")
    else:
        lines.append(f"the links work while LightlyStudio runs: lightly-assets browse --open  (or: {gui_command})")
    return "\n".join(lines)


def studio_database(db_file: str | None, db_url_env: str | None, outputs_root: Path) -> tuple[Path | None, str | None]:
    """The database `uploaded_dataset` writes to, as PublishTargetResource picks it."""
    if db_url_env:
        return None, db_url_env
    return Path(db_file or outputs_root / "lightly_studio.db").resolve(), None
