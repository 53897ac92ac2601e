"""Tests of lightly_assets.publish."""

import pytest

# Every test that writes into a LightlyStudio database: its marker, no downloadable embedder, and the warning
# lightly_studio 1.2.0 raises inside itself on every dataset creation.
STUDIO_TEST = [
    pytest.mark.filterwarnings("ignore:The `objects` parameter of `Session.flush` is deprecated"),
    pytest.mark.lightly_studio,
    pytest.mark.usefixtures("no_builtin_embedder"),
]
