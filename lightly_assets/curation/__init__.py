"""Curation from embeddings: duplicate groups and a diverse (or typical, or balanced) selection.

`duplicates.py` finds exact copies (same file content, or bit-identical frames) and near-duplicates (cosine at
or above a threshold) and groups them as connected components; `selection.py` picks a subset with LightlyStudio's
own sampling engine (`lightly_mundig`) that never holds two members of one group. Nothing here imports Dagster.
"""

from lightly_assets.curation.errors import CurationError

__all__ = ["CurationError"]
