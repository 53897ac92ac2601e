"""The embedder LightlyStudio calls to get our precomputed vectors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np

from lightly_assets.publish.studio.target import SPACE_KEY_PREFIX


@cache
def _embedder_class() -> type:
    """Subclass LightlyStudio's embedder interfaces lazily (they live in the slow-to-import package)."""
    import lightly_studio as ls
    from lightly_studio_serve.embedder import ImagePathEmbedder, VideoPathEmbedder

    class PrecomputedEmbedder(ImagePathEmbedder, VideoPathEmbedder):
        """Answers LightlyStudio's embed calls from a table of precomputed vectors keyed by file path."""

        def __init__(self, dimension: int) -> None:
            self.dimension = dimension
            self.vectors: dict[str, np.ndarray] = {}

        def embedding_space_spec(self) -> ls.EmbeddingSpaceSpec:
            return ls.EmbeddingSpaceSpec(space_key=space_key(self.dimension), dimension=self.dimension)

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


def space_key(dimension: int) -> str:
    return f"{SPACE_KEY_PREFIX}-{dimension}d"


_EMBEDDERS: dict[int, Any] = {}


def _embedder(dimension: int) -> Any:
    """One registered embedder per dimension and process; registering changes no default of LightlyStudio."""
    if dimension not in _EMBEDDERS:
        import lightly_studio as ls

        embedder = _embedder_class()(dimension)
        ls.register_default_embedder(embedder=embedder, for_capabilities=set())
        _EMBEDDERS[dimension] = embedder
    return _EMBEDDERS[dimension]


@contextlib.contextmanager
def serving(dimension: int, vectors: dict[str, np.ndarray]) -> Iterator[None]:
    """Let the registered embedder answer LightlyStudio's embed calls with these vectors, for the block only."""
    embedder = _embedder(dimension)
    embedder.vectors = vectors
    try:
        yield
    finally:
        embedder.vectors = {}
