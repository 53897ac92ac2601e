"""The embedder LightlyStudio calls to get our precomputed vectors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np

from lightly_assets.publish.studio.target import SPACE_KEY_PREFIX


@cache
def _embedder_class() -> type:
    """Subclass LightlyStudio's embedder interfaces lazily (they live in the slow-to-import package)."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio as ls
    from lightly_studio_serve.embedder import ImagePathEmbedder, VideoPathEmbedder

    class PrecomputedEmbedder(ImagePathEmbedder, VideoPathEmbedder):
        """Answers LightlyStudio's embed calls from a table of precomputed vectors keyed by file path."""

        def __init__(self, dimension: int, space: str) -> None:
            self.dimension, self.space = dimension, space
            self.vectors: dict[str, np.ndarray] = {}

        def embedding_space_spec(self) -> ls.EmbeddingSpaceSpec:
            return ls.EmbeddingSpaceSpec(space_key=self.space, dimension=self.dimension)

        def _lookup(self, paths: list[str]) -> ls.EmbeddingResult:
            kept = [i for i, path in enumerate(paths) if path in self.vectors]
            rows = [self.vectors[paths[i]] for i in kept]
            matrix = np.stack(rows) if rows else np.empty((0, self.dimension), dtype=np.float32)
            return ls.EmbeddingResult(embeddings=matrix.astype(np.float32), kept_indices=kept)

        def embed_images(self, paths: list[str]) -> ls.EmbeddingResult:
            return self._lookup(paths)

        def embed_videos(self, paths: list[str]) -> ls.EmbeddingResult:
            return self._lookup(paths)

    return PrecomputedEmbedder


def space_key(dimension: int, space: str | None = None) -> str:
    """The LightlyStudio embedding space (its embedding model's name) our vectors are stored under."""
    return space or f"{SPACE_KEY_PREFIX}-{dimension}d"


def space_for(spec: str, sha256: str | None, dimension: int, own: str | None = None) -> str:
    """One space per model and weights, so that vectors of two models never mix in one embedding model.

    `lightly` keeps the key it always had; a model LightlyStudio knows itself (`own`, MobileCLIP-S0) takes
    LightlyStudio's name, so its GUI embeds text queries with the same model.
    """
    if own:
        return own
    if spec == "lightly":
        return space_key(dimension)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.replace(":", "-")).strip("-")[-60:]
    return f"{SPACE_KEY_PREFIX.rsplit('/', 1)[0]}/{slug}-{(sha256 or 'none')[:8]}-{dimension}d"


_EMBEDDERS: dict[tuple[str, int], Any] = {}


def _embedder(dimension: int, space: str | None = None) -> Any:
    """One registered embedder per space and process; registering changes no default of LightlyStudio."""
    key = (space_key(dimension, space), dimension)
    if key not in _EMBEDDERS:
        # LightlyStudio takes seconds to import: only uploads and its GUI need it
        import lightly_studio as ls

        embedder = _embedder_class()(dimension, key[0])
        ls.register_default_embedder(embedder=embedder, for_capabilities=set())
        _EMBEDDERS[key] = embedder
    return _EMBEDDERS[key]


@contextlib.contextmanager
def serving(dimension: int, vectors: dict[str, np.ndarray], space: str | None = None) -> Iterator[None]:
    """Let the registered embedder answer LightlyStudio's embed calls with these vectors, for the block only."""
    embedder = _embedder(dimension, space)
    embedder.vectors = vectors
    try:
        yield
    finally:
        embedder.vectors = {}
