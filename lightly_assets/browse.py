"""`lightly-assets browse [DATASET ...] [--open]`: the LightlyStudio link of each published dataset, and its GUI.

The links come from the latest `uploaded_dataset` materialization of each dataset on the Dagster instance, so
they are there while the GUI holds the database (a DuckDB file has one user at a time).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, build_resources

from lightly_assets.definitions import resources
from lightly_assets.embedding.weights import TRAINED_NAME
from lightly_assets.errors import LightlyAssetsError, first_line
from lightly_assets.publish.studio.browse import text_search_note
from lightly_assets.publish.studio.embedder import space_for
from lightly_assets.publish.studio.search import is_ours, register

UPLOADED = AssetKey("uploaded_dataset")
EMBEDDINGS = AssetKey("embeddings")
_LINK = re.compile(r"^- \[(.*)\]\((\S+)\)$", re.MULTILINE)
_ORIGIN = re.compile(r"^https?://[^/]+")


@dataclass
class Published:
    """One of our datasets as the instance last saw it in its target."""

    dataset: str
    target: str
    urls: dict[str, str] = field(default_factory=dict)  # LightlyStudio dataset name → URL
    search: str = ""  # what search can do for this dataset's vectors
    space: str = ""  # the LightlyStudio embedding space its vectors are in ("" when not recorded)


def published(instance: DagsterInstance, names: Iterable[str]) -> list[Published]:
    """The datasets among `names` that have been uploaded, with their links."""
    found: list[Published] = []
    for name in names:
        meta = _latest_metadata(instance, UPLOADED, name)
        if meta is None:
            continue
        urls = dict(_LINK.findall(str(meta.get("open") or "")))
        search = str(meta.get("text_search") or text_search_note())
        space = str((_latest_metadata(instance, EMBEDDINGS, name) or {}).get("studio_space") or "")
        found.append(Published(name, str(meta.get("target", "")), urls, search, space))
    return found


def _latest_metadata(instance: DagsterInstance, key: AssetKey, partition: str) -> dict | None:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), 1)
    materialization = records.records[0].asset_materialization if records.records else None
    if materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def enable_search(items: list[Published], output_dir: Path) -> None:
    """Make LightlyStudio's search work in the GUI about to start in this process, and say per dataset what it
    can do: the model configured now is loaded and registered for each of our spaces whose vectors it made.

    A space LightlyStudio knows (MobileCLIP) keeps its own embedder; a model that now gives another space (a
    different LIGHTLY_ASSETS_MODEL or checkpoint than the run's) is not registered, and the line says so.
    """
    done: dict[str, str] = {}
    for item in items:
        if not item.urls or not item.space or not is_ours(item.space):
            continue
        if item.space in done:
            item.search = done[item.space]
            continue
        try:
            with build_resources({"embedding_model": resources()["embedding_model"]}) as built:
                resource = built.embedding_model
            with warnings.catch_warnings():  # torch.jit's deprecation notes while the engine converts the model
                warnings.simplefilter("ignore", FutureWarning)
                model = resource.load(trained=output_dir / item.dataset / TRAINED_NAME)
            weights = resource.weights
            now = space_for(model.spec, weights.sha256 if weights else None, model.dim, model.space_key)
        except LightlyAssetsError as exc:
            item.search = f"not available: the model could not be loaded ({first_line(exc)})"
            continue
        if now != item.space:
            item.search = (
                f"not available: the vectors are in LightlyStudio's space {item.space}, the model configured now "
                f"({model.description}) gives {now}; set LIGHTLY_ASSETS_MODEL and LIGHTLY_ASSETS_CHECKPOINT as "
                "for the run"
            )
        else:
            item.search = register(model, item.space)
        done[item.space] = item.search


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
