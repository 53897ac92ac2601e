"""Curation: `duplicates` (exact, visual and near-duplicate groups) and `selection` (a subset to label, no two
duplicates, no sample with an excluded issue).

Both run in the main job after `embeddings` and `data_issues` (its perceptual hashes and issues), so the dataset
sensor re-curates whenever a folder changes. The work is done by `lightly_assets.curation`.
"""

from typing import Any, cast

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
)
from pydantic import Field

from lightly_assets import columns
from lightly_assets.curation.contact_sheet import write_contact_sheet
from lightly_assets.curation.duplicates import (
    Hashes,
    UnitVectors,
    content_keys,
    find_duplicates,
    unit_rows,
    write_duplicates_csv,
)
from lightly_assets.curation.duplicates_state import State
from lightly_assets.curation.errors import CurationError
from lightly_assets.curation.phash import DEFAULT_MAX_DISTANCE, check_max_distance
from lightly_assets.curation.quality import ISSUES
from lightly_assets.curation.selection import check_strategy, hash_features, requested_count, write_selection
from lightly_assets.curation.selection_state import Request, SelectionState, choose
from lightly_assets.curation.thresholds import check_similarity, default_similarity, uniformity_warning
from lightly_assets.defs import checks
from lightly_assets.defs.common import dataset_asset, latest_materialization, user_errors
from lightly_assets.defs.metadata import contract_schema, markdown_table, projection_markdown
from lightly_assets.defs.resources import EmbeddingModelResource, StorageResource

GROUPS_LISTED = 10
ENGINES = ("lightly_mundig (LightlyStudio's sampling engine)", "farthest-point sampling with numpy (exact)")


class DuplicatesConfig(Config):
    """Near-duplicates are pairs at or above `similarity` (cosine; unset: the model's default, thresholds.py);
    visual copies are perceptual hashes at most `max_hash_distance` of 64 bits apart (phash.py)."""

    similarity: float | None = Field(
        default=None, description="Cosine threshold in (0, 1]; unset: the default for the model setting."
    )
    max_hash_distance: int = Field(
        default=DEFAULT_MAX_DISTANCE, description="Visual copies: hashes at most this many of 64 bits apart."
    )


class SelectionConfig(Config):
    """How many samples to select (`n_samples`, or `proportion` of the samples), how, and which issues rule a
    sample out (`exclude_issues`, from data_issues)."""

    n_samples: int | None = Field(default=None, description="Samples to select; unset: `proportion`.")
    proportion: float | None = Field(default=None, description="Share of the samples (unset with n_samples: 0.1).")
    strategy: str = Field(default="diverse", description="`diverse` (k-center), `typicality` or `balance`.")
    exclude_issues: list[str] = Field(
        default=["broken", "low_information"], description="Samples with these data issues are never selected."
    )
    keep_selected: bool = Field(
        default=True,
        description="diverse: keep what the last run selected (still candidates, unchanged) and add the samples "
        "farthest from it; false: select anew.",
    )


def embedding_metadata(context: AssetExecutionContext) -> dict[str, Any]:
    """The metadata of this partition's latest `embeddings` (model, weights' sha256, random_init)."""
    record = latest_materialization(context.instance, "embeddings", context.partition_key)
    materialization = record.asset_materialization if record else None
    return {k: getattr(v, "value", v) for k, v in (materialization.metadata if materialization else {}).items()}


def random_weights(upstream: dict[str, Any]) -> bool:
    """Whether the embeddings came from a seeded random initialisation (their `weights` row says RANDOM)."""
    return bool(upstream.get("random_init")) or str(upstream.get("weights", "")).startswith("RANDOM")


def embedded_samples(embeddings, frame_index: pd.DataFrame) -> pd.DataFrame:
    """The frame_index rows that were embedded, in the embeddings' order."""
    indices = np.asarray(getattr(embeddings, "indices", []), dtype=np.int64)
    if len(indices) != len(embeddings.filenames):
        return frame_index.set_index("filename").loc[embeddings.filenames].reset_index()
    return frame_index.iloc[indices].reset_index(drop=True)


