"""The IO manager: values are written atomically, so concurrent or failed writes never leave half a value."""

from __future__ import annotations

from pathlib import Path

from dagster import asset, materialize


def test_io_manager_never_leaves_half_a_value(tmp_path: Path, monkeypatch) -> None:
    """Two runs of one dataset write the same pickle: a failed or concurrent write leaves the old value whole."""
    from dagster import AssetIn

    from lightly_assets.defs import io_manager
    from lightly_assets.defs.io_manager import AtomicFilesystemIOManager

    @asset
    def table() -> dict:
        return {"rows": list(range(1000))}

    @asset(ins={"table": AssetIn()})
    def count(table: dict) -> int:
        return len(table["rows"])

    resources = {"io_manager": AtomicFilesystemIOManager(base_dir=str(tmp_path))}
    assert materialize([table, count], resources=resources).output_for_node("count") == 1000
    stored = tmp_path / "table"
    before = stored.read_bytes()

    def half_then_fail(obj, handle, protocol) -> None:
        handle.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io_manager.pickle, "dump", half_then_fail)
    assert not materialize([table], resources=resources, raise_on_error=False).success
    assert stored.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["count", "table"]
