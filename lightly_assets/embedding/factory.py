"""The one entry from "a model" to an `Embedder`: spec -> weights -> network -> engine.

`create_embedder` is the only function that makes embedders (the resource, the random baseline, Ray, benchmarks
and tests call it). Its steps, each in its own module: what the user asked for (`spec.parse_spec`); how it runs on
this machine (`settings.place`); where the weights come from (`weights.choose_weights` for lightly's network, the
family's own cache for a named model); the network (`families.build`); the engine that runs it (`assemble`:
`engines.torch.TorchEngine` or `engines.openvino`).

A shortcut skips the middle: a lightly-family network converted before is served straight from the converted-model
cache (`engines.compiled_cache`), keyed by the weights file's sha256 (or the random seed), with OpenVINO alone: about
0.2 s instead of the seconds of importing torch, building and converting the network. This module imports no torch.

`preload` makes an embedder on a worker thread ahead of time (the `embedding_model` resource starts it when the run
starts, so OpenVINO's import and compile, which release the GIL, overlap Dagster's first steps); the next
`create_embedder` with the same spec, settings, options and weights (or random weights of another note) takes it
instead of making its own, and gets its error, if any, exactly as it would have raised it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.engines.compiled_cache import ModelCache, cache_key, lightly_identity
from lightly_assets.embedding.engines.openvino import openvino_engine
from lightly_assets.embedding.engines.openvino_import import import_openvino
from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.settings import Placement, RunSettings, place
from lightly_assets.embedding.spec import BuildOptions, ModelSpec, parse_spec
from lightly_assets.embedding.weights import Weights, choose_weights, file_weights

__all__ = ["Preload", "create_embedder", "discard", "from_compiled_cache", "load_model", "preload"]


def create_embedder(
    spec: ModelSpec | str = "lightly",
    settings: RunSettings | None = None,
    options: BuildOptions | None = None,
    weights: Weights | None = None,
) -> Embedder:
    """The embedder of `spec`, checked to run before any data is read (a bad checkpoint fails here).

    `weights`: the lightly family's, as `weights.choose_weights` picked them (None: that order without a user's
    checkpoint or a trained file); a named model fetches its own, so giving weights for one is an error.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    settings, options = settings or RunSettings(), options or BuildOptions()
    preloaded = _take(spec, settings, options, weights)
    return preloaded if preloaded is not None else _create(spec, settings, options, weights)


def _create(spec: ModelSpec, settings: RunSettings, options: BuildOptions, weights: Weights | None) -> Embedder:
    placement = place(settings)
    if spec.named and weights is not None:
        raise ModelError(f"{spec}: weights {weights.describe()} belong to the lightly model, not to a named one")
    if not spec.named:
        if options.input_size < 8:
            raise ModelError(f"input_size must be at least 8 pixels, got {options.input_size}")
        if weights is None:
            weights = choose_weights(url=options.mirror, stall_timeout=options.stall_timeout, log=options.log)
        warm = _warm(weights, settings.cache_dir, placement, options)
        if warm is not None:
            return warm
    from lightly_assets.embedding.assemble import assemble  # torch: a warm OpenVINO run never imports it

    return assemble(spec, weights, settings, placement, options)


def load_model(
    checkpoint: str | Path | Weights | None, input_size: int = 64, seed: int = 0, **settings: Any
) -> Embedder:
    """`create_embedder` for the lightly network with flat arguments: a checkpoint file, chosen `Weights`, or (None)
    the seeded random initialisation. `settings` are `RunSettings`' fields (engine `torch` unless asked).
    """
    if isinstance(checkpoint, Weights):
        weights = checkpoint
    else:
        weights = file_weights("checkpoint", Path(checkpoint)) if checkpoint else Weights("random")
    return create_embedder("lightly", RunSettings(**settings), BuildOptions(input_size=input_size, seed=seed), weights)


def from_compiled_cache(
    weights: Weights, settings: RunSettings | None = None, options: BuildOptions | None = None
) -> Embedder | None:
    """The lightly network of these weights, served warm from the converted-model cache, or None (not there)."""
    settings = settings or RunSettings()
    return _warm(weights, settings.cache_dir, place(settings), options or BuildOptions())


def _warm(
    weights: Weights, cache_dir: str | Path | None, placement: Placement, options: BuildOptions
) -> Embedder | None:
    """The converted graph of these weights and settings, when the cache has it (else None: build the network)."""
    if placement.device != "cpu" or placement.engine != "openvino" or not (weights.random or weights.sha256):
        return None
    prep = Preprocessing.stretch(options.input_size)  # lightly-embed's, as the network is built with
    cache = ModelCache(cache_dir)
    identity = lightly_identity(weights, options.seed)
    if cache.lookup(cache_key(identity, prep, placement.precision)) is None:
        return None
    plan = placement.threads
    runner, meta = openvino_engine(lambda: None, identity, prep, placement.precision, plan.network_threads, cache)
    return Embedder(
        runner=runner,
        dim=int(meta["dim"]),
        description=meta["description"],
        prep=prep,
        weights=weights,
        precision=placement.precision,
        fingerprint=meta["fingerprint"],
        notes=list(placement.notes) + list(meta.get("notes", [])),
        threads=plan.network_threads,
        decode_workers=plan.decode_workers,
        low_priority_decode=plan.low_priority_decode,
    )


