"""`data_issues`: what is wrong with the data (blurry, dark, light, greyscale, low information, odd shape or size,
broken, outlier), with no model needed except for `outlier`.

It hangs beside the chain after `embeddings` and feeds the curation (`duplicates` takes its perceptual hashes,
`selection` leaves out samples with issues that rule them out). The work is done by `lightly_assets.curation`
(stats.py: decode and statistics, cached by file; quality.py: thresholds and scores).
"""

import time

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output
from pydantic import Field

from lightly_assets import columns
from lightly_assets.curation.contact_sheet import write_contact_sheet
from lightly_assets.curation.duplicates import unit_rows
from lightly_assets.curation.quality import Thresholds, counts, issue_table, knn_outliers, write_issues_csv
from lightly_assets.curation.stats import StatsCache, sample_stats
from lightly_assets.curation.thresholds import default_similarity, uniformity_warning
from lightly_assets.defs import checks
from lightly_assets.defs.common import dataset_asset, user_errors
from lightly_assets.defs.curation import embedded_samples, embedding_metadata, random_weights
from lightly_assets.defs.metadata import contract_schema, markdown_table, projection_markdown
from lightly_assets.defs.resources import StorageResource

WORST_LISTED = 20
SHEET_ISSUES = 6

DATA_ISSUES_FACTS = [
    "issue_counts", "samples_with_issues", "samples", "issues_sheet", "issues_sheet_full", "issues_sheet_png",
    "worst_samples", "outlier", "thresholds", "scored_samples", "reused_stats", "stats_seconds", "data_issues_csv",
]  # fmt: skip
_DEFAULTS = Thresholds()


class DataIssuesConfig(Config):
    """Where each issue starts; the defaults and why they hold on real photos: curation/quality.py."""

    dark: float = Field(default=_DEFAULTS.dark, description="95th percentile of luminance below this: dark.")
    light: float = Field(default=_DEFAULTS.light, description="5th percentile of luminance above this: light.")
    grayscale: float = Field(default=_DEFAULTS.grayscale, description="99th percentile of colour below this.")
    low_information: float = Field(
        default=_DEFAULTS.low_information, description="Luminance histogram entropy / 8 bits below this."
    )
    blurry: float = Field(default=_DEFAULTS.blurry, description="Laplacian std / luminance std below this.")
    odd_aspect_ratio: float = Field(default=_DEFAULTS.odd_aspect_ratio, description="Long / short side above this.")
    min_side: int = Field(default=_DEFAULTS.min_side, description="Short side (px) below this: odd_size.")
    size_ratio: float = Field(default=_DEFAULTS.size_ratio, description="Scale vs the median above this: odd_size.")
    outlier: float = Field(default=_DEFAULTS.outlier, description="k-NN distance robust z above this (trained).")

    def thresholds(self) -> Thresholds:
        return Thresholds(**{f: getattr(self, f) for f in Thresholds.__dataclass_fields__}).check()


@dataset_asset(
    facts=DATA_ISSUES_FACTS,
    check_specs=checks.DATA_ISSUES,
    kinds={"csv"},
    metadata={"dagster/column_schema": contract_schema(columns.DATA_ISSUES_CSV)},
)
def data_issues(
    context: AssetExecutionContext,
    config: DataIssuesConfig,
    storage: StorageResource,
    embeddings,
    frame_index: pd.DataFrame,
    file_index: pd.DataFrame,
):
    """Per-sample problems at `<outputs>/<dataset>/data_issues.csv` (filenames,issue,score; score in [0, 1],
    higher is worse); only new or changed files are decoded again. `outlier` needs trained weights."""
    name = context.partition_key
    out = storage.outputs_for(name)
    known = frame_index.reset_index(drop=True)
    with user_errors():
        thresholds = config.thresholds()
        started = time.perf_counter()
        stats, scored = sample_stats(known, storage.dataset_dir(name), StatsCache(out / "curation" / "stats.npz"))
        seconds = time.perf_counter() - started
        stats = _mark_unembedded(stats, embeddings)
        upstream = embedding_metadata(context)
        unit = unit_rows(embeddings.matrix)
        similarity = default_similarity(upstream.get("model_spec"))
        why_not = uniformity_warning(unit, similarity, random_weights(upstream))
        outliers, outlier_note = None, f"skipped: {why_not}"
        if why_not is None:
            flagged, score = knn_outliers(unit, thresholds.outlier)
            outliers = _to_rows(flagged, score, embedded_samples(embeddings, frame_index), known)
            outlier_note = f"k-NN distance (5 nearest, cosine) over {thresholds.outlier} robust std above the median"
        table = _with_unindexed(issue_table(stats, known, thresholds, outliers), file_index, known)
        path = write_issues_csv(out / "data_issues.csv", table)
        found = counts(table)
        sheet, small = _contact_sheet(out, table, known, storage.dataset_dir(name), name)
    with_issues = int(table["filenames"].nunique())
    context.log.info(
        f"{name}: {with_issues} samples with issues: "
        + (", ".join(f"{n} {issue}" for issue, n in found.items() if n) or "none")
        + f"; outlier {outlier_note}; scored {scored} of {len(known)} samples in {seconds:.1f} s"
    )
    yield Output(
        {"path": str(path), "table": table, "stats": stats, "counts": found, "outlier": outlier_note},
        metadata={
            "issue_counts": _counts_table(found, len(known), thresholds),
            "samples_with_issues": MetadataValue.int(with_issues),
            "samples": MetadataValue.int(len(known)),
            "issues_sheet": MetadataValue.md(projection_markdown(small, "worst samples per issue")),
            "issues_sheet_full": MetadataValue.md(projection_markdown(sheet, f"{name}: worst samples per issue")),
            "issues_sheet_png": MetadataValue.path(str(sheet.resolve())),
            "worst_samples": _worst(table),
            "outlier": outlier_note,
            "thresholds": MetadataValue.json(thresholds.describe()),
            "scored_samples": MetadataValue.int(scored),
            "reused_stats": MetadataValue.int(len(known) - scored),
            "stats_seconds": MetadataValue.float(round(seconds, 3)),
            "data_issues_csv": MetadataValue.path(str(path.resolve())),
        },
    )
    yield checks.no_data_issues(found, with_issues)


