"""Asset checks: the specs each asset declares, and the pure functions that judge its value.

Checks run inside the asset's own step (declared with `check_specs`), so they see the value just computed
without reloading it; blocking ones stop the chain and fail the run when they fail.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, PreviewWarning

from lightly_assets.dataset.scan import Skipped
from lightly_assets.defs.partitions import datasets_partitions

WARN = AssetCheckSeverity.WARN


def _spec(name: str, asset: str, description: str, blocking: bool = False) -> AssetCheckSpec:
    """Checks are partitioned like their asset, so the UI shows each dataset's own results (a preview feature)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(
            name=name, asset=asset, description=description, blocking=blocking, partitions_def=datasets_partitions
        )


FILE_INDEX = [_spec("no_skipped_files", "file_index", "Warns when any file or folder of the dataset is not used.")]
FRAME_INDEX = [
    _spec(
        "samples_match_files",
        "frame_index",
        "Every file of file_index is a sample (videos expanded to all their frames) or listed as skipped.",
        blocking=True,
    ),
    _spec("all_videos_indexed", "frame_index", "Warns when a video could not be indexed."),
]
EMBEDDINGS = [
    _spec("finite_values", "embeddings", "No NaN or infinite value in the embedding matrix.", blocking=True),
    _spec("all_samples_embedded", "embeddings", "Warns when a sample could not be decoded and was left out."),
    _spec("trained_weights", "embeddings", "Warns when the model is a seeded random initialisation."),
    _spec(
        "knn_better_than_chance",
        "embeddings",
        "Warns when the leave-one-out 5-NN agreement with the weak labels is no better than chance.",
    ),
]
EMBEDDINGS_CSV = [
    _spec(
        "column_order",
        "embeddings_csv",
        "Header is filenames, embedding_0..embedding_{D-1} (grouped, consecutive), labels; Lightly loads it.",
        blocking=True,
    ),
    _spec(
        "label_counts",
        "embeddings_csv",
        "Per weak label, the CSV rows equal the samples of frame_index that were embedded.",
        blocking=True,
    ),
]
UPLOADED = [
    _spec(
        "target_counts_match_csv",
        "uploaded_dataset",
        "Samples and embeddings read back from the target equal the rows of embeddings_csv.",
        blocking=True,
    ),
]


