"""Tests of lightly_assets.publish."""
