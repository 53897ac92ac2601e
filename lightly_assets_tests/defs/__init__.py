"""Tests of lightly_assets.defs."""
