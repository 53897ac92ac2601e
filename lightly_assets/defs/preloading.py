"""Loading the embedding model while Dagster runs a run's first steps: in which processes, and for how long.

A run executed in one process (`lightly-assets run`, `execute_in_process`, the in-process executor) initialises its
resources once, before its first step: `EmbeddingModelResource.setup_for_execution` then starts making the model
of the `embeddings` step on a one-thread pool (`factory.preload`), so OpenVINO's import, read and compile (which
release the GIL) overlap `file_index` and `frame_index`, and the step takes the model made. A process that runs a
single step (the multiprocess executor) has nothing to overlap, nor has a run without `embeddings`: no thread there.
The pool's thread is joined when the run's resources are torn down.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dagster import InitResourceContext

from lightly_assets.embedding.factory import Preload, discard, preload
from lightly_assets.embedding.settings import RunSettings
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import Weights

EMBEDDINGS_STEP = "embeddings"


def embeds_later(context: InitResourceContext) -> bool:
    """Whether this process runs a whole plan whose steps include `embeddings` (the run's stored plan says)."""
    run, instance, log = context.run, context.instance, context.log
    if run is None or instance is None or run.execution_plan_snapshot_id is None:
        return False
    if log is not None and log.metadata.get("step_key"):
        return False  # resources of one step (multiprocess executor): nothing runs before it in this process
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return EMBEDDINGS_STEP in plan.step_keys_to_execute


class Preloads:
    """The model of the `embeddings` step made on one thread, then the random network (from the converted-model
    cache only; not when it is the model); `close` joins the thread and forgets what no step took."""

    def __init__(
        self, spec: ModelSpec, settings: RunSettings, options: BuildOptions, weights: Callable[[], Weights | None]
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lightly-assets-preload")
        self._main = preload(self._pool, spec, settings, options, weights)
        self._started = [self._main]
        if self._main is not None:
            wanted = _not_random(self._main)
            self._started.append(preload(self._pool, "lightly", settings, options, Weights("random"), True, wanted))

    def chosen(self) -> Weights | None:
        """The weights chosen on the thread (waiting for them); None: none (a download was needed, or it failed)."""
        return self._main.weights.result() if self._main is not None else None

    def close(self) -> None:
        discard([p for p in self._started if p is not None])  # first: no step finds a preload that will not run
        self._pool.shutdown(wait=True, cancel_futures=True)


def _not_random(main: Preload) -> Callable[[], bool]:
    """Unless the main model (made before, on the same thread) is the random network itself: the random network
    is the step's baseline (the quality figure), or its model when the pretrained download it tries fails."""

    def wanted() -> bool:
        chosen = main.weights.result()
        return chosen is None or not chosen.random

    return wanted
