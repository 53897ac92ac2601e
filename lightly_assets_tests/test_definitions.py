"""The Definitions as the UI and `dg` see them, and the one configuration rule: run config > environment > default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, Definitions, EnvVar, build_resources

from lightly_assets import columns
from lightly_assets.definitions import ENVIRONMENT, defs, from_env, run_defs
from lightly_assets.defs.resources import StorageResource
from lightly_assets.runner import open_storage, storage_config

DESIGN_ASSETS = {
    "file_index",
    "frame_index",
    "embeddings",
    "embeddings_csv",
    "duplicates",
    "selection",
    "uploaded_dataset",
    "published_curation",
    "data_issues",
}
ON_REQUEST = {"embedding_model"}  # trained only when asked: not in the main job
REPO = Path(__file__).resolve().parents[1]
# Packages a code server loading the definitions has no use for: torch's stack, LightlyStudio, curation's search.
HEAVY = ("torch", "torchvision", "timm", "lightly", "lightly_studio", "openvino", "faiss", "scipy", "ray", "open_clip")


def test_definitions_load_with_the_asset_keys_of_the_design() -> None:
    definitions = defs()
    Definitions.validate_loadable(definitions)
    specs = {s.key: s for s in definitions.resolve_all_asset_specs()}
    assert set(specs) == {AssetKey(k) for k in DESIGN_ASSETS | ON_REQUEST}
    job_assets = definitions.resolve_job_def("lightly_assets_job").asset_layer.selected_asset_keys
    assert job_assets == {AssetKey(k) for k in DESIGN_ASSETS}
    assert definitions.resolve_sensor_def("dataset_folders_sensor").required_resource_keys == {"storage"}


def test_the_main_job_has_no_upstream_outside_itself() -> None:
    """Materialize on the main group in the UI asks "upstream not materialized?" for any upstream asset outside
    the selection: the optional `embedding_model` is found on disk, not declared as an upstream."""
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    job_assets = definitions.resolve_job_def("lightly_assets_job").asset_layer.selected_asset_keys
    outside = {parent for key in job_assets for parent in graph.get(key).parent_keys} - job_assets
    assert outside == set()
    assert graph.get(AssetKey("embedding_model")).parent_keys == {AssetKey("frame_index")}


def test_every_dagster_object_of_the_defs_folder_is_loaded() -> None:
    """The folder is autoloaded: an asset or sensor defined in any module of `defs/` is in `defs`, unlisted."""
    import importlib
    import pkgutil

    from dagster import AssetsDefinition, SensorDefinition

    import lightly_assets.defs as folder

    values = [
        value
        for module in pkgutil.iter_modules(folder.__path__, f"{folder.__name__}.")
        for value in vars(importlib.import_module(module.name)).values()
    ]
    assets = {v.key.to_user_string() for v in values if isinstance(v, AssetsDefinition)}
    definitions = defs()
    assert {s.key.to_user_string() for s in definitions.resolve_all_asset_specs()} == assets
    sensors = {v.name for v in values if isinstance(v, SensorDefinition)} | {"dataset_folders_sensor"}
    assert {s.name for s in definitions.sensors} == sensors  # the folder's, and the one definitions.py builds


def test_the_cli_runs_the_same_definitions_without_the_ui_s_component_listing() -> None:
    ui, cli = defs(), run_defs()
    assert cli.metadata == {} and ui.metadata  # the listing is repository metadata, nothing else
    for job in ("lightly_assets_job", "embedding_model_job"):
        a, b = ui.resolve_job_def(job), cli.resolve_job_def(job)
        assert a.asset_layer.selected_asset_keys == b.asset_layer.selected_asset_keys
        assert sorted(a.graph.node_names()) == sorted(b.graph.node_names())
        assert set(a.resource_defs) == set(b.resource_defs)
    assert {s.key: s.kinds for s in ui.resolve_all_asset_specs()} == {
        s.key: s.kinds for s in cli.resolve_all_asset_specs()
    }
    assert set(ui.resolve_asset_graph().asset_check_keys) == set(cli.resolve_asset_graph().asset_check_keys)


def test_every_asset_has_kinds_owner_description_and_code_reference() -> None:
    specs = defs().resolve_all_asset_specs()
    for spec in specs:
        name = spec.key.to_user_string()
        assert spec.kinds and len(spec.kinds) <= 10, name  # Dagster shows at most 10 kinds
        assert spec.owners == ["team:lightly-assets"], name
        assert spec.description and len(spec.description) > 20, name
        assert "dagster/code_references" in spec.metadata, name
    kinds = {s.key.to_user_string(): s.kinds for s in specs}
    assert kinds["embeddings"] == {"pytorch", "numpy"} and kinds["file_index"] == {"pandas"}
    assert kinds["embeddings_csv"] == {"csv"} and "duckdb" in kinds["uploaded_dataset"]


@pytest.mark.parametrize(
    ("asset", "contract"),
    [
        ("file_index", columns.FILE_INDEX),
        ("frame_index", columns.FRAME_INDEX),
        ("embeddings_csv", columns.EMBEDDINGS_CSV),
        ("duplicates", columns.DUPLICATES_CSV),
    ],
)
def test_declared_column_schema_describes_every_column(asset: str, contract: dict[str, str]) -> None:
    spec = next(s for s in defs().resolve_all_asset_specs() if s.key == AssetKey(asset))
    schema = spec.metadata["dagster/column_schema"]
    assert [(c.name, c.description) for c in schema.columns] == list(contract.items())
    assert all(c.description for c in schema.columns)


def test_every_check_is_described() -> None:
    graph = defs().resolve_asset_graph()
    checks = list(graph.asset_check_keys)
    assert len(checks) == 14
    for key in checks:
        spec = graph.get_check_spec(key)
        assert spec.description, key


def test_environment_variables_are_bound_as_envvars_only_when_set(monkeypatch) -> None:
    for names in ENVIRONMENT.values():
        for name in names.values():
            monkeypatch.delenv(name, raising=False)
    assert from_env("storage") == {}
    monkeypatch.setenv("LIGHTLY_ASSETS_OUTPUT_DIR", "/env/out")
    bound = from_env("storage")
    assert bound == {"output_dir": "LIGHTLY_ASSETS_OUTPUT_DIR"} and isinstance(bound["output_dir"], EnvVar)
    flat = {name for names in ENVIRONMENT.values() for name in names.values()}
    assert "LIGHTLY_ASSETS_PRETRAINED_URL" in flat and "LIGHTLY_ASSETS_EXECUTOR" in flat
    assert "LIGHTLY_STUDIO_DATABASE_URL" not in flat  # a secret: never an EnvVar whose value becomes config


def test_the_database_url_is_named_never_copied(monkeypatch) -> None:
    from lightly_assets.defs.resources import PublishTargetResource

    monkeypatch.delenv("LIGHTLY_STUDIO_DATABASE_URL", raising=False)
    assert PublishTargetResource(**from_env("publish_target")).studio_db_url_env is None  # DuckDB then
    secret = "postgresql://user:hunter2@127.0.0.1:1/db"
    monkeypatch.setenv("LIGHTLY_STUDIO_DATABASE_URL", secret)
    resource = PublishTargetResource(**from_env("publish_target"))
    assert resource.studio_db_url_env == "LIGHTLY_STUDIO_DATABASE_URL"
    assert "hunter2" not in repr(resource) and "hunter2" not in repr(resource._convert_to_config_dictionary())


def _resolved(resource: StorageResource, config: dict | None = None) -> StorageResource:
    resource_config = {"storage": {"config": config}} if config is not None else None
    with build_resources({"storage": resource}, resource_config=resource_config) as built:
        return built.storage


def test_precedence_run_config_then_environment_then_default(monkeypatch) -> None:
    monkeypatch.delenv("LIGHTLY_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("LIGHTLY_ASSETS_OUTPUT_DIR", raising=False)
    assert _resolved(StorageResource(**from_env("storage"))).data_dir == "data"  # default
    monkeypatch.setenv("LIGHTLY_ASSETS_DATA_DIR", "/env/data")
    monkeypatch.setenv("LIGHTLY_ASSETS_OUTPUT_DIR", "/env/out")
    bound = StorageResource(**from_env("storage"))
    assert (_resolved(bound).data_dir, _resolved(bound).output_dir) == ("/env/data", "/env/out")  # environment
    config = storage_config(data_dir="/option/data", output_dir=None)
    assert config == {"data_dir": "/option/data", "output_dir": {"env": "LIGHTLY_ASSETS_OUTPUT_DIR"}}
    chosen = _resolved(bound, config)
    assert (chosen.data_dir, chosen.output_dir) == ("/option/data", "/env/out")  # run config, env for the rest


def test_open_storage_lists_the_datasets_of_the_chosen_root(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    (tmp_path / ".hidden").mkdir()
    storage = open_storage(storage_config(data_dir=str(tmp_path)))
    assert list(storage.datasets().datasets) == ["cats"]
    assert storage.outputs_for("cats").name == "cats"


def test_every_bound_variable_resolves_through_dagster(monkeypatch) -> None:
    from lightly_assets.defs.resources import EmbeddingModelResource, PublishTargetResource, RayClusterResource

    values = {"LIGHTLY_ASSETS_TARGET": "bucket", "LIGHTLY_ASSETS_EXECUTOR": "ray", "LIGHTLY_ASSETS_CHECKPOINT": "/c"}
    values |= {"LIGHTLY_ASSETS_PRETRAINED_URL": "http://127.0.0.1:1/w.ckpt", "LIGHTLY_ASSETS_BUCKET_URL": "file:///b"}
    values |= {"LIGHTLY_STUDIO_DB_FILE": "/s.db", "LIGHTLY_ASSETS_DATA_DIR": "/d", "LIGHTLY_ASSETS_OUTPUT_DIR": "/o"}
    values |= {"LIGHTLY_ASSETS_ENGINE_CACHE": "/engine-cache", "LIGHTLY_ASSETS_S3_ENDPOINT": "http://127.0.0.1:9000"}
    values |= {"LIGHTLY_ASSETS_S3_REGION": "eu-west-1"}
    values |= {"LIGHTLY_ASSETS_MODEL": "timm:vit_small_patch14_dinov2.lvd142m"}
    values |= {"RAY_ADDRESS": "127.0.0.1:6379"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    classes = {"storage": StorageResource, "embedding_model": EmbeddingModelResource}
    classes |= {"publish_target": PublishTargetResource, "ray_cluster": RayClusterResource}
    resources = {key: cls(**from_env(key)) for key, cls in classes.items()}
    with build_resources(resources) as built:
        for key, fields in ENVIRONMENT.items():
            assert {f: getattr(getattr(built, key), f) for f in fields} == {f: values[n] for f, n in fields.items()}


def test_a_value_outside_the_choices_is_one_clear_line(tmp_path: Path) -> None:
    from lightly_assets.defs.resources import ConfigurationError, PublishTargetResource

    with pytest.raises(ConfigurationError, match=r"^publish_target.target='s4' is not one of studio, bucket$"):
        PublishTargetResource(target="s4").publish("ds", tmp_path, tmp_path, None, None, tmp_path / "e.csv")


def test_the_environment_is_read_when_the_definitions_are_built_not_when_imported(monkeypatch) -> None:
    """Set after this module imported `definitions.py`, the variables still reach what the UI shows: the target's
    badges, the sensor's interval, the bound storage folder."""
    monkeypatch.setenv("LIGHTLY_ASSETS_TARGET", "bucket")
    monkeypatch.setenv("LIGHTLY_ASSETS_BUCKET_URL", "gs://shared/lightly")
    monkeypatch.setenv("LIGHTLY_ASSETS_SENSOR_INTERVAL", "7")
    monkeypatch.setenv("LIGHTLY_ASSETS_DATA_DIR", "/later/data")
    definitions = defs()
    kinds = {s.key.to_user_string(): s.kinds for s in definitions.resolve_all_asset_specs()}
    assert kinds["uploaded_dataset"] == {"gcs"}
    assert definitions.resolve_sensor_def("dataset_folders_sensor").minimum_interval_seconds == 7
    with build_resources({"storage": definitions.resources["storage"]}) as built:
        assert built.storage.data_dir == "/later/data"


def test_importing_the_definitions_reads_no_variable_and_loads_no_heavy_package(tmp_path: Path) -> None:
    """A fresh process, as `dagster dev`'s code server starts: a bad interval fails only when `defs()` builds, and
    neither the import nor the build loads torch, OpenVINO, LightlyStudio or curation's search."""
    probe = (
        "import json, os, sys\n"
        "import lightly_assets.definitions as d\n"
        f"heavy = lambda: [n for n in {HEAVY!r} if n in sys.modules]\n"
        "seen = {'import': heavy()}\n"
        "try:\n"
        "    d.defs()\n"
        "except ValueError as exc:\n"
        "    seen['error'] = str(exc)\n"
        "os.environ['LIGHTLY_ASSETS_SENSOR_INTERVAL'] = '30'\n"
        "seen['interval'] = d.defs().resolve_sensor_def('dataset_folders_sensor').minimum_interval_seconds\n"
        "seen['build'] = heavy()\n"
        "print(json.dumps(seen))\n"
    )
    environment = os.environ | {"LIGHTLY_ASSETS_SENSOR_INTERVAL": "soon", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "import": [],
        "error": "invalid literal for int() with base 10: 'soon'",
        "interval": 30,
        "build": [],
    }
