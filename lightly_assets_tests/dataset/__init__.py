"""Tests of lightly_assets.dataset."""
