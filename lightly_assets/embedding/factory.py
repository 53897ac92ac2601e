"""The one entry from "a model" to an `Embedder`: spec -> weights -> network -> engine.

`create_embedder` is the only function that makes embedders (the resource, the random baseline, Ray, benchmarks
and tests call it). Its steps, each in its own module: what the user asked for (`spec.parse_spec`); how it runs on
this machine (`settings.place`); where the weights come from (`weights.choose_weights` for lightly's network, the
family's own cache for a named model); the network (`families.build`); the engine that runs it (`assemble`:
`engines.torch.TorchEngine` or `engines.openvino`).

A shortcut skips the middle: a lightly-family network converted before is served straight from the converted-model
cache (`engines.compiled_cache`), keyed by the weights file's sha256 (or the random seed), with OpenVINO alone: about
0.2 s instead of the seconds of importing torch, building and converting the network. This module imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.engines.compiled_cache import ModelCache, cache_key, lightly_identity
from lightly_assets.embedding.engines.openvino import openvino_engine
from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.settings import Placement, RunSettings, place
from lightly_assets.embedding.spec import BuildOptions, ModelSpec, parse_spec
from lightly_assets.embedding.weights import Weights, choose_weights, file_weights

__all__ = ["create_embedder", "from_compiled_cache", "load_model"]


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
