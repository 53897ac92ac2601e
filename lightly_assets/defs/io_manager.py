"""The IO manager of every run: Dagster's filesystem pickles on the instance's storage, written atomically.

Several runs of one dataset at once (two `lightly-assets run` processes, the UI and the CLI) write the same
pickle. Dagster's `FilesystemIOManager` writes it in place, so a run reading its input at that moment could
load half a file. Here each value goes through `atomic_output` (a temporary file renamed into place), so a
reader gets the old value or the new one. Paths are the same as `FilesystemIOManager`'s:
`<DAGSTER_HOME>/storage/<asset>/<partition>`.

The pickle's path is bookkeeping between steps, not a fact about the dataset, so unlike `FilesystemIOManager` it
is not added to the asset's metadata (it is in the debug log). Assets whose value is a file of their own
(`embeddings_csv`, `uploaded_dataset`, `embedding_model`) return `MaterializeResult` and pickle nothing.
"""

from __future__ import annotations

import pickle
from typing import Any

from dagster import ConfigurableIOManagerFactory, Failure, InitResourceContext, InputContext, UPathIOManager
from pydantic import Field
from upath import UPath

from lightly_assets.atomic import atomic_output

PICKLE_PROTOCOL = 4  # the protocol Dagster's own filesystem IO manager uses


class _AtomicPickles(UPathIOManager):
    extension: str = ""  # as FilesystemIOManager, so values stored by either are read by the other

    def __init__(self, base_dir: str) -> None:
        super().__init__(base_path=UPath(base_dir))

    def handle_output(self, context: Any, obj: Any) -> None:
        """As `UPathIOManager.handle_output`, minus the `path` metadata entry."""
        if context.has_asset_partitions:
            paths = self._get_paths_for_partitions(context)
            if len(paths) != 1:
                raise ValueError(f"{context.asset_key.to_user_string()}: one partition per run, got {len(paths)}")
            path = next(iter(paths.values()))
        else:
            path = self._get_path(context)
        self.make_directory(path.parent)
        context.log.debug(self.get_writing_output_log_message(path))
        self.dump_to_path(context=context, obj=obj, path=path)

    def load_input(self, context: InputContext) -> Any:
        """As `UPathIOManager.load_input`; an upstream never materialized is one line naming it, not a traceback."""
        try:
            return super().load_input(context)
        except FileNotFoundError:
            if not context.has_asset_key:
                raise
            asset = context.asset_key.to_user_string()
            dataset = ", ".join(context.asset_partition_keys) if context.has_asset_partitions else ""
            where = f" for {dataset}" if dataset else ""
            raise Failure(
                description=f"{asset} has not been materialized{where}: materialize {asset}{where} first",
                allow_retries=False,
            ) from None

    def dump_to_path(self, context: Any, obj: Any, path: Any) -> None:
        with atomic_output(str(path)) as handle:
            pickle.dump(obj, handle, PICKLE_PROTOCOL)

    def load_from_path(self, context: Any, path: Any) -> Any:
        with path.open("rb") as handle:
            return pickle.load(handle)


class AtomicFilesystemIOManager(ConfigurableIOManagerFactory):
    """`FilesystemIOManager` with atomic writes; `base_dir` defaults to the instance's storage folder."""

    base_dir: str | None = Field(default=None, description="Base directory for storing files.")

    def create_io_manager(self, context: InitResourceContext) -> _AtomicPickles:
        if self.base_dir:
            return _AtomicPickles(self.base_dir)
        assert context.instance is not None, "the IO manager needs a Dagster instance or a base_dir"
        return _AtomicPickles(context.instance.storage_directory())