def _groups_table(duplicates) -> MetadataValue:
    """The largest groups as a Markdown table that says how many of how many it shows."""
    largest = duplicates.largest(GROUPS_LISTED)
    if not largest:
        return MetadataValue.md("_no duplicate groups_")
    table = pd.DataFrame(
        {
            "group": int(g["group"].iloc[0]),
            "samples": len(g),
            "kinds": "/".join(sorted(set(g["kind"]))),
            "lowest similarity": round(float(g["similarity"].min()), 4),
            "first member (kept by the selection)": str(g["filenames"].iloc[0]),
        }
        for g in largest
    )
    caption = f"_first {len(largest)} of {duplicates.groups} groups, largest first_"
    return markdown_table(table, caption)


DUPLICATES_FACTS = [
    "contact_sheet", "contact_sheet_full", "contact_sheet_png", "largest_groups", "groups", "exact_copies",
    "visual_copies", "near_copies", "samples_in_groups", "samples", "similarity", "similarity_source",
    "similarity_warning", "max_hash_distance", "search",
    "searched_samples", "reused_samples", "duplicates_csv",
]  # fmt: skip
SELECTION_FACTS = [
    "selected_per_label", "selected", "samples", "requested", "candidates", "kept_from_last_run", "strategy",
    "diversity_from", "excluded_issues", "sampling_engine", "coverage_radius", "coverage_radius_random", "notes",
    "selection_txt",
]  # fmt: skip


@dataset_asset(
    facts=DUPLICATES_FACTS,
    check_specs=checks.DUPLICATES,
    kinds={"csv", "faiss"},
    metadata={"dagster/column_schema": contract_schema(columns.DUPLICATES_CSV)},
)
def duplicates(
    context: AssetExecutionContext,
    config: DuplicatesConfig,
    storage: StorageResource,
    embedding_model: EmbeddingModelResource,
    embeddings,
    frame_index: pd.DataFrame,
    data_issues: dict,
):
    """Exact copies, visual copies (perceptual hashes, no model) and near-duplicates (cosine >= `similarity`, only
    when the vectors mean something) grouped as connected components, at `<outputs>/<dataset>/duplicates.csv`
    (filenames,group,kind,similarity); only new samples are searched."""
    name = context.partition_key
    out = storage.outputs_for(name)
    setting = str(getattr(embedding_model, "model", None) or "lightly")
    upstream = embedding_metadata(context)
    model_key = f"{upstream.get('model', setting)}|{upstream.get('weights_sha256', '')}"
    samples = embedded_samples(embeddings, frame_index)
    with user_errors():
        similarity = check_similarity(
            config.similarity if config.similarity is not None else default_similarity(setting)
        )
        hashes = sample_hashes(data_issues, samples, check_max_distance(config.max_hash_distance))
        state_path = out / "curation" / "duplicates_state.npz"
        state = State.load(state_path)
        unit = unit_rows(embeddings.matrix)
        vectors = UnitVectors.of(unit)  # the rows and digests find_duplicates made of `unit`: the state's
        keys, file_hashes = content_keys(
            samples, storage.dataset_dir(name), vectors.digests, state.file_hashes if state else None, hashes
        )
        warning = uniformity_warning(unit, similarity, random_weights(upstream))
        searched = None if warning else similarity  # random or uniform vectors: no near-duplicates by cosine
        found = find_duplicates(samples["filename"].tolist(), vectors, keys, searched, model_key, state, hashes=hashes)
        found.state.file_hashes = file_hashes
        found.state.save(state_path)
        path = write_duplicates_csv(out / "duplicates.csv", found.table)
        sheet, small = write_contact_sheet(
            out / "duplicates_contact_sheet.png", found.largest(6), samples, storage.dataset_dir(name)
        )
    if warning:
        warning += "; near-duplicates by cosine not searched: exact and visual copies only"
        context.log.warning(f"{name}: {warning}")
    counts = found.counts()
    context.log.info(
        f"{name}: {found.groups} duplicate groups ({counts['exact']} exact, {counts['visual']} visual, "
        f"{counts['near']} near copies) at similarity {similarity}, hash distance <= {hashes.max_distance}, "
        f"{found.method}; searched {found.searched} of {found.samples} samples"
    )
    title = f"{name}: the {min(6, found.groups)} largest of {found.groups} duplicate groups"
    yield Output(
        {
            "path": str(path),
            "table": found.table,
            "groups": found.groups,
            "exact": counts["exact"],
            "near": counts["near"],
            "visual": counts["visual"],
            "similarity": similarity,
            "max_hash_distance": hashes.max_distance,
            "warning": warning,
            "vectors_meaningful": not warning,
        },
        metadata={
            "contact_sheet": MetadataValue.md(projection_markdown(small, "largest duplicate groups")),
            "contact_sheet_full": MetadataValue.md(projection_markdown(sheet, title)),
            "contact_sheet_png": MetadataValue.path(str(sheet.resolve())),
            "largest_groups": _groups_table(found),
            "groups": MetadataValue.int(found.groups),
            "exact_copies": MetadataValue.int(counts["exact"]),
            "visual_copies": MetadataValue.int(counts["visual"]),
            "near_copies": MetadataValue.int(counts["near"]),
            "samples_in_groups": MetadataValue.int(len(found.table)),
            "samples": MetadataValue.int(found.samples),
            "similarity": MetadataValue.float(similarity),
            "similarity_source": "config" if config.similarity is not None else f"default for model {setting!r}",
            "similarity_warning": warning or "none",
            "max_hash_distance": MetadataValue.int(hashes.max_distance),
            "search": found.method,
            "searched_samples": MetadataValue.int(found.searched),
            "reused_samples": MetadataValue.int(found.samples - found.searched),
            "duplicates_csv": MetadataValue.path(str(path.resolve())),
        },
    )
    yield checks.no_duplicates(found.groups, counts, similarity)
    yield checks.similarities_meaningful(warning)


