"""Fixtures of the publishing tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightly_assets_tests.publish.bucket_data import Dataset, make_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    """The bucket tests' dataset (bucket_data.py), made anew for each test."""
    return make_dataset(tmp_path)


@pytest.fixture
def no_builtin_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything asks LightlyStudio for MobileCLIP or another downloadable embedder."""
    from lightly_assets.publish.studio.database import import_studio

    import_studio()
    from lightly_studio.embed import embedder_registry

    def refuse(space_key: str) -> None:
        raise AssertionError(f"built-in embedder {space_key!r} requested")

    monkeypatch.setattr(embedder_registry, "_load_builtin_embedder", refuse)
