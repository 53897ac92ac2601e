"""The curation error family: a configuration or input that cannot be curated, in one line."""

from lightly_assets.errors import LightlyAssetsError


class CurationError(LightlyAssetsError):
    """A bad `similarity`, `n_samples`, `proportion` or `strategy`, or an unusable curation state file."""
