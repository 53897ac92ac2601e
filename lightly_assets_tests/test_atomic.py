"""Atomic outputs: a temporary name that fits NAME_MAX, and an unwritable path named in the error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lightly_assets_tests.media import make_image

TINY = (32, 24)


def test_bucket_temporary_name_fits_name_max(tmp_path: Path) -> None:
    from lightly_assets.atomic import tmp_prefix, write_bytes_atomic
    from lightly_assets.publish.bucket import publish_to_bucket
    from lightly_assets.publish.bucket.target import BucketTarget

    long_name = "é" * 100 + "x" * 46 + ".csv"  # 250 bytes in UTF-8
    assert len(tmp_prefix(long_name).encode()) <= 200
    write_bytes_atomic(tmp_path / long_name, b"ok")
    assert (tmp_path / long_name).read_bytes() == b"ok"
    data = tmp_path / "ds"
    image = make_image(data / ("n" * 246 + ".png"), 0, TINY)
    files = pd.DataFrame(
        {"filename": [image.name], "kind": ["image"], "label": [0], "label_name": ["ds"], "size": [1], "mtime_ns": [1]}
    )
    samples = pd.DataFrame({"filename": [image.name], "source": [image.name]})
    csv = tmp_path / "e.csv"
    csv.write_text(f"filenames,embedding_0,labels\n{image.name},0.5,0\n")
    result = publish_to_bucket(BucketTarget(url=f"file://{tmp_path / 'bucket'}"), "ds", data, samples, files, csv)
    assert result.embeddings == 1
    assert (tmp_path / "bucket" / "ds" / image.name).read_bytes() == image.read_bytes()


def test_unwritable_output_names_the_file(tmp_path: Path) -> None:
    from lightly_assets.atomic import write_bytes_atomic

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as info:
        write_bytes_atomic(blocker / "sub" / "embeddings.csv", b"x")
    assert str(blocker / "sub") in str(info.value.filename)
