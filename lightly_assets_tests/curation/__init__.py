"""Tests of lightly_assets.curation."""
