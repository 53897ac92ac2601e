"""The bucket tests' dataset: a small folder of images and a video, its indexes and its Lightly CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lightly.utils.io import save_embeddings

from lightly_assets.dataset.samples import build_sample_index
from lightly_assets.dataset.scan import scan_dataset
from lightly_assets.publish.bucket import MANIFEST_KEY, SCHEMA_KEY, BucketResult, BucketTarget, publish_to_bucket
from lightly_assets_tests.media import make_image, make_video

ACCESS_KEY = "AKIALIGHTLYASSETSTEST"
SECRET = "sEcReT-never-shown-7f3a9c"
IMAGES = ["cats/a.png", "cats/b.png", "dogs/c.png", "dogs/sub/d.png"]
VIDEO = "clips/walk.mp4"


@dataclass
class Dataset:
    """A dataset folder, its indexes (from the project's scanner) and its Lightly CSV."""

    root: Path
    csv: Path
    file_index: pd.DataFrame = None  # type: ignore[assignment]
    frame_index: pd.DataFrame = None  # type: ignore[assignment]

    def refresh(self) -> Dataset:
        """Re-scan after a change and rewrite the CSV with save_embeddings, like the pipeline does."""
        self.file_index = scan_dataset(self.root).files
        self.frame_index = build_sample_index(self.file_index, self.root, workers=1).samples
        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(len(self.frame_index), 8))
        save_embeddings(
            str(self.csv), embeddings, [int(x) for x in self.frame_index["label"]], list(self.frame_index["filename"])
        )
        return self

    def publish(self, target: BucketTarget, **kwargs) -> BucketResult:
        return publish_to_bucket(target, "pets", self.root, self.frame_index, self.file_index, self.csv, **kwargs)


def make_dataset(tmp_path: Path) -> Dataset:
    """Four images and a video under `tmp_path/data/pets`, indexed, with their CSV in `tmp_path/outputs/pets`."""
    root = tmp_path / "data" / "pets"
    for i, name in enumerate(IMAGES):
        make_image(root / name, seed=i)
    make_video(root / VIDEO)
    out = tmp_path / "outputs" / "pets"
    out.mkdir(parents=True)
    return Dataset(root, out / "embeddings.csv").refresh()


def expected_keys(ds: Dataset) -> set[str]:
    files = set(ds.file_index["filename"])
    meta = {".lightly/metadata/" + f.rsplit(".", 1)[0] + ".json" for f in files}
    return files | meta | {SCHEMA_KEY, MANIFEST_KEY, ".lightly/embeddings/pets.csv"}


def bucket_keys(fs, root: str) -> dict[str, dict]:
    fs.invalidate_cache()
    return {k[len(root) + 1 :]: v for k, v in fs.find(root, detail=True).items()}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert ACCESS_KEY not in text
