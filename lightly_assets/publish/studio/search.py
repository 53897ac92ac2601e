"""Search in LightlyStudio's GUI with the model that embedded the dataset: by an example image for every model, by
text for a model with a text tower (CLIP).

LightlyStudio embeds a query with the embedder registered for the collection's embedding space; our spaces have
none in its own process, so its search box fails ("has no TextEmbedder", "Failed to upload image"). `browse --open`
serves the GUI in our process: there the model is loaded once and registered for the space its vectors are in.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from lightly_assets.dataset.orientation import exif_upright
from lightly_assets.publish.studio.target import SPACE_KEY_PREFIX

OUR_SPACES = SPACE_KEY_PREFIX.rsplit("/", 1)[0] + "/"


def is_ours(space: str) -> bool:
    """Whether LightlyStudio cannot embed queries in this space itself (it knows MobileCLIP's, not ours)."""
    return space.startswith(OUR_SPACES)


def _image_pixels(data: bytes, model: Any) -> np.ndarray:
    """An uploaded image as the model takes it: upright by its EXIF orientation, then the model's preprocessing."""
    with Image.open(io.BytesIO(data)) as image:
        return model.prep.apply(exif_upright(image).convert("RGB"))


@cache
def _classes() -> tuple[type, type]:
    """LightlyStudio's embedder interfaces, subclassed lazily (they live in the slow-to-import package)."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio as ls
    from lightly_studio_serve.embedder import ImageBytesEmbedder, TextEmbedder

    class ImageQueries(ImageBytesEmbedder):
        """Embeds a query image with `model` (embedding.model.LoadedModel) in `space`."""

        def __init__(self, model: Any, space: str) -> None:
            self.model, self.space = model, space

        def embedding_space_spec(self) -> ls.EmbeddingSpaceSpec:
            return ls.EmbeddingSpaceSpec(space_key=self.space, dimension=int(self.model.dim))

        def embed_image_bytes(self, images: list[bytes]) -> ls.EmbeddingResult:
            kept, pixels = [], []
            for i, data in enumerate(images):
                try:
                    pixels.append(_image_pixels(data, self.model))
                except Exception:  # noqa: BLE001 - not an image: LightlyStudio answers "could not be embedded"
                    continue
                kept.append(i)
            matrix = self.model.embed(np.stack(pixels)) if pixels else np.empty((0, int(self.model.dim)))
            return ls.EmbeddingResult(embeddings=np.asarray(matrix, dtype=np.float32), kept_indices=kept)

    class TextAndImageQueries(ImageQueries, TextEmbedder):
        """Also embeds a phrase, with the model's text tower, in the same space as the images."""

        def embed_text(self, texts: list[str]) -> ls.EmbeddingResult:
            matrix = np.asarray(self.model.embed_text(list(texts)), dtype=np.float32)
            return ls.EmbeddingResult(embeddings=matrix, kept_indices=list(range(len(texts))))

    return ImageQueries, TextAndImageQueries


def query_embedder(model: Any, space: str) -> Any:
    """The embedder that answers search queries in `space` with `model`: images always, text when it can."""
    image_only, with_text = _classes()
    return (with_text if model.has_text else image_only)(model, space)


def register(model: Any, space: str) -> str:
    """Register `model` for the GUI's queries in `space` (before the GUI starts); returns what search can do."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio as ls

    ls.register_default_embedder(embedder=query_embedder(model, space))
    if model.has_text:
        return f"by text and by example image, with {model.description}"
    return (
        f"by example image, with {model.description}; not by text: this model has no text tower "
        "(a CLIP model has one: LIGHTLY_ASSETS_MODEL)"
    )