# ---------------------------------------------------------------------------------------------------------
# Preloading: an embedder made on a worker thread before the step that needs it asks for it.


@dataclass(frozen=True)
class Preload:
    """One embedder under way: `weights` resolves as soon as they are chosen (None: none chosen, nothing made),
    `embedder` when it is made (None: not made), or with the error that making it raised."""

    weights: Future[Weights | None]
    embedder: Future[Embedder | None]


_PRELOADS: dict[tuple[Any, ...], list[Preload]] = {}  # by what makes a model besides its weights
_PRELOADS_LOCK = threading.Lock()


def preload(
    pool: Executor,
    spec: ModelSpec | str,
    settings: RunSettings,
    options: BuildOptions,
    weights: Weights | Callable[[], Weights | None],
    warm_only: bool = False,
    wanted: Callable[[], bool] | None = None,
) -> Preload | None:
    """Make on `pool` the embedder that `create_embedder(spec, settings, options, weights)` would make; that call
    then takes it (once) instead of making its own.

    `weights` may be chosen on the pool (a function; None: make no model). The engine is imported in any case
    (OpenVINO: 0.1-0.2 s). `warm_only`: only a model the converted-model cache has, never built and converted here.
    `wanted`: asked on the pool before making the model. Nothing is preloaded for a named model (its weights may
    need a download, which the step logs) or int8 (calibrated on the dataset). `discard` forgets what was not taken.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    key = _key(spec, settings, options)
    if key is None:
        return None
    chosen: Future[Weights | None] = Future()
    if isinstance(weights, Weights):
        chosen.set_result(weights)

    def make() -> Embedder | None:
        if not chosen.done():
            try:
                chosen.set_result(weights() if callable(weights) else weights)
            except BaseException:
                chosen.set_result(None)  # the caller chooses again, and raises it itself
                raise
        picked = chosen.result()
        if place(settings).engine == "openvino":  # whatever the weights: the model runs on it (0.1-0.2 s of import)
            import_openvino()  # here, on the pool, only where the engine is OpenVINO
        if picked is None or (wanted is not None and not wanted()):
            return None
        if warm_only:
            return from_compiled_cache(picked, settings, options)
        return _create(spec, settings, options, picked)

    future = pool.submit(make)
    future.add_done_callback(lambda _: chosen.done() or chosen.set_result(None))  # cancelled: never chosen
    made = Preload(chosen, future)
    with _PRELOADS_LOCK:
        _PRELOADS.setdefault(key, []).append(made)
    return made


def discard(preloads: list[Preload]) -> None:
    """Forget these preloads where no `create_embedder` took them (the run that started them ended)."""
    with _PRELOADS_LOCK:
        for key, pending in list(_PRELOADS.items()):
            kept = [p for p in pending if p not in preloads]
            if kept:
                _PRELOADS[key] = kept
            else:
                del _PRELOADS[key]


def _take(spec: ModelSpec, settings: RunSettings, options: BuildOptions, weights: Weights | None) -> Embedder | None:
    """The preloaded embedder of exactly these arguments (waiting for it), or None; its error is raised here."""
    key = _key(spec, settings, options)
    if key is None or weights is None:
        return None
    with _PRELOADS_LOCK:
        pending = list(_PRELOADS.get(key, ()))
    for candidate in pending:
        if not _same_network(candidate.weights.result(), weights):  # known early: no wait for another model
            continue
        with _PRELOADS_LOCK:
            if candidate not in _PRELOADS.get(key, ()):
                continue  # taken by another caller meanwhile
            _PRELOADS[key].remove(candidate)
        made = candidate.embedder.result()  # None: not made after all (warm_only, not in the cache)
        return made if made is None or made.weights == weights else dataclasses.replace(made, weights=weights)
    return None


def _same_network(preloaded: Weights | None, asked: Weights) -> bool:
    """The same weights, or both the seeded random initialisation (whatever their note: the options hold the
    seed), whose provenance the caller's `Weights` then give."""
    return preloaded is not None and (preloaded == asked or (preloaded.random and asked.random))


def _key(spec: ModelSpec, settings: RunSettings, options: BuildOptions) -> tuple[Any, ...] | None:
    """What makes a model besides its weights; the log and calibration do not (None: never preloaded)."""
    if spec.named or settings.precision == "int8":
        return None
    return (spec, dataclasses.replace(settings, calibration=None), dataclasses.replace(options, log=None))
