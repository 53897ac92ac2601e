"""The embedding domain's one error family: every failure it reports is an `EmbeddingError`, one line naming the
file or setting and the reason (the CLI and the assets show the message, never a traceback)."""

from __future__ import annotations

from lightly_assets.errors import LightlyAssetsError


class EmbeddingError(LightlyAssetsError):
    """The sample table, the vector cache or the embedding run cannot be used; names what and why."""


class ModelError(EmbeddingError):
    """A model spec, checkpoint or run setting (device, precision, engine) that cannot be used."""


class WeightsError(ModelError):
    """A weights file that exists but cannot be used, or a named model's weights that cannot be had."""


class EngineError(ModelError):
    """A network the engine cannot run (conversion failed, wrong input layout); the message names the model."""
