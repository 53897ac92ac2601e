"""A network handed to its engine: the cold half of `factory.create_embedder` (the half that imports torch).

The network is built (`families.build`), fingerprinted as loaded (the embedding cache's key covers the weights,
the preprocessing and the precision: switching any of them re-embeds), made faster where that computes the same
(batch norms folded), placed on its device in channels-last layout, and run by `engines.torch.TorchEngine`; on a
CPU with engine `auto`/`openvino` it is converted once into OpenVINO (`engines.openvino`, kept by the converted-model
cache; an `onnx:` file is read by OpenVINO itself). A network OpenVINO cannot convert runs with torch under engine
`auto`, with a note.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from lightly_assets.embedding import families, runtime
from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.engines.compiled_cache import ModelCache
from lightly_assets.embedding.engines.openvino import openvino_engine
from lightly_assets.embedding.engines.torch import TorchEngine
from lightly_assets.embedding.errors import EngineError, ModelError
from lightly_assets.embedding.settings import Placement, RunSettings
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import Weights


def assemble(
    spec: ModelSpec, weights: Weights | None, settings: RunSettings, placement: Placement, options: BuildOptions
) -> Embedder:
    """Build the network of `spec` and hand it to the engine `placement` chose."""
    if placement.engine == "torch":
        runtime.apply_torch_threads(placement.threads.network_threads)  # process-wide, before the network is built
    network = families.build(spec, options, weights)
    precision, notes = placement.precision, list(placement.notes)
    if network.onnx_path is not None and precision != "fp32" and placement.engine == "torch":
        notes.append(f"{spec}: the ONNX file runs in its own precision (fp32 here), not {precision}")
        precision = "fp32"
    if network.weights.random:
        notes.append(f"no checkpoint: RANDOM weights (torch seed {options.seed}), embeddings carry no learned meaning")
    tag = precision if placement.engine == "torch" else f"{precision} openvino"
    fingerprint = network.fingerprint(tag)  # the weights as loaded, before any folding
    device = "cpu" if network.onnx_path is not None else placement.device
    module = network.module
    if network.onnx_path is None:
        module = network.fold(module).to(torch.device(device)).to(memory_format=torch.channels_last)
    plan = placement.threads
    embedder = Embedder(
        runner=TorchEngine(module, torch.device(device), precision, network.preprocessing),
        dim=network.dim or 0,
        description=network.description,
        prep=network.preprocessing,
        weights=network.weights,
        precision=precision,
        fingerprint=fingerprint,
        device=device,
        notes=notes,
        threads=torch.get_num_threads() if placement.engine == "torch" else plan.network_threads,
        decode_workers=plan.decode_workers,
        low_priority_decode=plan.low_priority_decode,
        spec=str(spec),
        space_key=network.space_key,
        module=module,
    )
    if not embedder.dim:
        embedder.dim = _probe_dim(embedder)
    if placement.engine == "openvino":
        return _openvino(embedder, network, tag, settings)
    return embedder


def _openvino(embedder: Embedder, network: families.Network, tag: str, settings: RunSettings) -> Embedder:
    """The embedder run by OpenVINO (converted now, or read from the cache). Engine `auto`: a network OpenVINO
    cannot convert runs with torch, with a note, instead of failing."""
    source: torch.nn.Module | Path
    if network.onnx_path is not None:
        source = Path(network.onnx_path)
    else:
        assert embedder.module is not None
        source = embedder.module.to(memory_format=torch.contiguous_format)
    meta = {
        "fingerprint": embedder.fingerprint,
        "dim": embedder.dim,
        "description": embedder.description,
        "random_init": embedder.random_init,
        "notes": [n for n in embedder.notes if "RANDOM" in n],
    }
    cache = ModelCache(settings.cache_dir)
    try:
        runner, _ = openvino_engine(
            source, network.engine_identity(tag), embedder.prep, embedder.precision, embedder.threads, cache, meta,
            settings.calibration,
        )  # fmt: skip
    except EngineError as exc:
        if settings.engine != "auto":
            raise
        precision = "fp32" if embedder.precision == "int8" else embedder.precision
        runtime.apply_torch_threads(embedder.threads)
        assert embedder.module is not None
        torch_runner = TorchEngine(embedder.module, torch.device("cpu"), precision, embedder.prep)
        notes = [*embedder.notes, f"engine auto: {exc}; running with torch instead"]
        return dataclasses.replace(embedder, runner=torch_runner, precision=precision, notes=notes)
    return dataclasses.replace(embedder, runner=runner)


def _probe_dim(embedder: Embedder) -> int:
    """Run one blank image: an architecture that cannot take this input size fails now, not mid-dataset."""
    blank = np.zeros((1, embedder.input_size, embedder.input_size, 3), dtype=np.uint8)
    try:
        out = embedder.embed(blank)
    except RuntimeError as exc:
        where = embedder.checkpoint or "default model"
        raise ModelError(f"{where}: the network cannot embed {embedder.input_size}px images: {exc}") from None
    return int(out.shape[1])
