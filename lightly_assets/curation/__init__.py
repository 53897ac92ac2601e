"""Curation: data issues, duplicate groups and a diverse (or typical, or balanced) selection.

`stats.py` decodes each sample once for picture statistics and a perceptual hash (cached by file); `quality.py`
turns the statistics into scored issues (blurry, dark, ... broken, outlier); `phash.py` hashes and pairs pictures
that look the same; `duplicates.py` finds exact copies (same file content, or bit-identical frames), visual copies
(perceptual hashes) and near-duplicates (cosine at or above a threshold, only when the vectors mean something) and
groups them as connected components; `selection.py` picks a subset with LightlyStudio's own sampling engine
(`lightly_mundig`) that never holds two members of one group nor a sample with an excluded issue. Nothing here
imports Dagster.
"""

from lightly_assets.curation.errors import CurationError

__all__ = ["CurationError"]
