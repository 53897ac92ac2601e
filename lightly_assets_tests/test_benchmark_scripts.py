"""The benchmarks call the package as it is today: a script whose call went stale fails here, not in the hands of
whoever re-measures a figure (the hashes case of bench_data_issues once called `find_duplicates` with a removed
argument)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hashes_at_scale_case_finds_its_planted_copies() -> None:
    result = script("bench_data_issues").hash_case(3_000)
    assert result["samples"] == 3_000
    assert result["planted_found"] == "30/30"