def _listing(items: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


def _nothing_skipped(check_name: str, skipped: Sequence[Skipped]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=check_name,
        passed=not skipped,
        severity=WARN,
        description=(
            f"Warning, the run went on without {len(skipped)} file(s), listed with their reasons below; "
            "fix or remove them and run again to include them."
            if skipped
            else None
        ),
        metadata={
            "skipped": len(skipped),
            **({"paths": _listing([f"{s.path} ({s.reason})" for s in skipped])} if skipped else {}),
        },
    )


def no_skipped_files(skipped: Sequence[Skipped]) -> AssetCheckResult:
    return _nothing_skipped("no_skipped_files", skipped)


def samples_match_files(
    files: pd.DataFrame,
    samples: pd.DataFrame,
    skipped: Sequence[Skipped],
    kept: Mapping[str, Sequence[int]] | None = None,
) -> AssetCheckResult:
    """Images map one to one; each video contributes exactly its kept frames (0..n-1 when not subsampled)."""
    skipped_paths = {s.path for s in skipped}
    expected = [f for f in files["filename"] if f not in skipped_paths]
    sources = samples["source"].drop_duplicates().tolist()
    problems: list[str] = []
    if sources != expected:
        missing = sorted(set(expected) - set(sources))
        extra = sorted(set(sources) - set(expected))
        problems.append(f"missing {_listing(missing)}; unexpected {_listing(extra)}; or order differs")
    videos = samples[samples["kind"] == "video"]
    for source, frames in videos.groupby("source", sort=False)["frame"]:
        source = str(source)
        if kept is not None and source in kept:
            if frames.tolist() != list(kept[source]):
                problems.append(f"{source}: frames are not the {len(kept[source])} frames its sampling keeps")
        elif frames.tolist() != list(range(len(frames))):
            problems.append(f"{source}: frames are not 0..{len(frames) - 1}")
    images = samples[samples["kind"] == "image"]
    if not (images["filename"] == images["source"]).all():
        problems.append("image sample names differ from their files")
    return AssetCheckResult(
        check_name="samples_match_files",
        passed=not problems,
        metadata={"files": len(files), "samples": len(samples), "problems": _listing(problems, 5) or "none"},
    )


def all_videos_indexed(skipped: Sequence[Skipped]) -> AssetCheckResult:
    return _nothing_skipped("all_videos_indexed", skipped)


def finite_values(matrix: np.ndarray, filenames: Sequence[str]) -> AssetCheckResult:
    bad_rows = np.flatnonzero(~np.isfinite(matrix).all(axis=1)) if matrix.size else np.array([], dtype=int)
    return AssetCheckResult(
        check_name="finite_values",
        passed=len(bad_rows) == 0,
        metadata={
            "non_finite_rows": len(bad_rows),
            **({"samples": _listing([str(filenames[i]) for i in bad_rows[:20]])} if len(bad_rows) else {}),
        },
    )


def all_samples_embedded(unreadable: Sequence[tuple[str, str]], total: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="all_samples_embedded",
        passed=not unreadable,
        severity=WARN,
        description=(
            f"Warning, the run went on: {len(unreadable)} of {total} samples could not be decoded and are in neither "
            "the CSV nor the target."
            if unreadable
            else None
        ),
        metadata={
            "samples": total,
            "unreadable": len(unreadable),
            **({"which": _listing([f"{name} ({reason})" for name, reason in unreadable])} if unreadable else {}),
        },
    )


def trained_weights(random_init: bool, description: str, why: str = "", cache_file: str = "") -> AssetCheckResult:
    """Passes when the weights are not random; when they are, says why and what the user can do about it.

    `why` is how the run came to use random weights (the weights' note); `cache_file` is where torch's hub cache
    looks for Lightly's pretrained file, so an offline user can put it there.
    """
    return AssetCheckResult(
        check_name="trained_weights",
        passed=not random_init,
        severity=WARN,
        description=random_weights_advice(why, cache_file) if random_init else None,
        metadata={"model": description, "why_random": why or "not random"},
    )


def random_weights_advice(why: str, cache_file: str = "") -> str:
    """What happened and what to do, in the words a user acts on (a warning: the run itself went on)."""
    if "download failed" in why:
        what = (
            "Offline: Lightly's pretrained weights could not be downloaded "
            f"({why.split(': ', 1)[-1]}), so these vectors come from random weights."
        )
    elif why:
        what = f"These vectors come from random weights ({why})."
    else:
        what = "These vectors come from random weights."
    where = f"put the pretrained file at {cache_file}, " if cache_file else ""
    return (
        f"Warning, the run went on: {what} Random weights reflect colour and texture, not content. To fix it, "
        f"{where}or set LIGHTLY_ASSETS_CHECKPOINT to a checkpoint file (LIGHTLY_ASSETS_PRETRAINED_URL to a mirror), "
        "or train one with `lightly-assets train DATASET`; then run again."
    )


def knn_better_than_chance(quality) -> AssetCheckResult:  # quality: lightly_assets.embedding.quality.Quality
    """Warns when the embeddings' neighbours agree with the weak labels no more than shuffled labels do.

    Where the figure cannot be measured (one weak label, too few samples) the check passes, and its text says
    first that nothing was judged and why (Dagster cannot skip a check an asset declares: a missing result fails
    the step).
    """
    if quality.knn is None:
        return AssetCheckResult(
            check_name="knn_better_than_chance",
            passed=True,
            severity=WARN,
            description=f"Passed with nothing to judge: the kNN agreement was not measured ({quality.reason}).",
            metadata={"applicable": False, "reason": quality.reason or ""},
        )
    knn = quality.knn
    rule = f" Rule: {knn.rule}." if knn.rule else ""
    return AssetCheckResult(
        check_name="knn_better_than_chance",
        passed=knn.better_than_chance,
        severity=WARN,
        description=(
            f"Neighbours agree with the weak labels {knn.agreement:.0%} of the time, above chance "
            f"({knn.chance:.0%}).{rule}"
            if knn.better_than_chance
            else f"Warning, the run went on: neighbours agree with the weak labels {knn.agreement:.0%} of the time, "
            f"no better than chance ({knn.chance:.0%}, +{knn.margin:.0%} noise): the embeddings do not separate "
            f"the labels. Try pretrained or trained weights, or another model.{rule}"
        ),
        metadata={"applicable": True, **quality.metadata(), "noise_margin": round(knn.margin, 4)},
    )


def column_order(problems: Sequence[str]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="column_order", passed=not problems, metadata={"problems": _listing(list(problems), 5) or "none"}
    )


def label_counts(csv_labels: np.ndarray, samples: pd.DataFrame, unreadable: Sequence[str]) -> AssetCheckResult:
    """Per weak label, rows in the CSV == samples in frame_index minus those that could not be decoded."""
    left_out = set(unreadable)
    expected = counts_by_label(samples.loc[~samples["filename"].isin(list(left_out)), "label"].to_numpy())
    actual = counts_by_label(np.asarray(csv_labels))
    return AssetCheckResult(
        check_name="label_counts",
        passed=expected == actual,
        metadata={"expected": {str(k): v for k, v in expected.items()}, "csv": {str(k): v for k, v in actual.items()}},
    )


def counts_by_label(labels: np.ndarray) -> dict[int, int]:
    values, n = np.unique(labels.astype(np.int64), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, n, strict=True)}


