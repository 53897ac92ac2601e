"""The public API: publish one dataset as a Lightly bucket datasource."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lightly_assets.publish.bucket.inputs import check_dataset_name, read_inputs
from lightly_assets.publish.bucket.session import PublishSession
from lightly_assets.publish.bucket.target import BucketError, BucketResult, BucketTarget, ProgressCallback


def publish_to_bucket(
    target: BucketTarget,
    dataset_name: str,
    data_dir: Path,
    frame_index: pd.DataFrame,
    file_index: pd.DataFrame,
    csv_path: Path,
    copy_files: bool = True,
    on_progress: ProgressCallback | None = None,
) -> BucketResult:
    """Publish one dataset under ``<target.url>/<dataset_name>/`` and verify it by reading back.

    ``data_dir`` is the dataset folder that ``file_index`` filenames are relative to.
    ``copy_files=False`` writes only ``.lightly/`` (the files are already in the input
    datasource). ``on_progress(event, key)`` is called with ``written`` / ``skipped`` /
    ``removed`` for every key. The curation's files under ``.lightly/`` are kept (see
    ``publish_curation_files``).
    Raises ``BucketError`` for bad input and storage failures.
    """
    check_dataset_name(dataset_name)
    inputs = read_inputs(Path(data_dir), frame_index, file_index, Path(csv_path))
    session = PublishSession(target, dataset_name, on_progress)
    try:
        return session.publish(inputs, copy_files)
    except BucketError:
        raise
    except Exception as exc:  # storage errors escaping a step: still never leak
        raise session.error(exc) from None


def publish_curation_files(target: BucketTarget, dataset_name: str, files: Mapping[str, bytes]) -> dict[str, str]:
    """Write the curation's files (``duplicates.csv``, ``selection.txt``, ``data_issues.csv``) under the published
    dataset's ``.lightly/``; returns file name -> ``written`` or ``unchanged``. Raises ``BucketError``."""
    check_dataset_name(dataset_name)
    session = PublishSession(target, dataset_name, None)
    try:
        return session.publish_files(files)
    except BucketError:
        raise
    except Exception as exc:
        raise session.error(exc) from None
