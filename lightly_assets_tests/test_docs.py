"""The documentation: its hand-kept advice matches the code, and the site builds strictly from what is committed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_assets_tests.conftest import REPO

HOOKS = REPO / "docs" / "hooks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"lightly_assets_docs_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_check_has_advice_and_every_advice_names_a_check() -> None:
    reference, advice = _load("reference"), _load("advice")
    declared = {name for _, name, _, _ in reference.declared_checks()}
    assert declared - set(advice.CHECKS) == set(), "checks without advice in docs/hooks/advice.py"
    # Advice may be written ahead for a check another branch adds; none may outlive its check for long.
    upcoming = {"no_data_issues"}
    assert set(advice.CHECKS) - declared - upcoming == set(), "advice for checks the definitions do not declare"


def test_every_error_fix_matches_an_error_the_code_raises() -> None:
    reference, advice = _load("reference"), _load("advice")
    lines = [text for _, text, _ in reference.raised_errors()]
    assert len(lines) > 100  # the scan finds the package's raises (159 when written)
    unmatched = [fragment for fragment in advice.ERRORS if not any(fragment in line for line in lines)]
    assert unmatched == [], "fixes in docs/hooks/advice.py for messages the code no longer raises"
    classes = {cls for cls, _, _ in reference.raised_errors()}
    assert classes - set(advice.ERROR_CLASSES) == set(), "error classes without a usual fix"


def test_reference_shows_the_settings_and_cli_from_the_code() -> None:
    reference = _load("reference")
    from lightly_assets.definitions import ENVIRONMENT

    settings = reference.settings()
    for fields in ENVIRONMENT.values():
        for variable in fields.values():
            assert f"`{variable}`" in settings
    cli = reference.cli()
    assert "lightly-assets browse" in cli and "--open" in cli and "--max-minutes" in cli


def test_readme_is_short_and_names_every_variable() -> None:
    from lightly_assets.definitions import ENVIRONMENT, SECRET_NAMES, SENSOR_INTERVAL

    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12_000
    variables = [v for fields in [*ENVIRONMENT.values(), *SECRET_NAMES.values()] for v in fields.values()]
    assert [v for v in [*variables, SENSOR_INTERVAL] if f"`{v}`" not in readme] == []
    for line in ("bash scripts/dev.sh run", "bash scripts/dev.sh test", "bash scripts/dev.sh ui", "browse --open"):
        assert line in readme
    for image in ("docs/images/dagster_asset_graph.png", "docs/images/lightly_studio_grid.png"):
        assert f"]({image})" in readme and (REPO / image).stat().st_size < 150_000


@pytest.mark.e2e  # imports the definitions and renders ~20 pages: about 10 s
def test_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.fail("mkdocs is not installed: `pip install -e '.[docs]'` (`bash scripts/dev.sh docs` does it)")
    env = os.environ | {"PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    checks = (tmp_path / "site" / "reference" / "checks" / "index.html").read_text()
    assert "target_counts_match_csv" in checks and "blocking" in checks
    for image in ("dagster_asset_graph.png", "dagster_run.png", "lightly_studio_grid.png"):
        assert (tmp_path / "site" / "images" / image).stat().st_size > 10_000