def sample_hashes(data_issues: dict, samples: pd.DataFrame, max_distance: int):
    """The perceptual hashes of `samples` (rows in their order) from data_issues' statistics, and which frames
    belong to one video (never visual copies of each other)."""
    stats: pd.DataFrame = data_issues["stats"]
    # A flat picture (no structure: sharpness undefined) hashes to all zeros: blank pictures are low_information,
    # not visual copies of each other (identical files are still exact copies).
    usable = (stats["broken"] == "").to_numpy() & np.isfinite(stats["sharpness"].to_numpy(dtype=np.float64))
    names = stats["filename"].astype(str)
    last = np.flatnonzero(~names.duplicated(keep="last").to_numpy())  # a name listed twice: its last row
    at = pd.Index(names.iloc[last]).get_indexer(samples["filename"].astype(str))
    rows = np.flatnonzero(at >= 0)
    in_stats = last[at[rows]]
    rows, in_stats = rows[usable[in_stats]], in_stats[usable[in_stats]]
    values = np.zeros((len(samples), 8), dtype=np.uint8)
    valid = np.zeros(len(samples), dtype=bool)
    if len(rows):
        values[rows] = np.frombuffer(b"".join(stats["hash"].to_numpy()[in_stats]), dtype=np.uint8).reshape(-1, 8)
        valid[rows] = True
    videos = np.where(samples["kind"].astype(str) == "video", samples["source"].astype(str), "").tolist()
    return Hashes(values, valid, videos, max_distance)