def target_counts_match_csv(samples: int, embeddings: int, csv_rows: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="target_counts_match_csv",
        passed=samples == csv_rows and embeddings == csv_rows,
        metadata={"samples_in_target": samples, "embeddings_in_target": embeddings, "csv_rows": csv_rows},
    )


DUPLICATES = [
    _spec("no_duplicates", "duplicates", "Warns when the dataset holds exact or near-duplicate samples."),
    _spec(
        "similarities_meaningful",
        "duplicates",
        "Warns when the weights are random or random pairs of samples are about as similar as duplicates.",
    ),
]
DATA_ISSUES = [
    _spec("no_data_issues", "data_issues", "Warns when samples are blurry, dark, light, greyscale, broken ... ."),
]
SELECTION = [
    _spec("no_duplicates_selected", "selection", "No two samples of selection.txt belong to one duplicate group."),
]


def no_duplicates(groups: int, counts: dict[str, int], similarity: float) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="no_duplicates",
        passed=groups == 0,
        severity=WARN,
        description=None
        if groups == 0
        else f"Warning, the run went on: {groups} duplicate groups, {counts['exact']} exact, "
        f"{counts.get('visual', 0)} visual and "
        f"{counts['near']} near copies (cosine >= {similarity}); see duplicates.csv and the contact sheet.",
        metadata={
            "groups": groups,
            "exact_copies": counts["exact"],
            "visual_copies": counts.get("visual", 0),
            "near_copies": counts["near"],
        },
    )


def no_data_issues(counts: Mapping[str, int], samples_with_issues: int) -> AssetCheckResult:
    found = {issue: n for issue, n in counts.items() if n}
    return AssetCheckResult(
        check_name="no_data_issues",
        passed=not found,
        severity=WARN,
        description=None
        if not found
        else f"Warning, the run went on: {samples_with_issues} samples with issues: "
        + ", ".join(f"{n} {issue}" for issue, n in found.items())
        + "; see data_issues.csv and the contact sheet.",
        metadata={"samples_with_issues": samples_with_issues, **{k: int(v) for k, v in counts.items()}},
    )


def similarities_meaningful(warning: str | None) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="similarities_meaningful",
        passed=warning is None,
        severity=WARN,
        description=f"Warning, the run went on: {warning[:1].lower()}{warning[1:]}" if warning else None,
        metadata={"warning": warning or "none"},
    )


def no_duplicates_selected(selected: Sequence[str], duplicates: pd.DataFrame) -> AssetCheckResult:
    """Judged on the written names against duplicates.csv's groups."""
    groups = duplicates.set_index("filenames")["group"] if len(duplicates) else pd.Series(dtype=int)
    hit = groups.reindex([n for n in selected if n in groups.index])
    repeated = sorted({int(g) for g in hit[hit.duplicated()]})
    return AssetCheckResult(
        check_name="no_duplicates_selected",
        passed=not repeated,
        metadata={
            "selected": len(selected),
            **({"groups_selected_twice": _listing([str(g) for g in repeated])} if repeated else {}),
        },
    )