def _with_unindexed(table: pd.DataFrame, file_index: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Files of file_index with no sample at all (a video that could not be indexed) are broken, by their path."""
    indexed = set(samples["source"].astype(str))  # once: rebuilt per file, 100k files took 17 minutes here
    lost = [f for f in file_index["filename"].astype(str) if f not in indexed]
    extra = pd.DataFrame({"filenames": lost, "issue": "broken", "score": 1.0})
    return pd.concat([table, extra], ignore_index=True) if lost else table


def _mark_unembedded(stats: pd.DataFrame, embeddings) -> pd.DataFrame:
    """Samples the embedding step could not decode are broken too, with its reason (one list, one truth)."""
    reasons = dict(getattr(embeddings, "unreadable", []) or [])
    if not reasons:
        return stats
    stats = stats.copy()
    hit = stats["filename"].isin(list(reasons)) & (stats["broken"] == "")
    stats.loc[hit, "broken"] = [reasons[n] for n in stats.loc[hit, "filename"]]
    return stats


def _to_rows(flagged: np.ndarray, score: np.ndarray, embedded: pd.DataFrame, known: pd.DataFrame):
    """Per-embedded-sample outlier values, laid over the rows of `known` (not embedded: not an outlier)."""
    position = {n: i for i, n in enumerate(known["filename"])}
    rows = np.array([position.get(n, -1) for n in embedded["filename"]], dtype=np.int64)
    out_flag, out_score = np.zeros(len(known), dtype=bool), np.zeros(len(known))
    ok = rows >= 0
    out_flag[rows[ok]], out_score[rows[ok]] = flagged[ok], score[ok]
    return out_flag, out_score


def _counts_table(found: dict[str, int], samples: int, thresholds: Thresholds) -> MetadataValue:
    limits: dict[str, float | str] = {
        **thresholds.describe(),
        "odd_size": f"short side < {thresholds.min_side} px or scale x{thresholds.size_ratio} off the median",
        "broken": "could not be decoded",
    }
    table = pd.DataFrame(
        {"issue": issue, "samples": n, "share": f"{n / max(samples, 1):.1%}", "threshold": str(limits.get(issue, ""))}
        for issue, n in found.items()
    )
    return markdown_table(table)


def _worst(table: pd.DataFrame) -> MetadataValue:
    if not len(table):
        return MetadataValue.md("_no issues found_")
    worst = table.sort_values("score", ascending=False, kind="stable").head(WORST_LISTED)
    caption = f"_the {len(worst)} worst of {len(table)} rows of data_issues.csv_"
    return markdown_table(worst.loc[:, ["filenames", "issue", "score"]], caption)


def _contact_sheet(out, table: pd.DataFrame, samples: pd.DataFrame, data_dir, name: str):
    """One row per issue (the most frequent first): its worst samples side by side, with their scores."""
    rows = []
    for number, (issue, group) in enumerate(
        sorted(table.groupby("issue"), key=lambda item: (-len(item[1]), item[0]))[:SHEET_ISSUES]
    ):
        worst = group.sort_values("score", ascending=False, kind="stable")
        rows.append(
            pd.DataFrame(
                {
                    "filenames": worst["filenames"].to_numpy(),
                    "group": number,
                    "kind": issue,
                    "similarity": worst["score"].to_numpy(),
                    "caption": f"{issue}\n{len(group)} samples",
                }
            )
        )
    return write_contact_sheet(out / "data_issues_contact_sheet.png", rows, samples, data_dir)