@dataset_asset(facts=SELECTION_FACTS, check_specs=checks.SELECTION, kinds={"text"})
def selection(
    context: AssetExecutionContext,
    config: SelectionConfig,
    storage: StorageResource,
    embeddings,
    duplicates: dict,
    data_issues: dict,
    frame_index: pd.DataFrame,
):
    """A subset with no two members of a duplicate group and no sample with an excluded issue, at
    `<outputs>/<dataset>/selection.txt` (one Lightly filename per line, `frame_index` order); diversity from the
    embeddings when they mean something, else from the perceptual hashes; its coverage radius beside a random
    selection's of the same size. A re-run keeps the last diverse selection and adds the farthest samples."""
    name = context.partition_key
    out = storage.outputs_for(name)
    samples = embedded_samples(embeddings, frame_index)
    table: pd.DataFrame = duplicates["table"]
    group_of = np.full(len(samples), -1, dtype=np.int64)
    at = pd.Index(samples["filename"]).get_indexer(table["filenames"])  # sample names are unique
    group_of[at[at >= 0]] = table["group"].to_numpy(dtype=np.int64)[at >= 0]
    with user_errors():
        strategy = check_strategy(config.strategy)
        unknown = sorted(set(config.exclude_issues) - set(ISSUES))
        if unknown:
            raise CurationError(f"selection config: exclude_issues {unknown} are not issues ({', '.join(ISSUES)})")
        issues: pd.DataFrame = data_issues["table"]
        ruled_out = set(issues.loc[issues["issue"].isin(config.exclude_issues), "filenames"])
        excluded = samples["filename"].isin(list(ruled_out)).to_numpy()
        meaningful = bool(duplicates.get("vectors_meaningful", True))
        codes = None if meaningful else sample_hashes(data_issues, samples, 0).values
        features = embeddings.matrix if codes is None else hash_features(codes)
        n = requested_count(len(samples), config.n_samples, config.proportion)
        why = "samples with " + "/".join(config.exclude_issues)
        state_path = out / "curation" / "selection_state.npz"
        previous = SelectionState.load(state_path) if config.keep_selected and strategy == "diverse" else None
        labels, everyone = np.asarray(embeddings.labels), samples["filename"].to_numpy(dtype=str)
        request = Request(n, strategy, excluded, why)
        chosen, state, radius, baseline = choose(features, labels, group_of, everyone, request, previous, codes)
        names = samples["filename"].iloc[chosen.rows].tolist()
        path = out / "selection.txt"
        write_selection(path, names)
        if state is None:
            state_path.unlink(missing_ok=True)  # the last selection was not diverse: nothing to keep
        else:
            state.save(state_path)
    for note in chosen.notes:
        context.log.info(f"{name}: {note}")
    diversity = "embeddings" if meaningful else "perceptual hashes (the embeddings' similarities mean nothing)"
    context.log.info(f"{name}: selected {len(names)} of {len(samples)} samples ({strategy}, from {diversity})")
    yield Output(
        {"path": str(path), "filenames": names, "strategy": strategy, "samples": len(samples)},
        metadata={
            "selected_per_label": _per_label(samples, chosen.rows),
            "selected": MetadataValue.int(len(names)),
            "samples": MetadataValue.int(len(samples)),
            "requested": MetadataValue.int(n),
            "candidates": MetadataValue.int(chosen.candidates),
            "kept_from_last_run": MetadataValue.int(chosen.kept),
            "strategy": strategy,
            "diversity_from": diversity,
            "excluded_issues": ", ".join(config.exclude_issues) or "none",
            "sampling_engine": ENGINES[strategy == "diverse"],
            "coverage_radius": _rounded(radius),
            "coverage_radius_random": _rounded(baseline),
            "notes": "; ".join(chosen.notes) or "none",
            "selection_txt": MetadataValue.path(str(path.resolve())),
        },
    )
    yield checks.no_duplicates_selected(names, table)


def _rounded(value: float | None) -> MetadataValue:
    return MetadataValue.float(round(value, 4)) if value is not None else MetadataValue.text("n/a (nothing selected)")


def _per_label(samples: pd.DataFrame, rows: np.ndarray) -> MetadataValue:
    chosen = samples.iloc[rows]
    records = []
    for key, group in samples.groupby(["label", "label_name"], sort=True):
        label, label_name = cast(tuple[Any, Any], key)  # grouped by two columns: a pair (pandas says Hashable)
        picked = int((chosen["label"] == label).sum())
        records.append(
            TableRecord(
                {
                    "label": int(label),
                    "label_name": str(label_name),
                    "samples": len(group),
                    "selected": picked,
                    "selected_share": round(picked / len(group), 4) if len(group) else 0.0,
                }
            )
        )
    schema = TableSchema(
        columns=[
            TableColumn("label", "int", description="weak label"),
            TableColumn("label_name", "string", description="name of the weak label"),
            TableColumn("samples", "int", description="samples with this label"),
            TableColumn("selected", "int", description="of them in selection.txt"),
            TableColumn("selected_share", "float", description="selected / samples"),
        ]
    )
    return MetadataValue.table(records=records, schema=schema)
