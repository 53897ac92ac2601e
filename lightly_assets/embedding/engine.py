"""Running a network on a batch: uint8 NHWC pixels in, float32 (N, D) vectors out.

Two engines behind one call, `engine(pixels) -> vectors`:
- `OpenVINOEngine`, the CPU default: the network converted once (`ov.convert_model` from the torch module, or
  `read_model` of an ONNX file), with the normalisation built into the graph by OpenVINO's PrePostProcessor
  (u8 NHWC -> f32 NCHW, `/255`, `-mean`, `/std`), so Python never makes a float copy of the batch; bf16 through
  `INFERENCE_PRECISION_HINT` where the CPU has it natively, f32 elsewhere, int8 after NNCF quantisation (opt-in).
- `TorchEngine`, the CUDA path (and `engine: torch` on a CPU): the same arithmetic in torch, autocast for bf16/fp16.

Conversion costs seconds (4-13 s for the default network), so its result is cached on disk (`ModelCache`): one
folder per key (weights identity, preprocessing, input shape, precision, engine and OpenVINO versions) holding
`model.xml`, `model.bin` and `meta.json` (sha256 of both files, plus whatever the caller needs to skip building
the torch module next time). Entries are written into a temporary folder and renamed into place; an entry whose
files do not match their recorded sha256 is rebuilt, never trusted. Default place: `LIGHTLY_ASSETS_ENGINE_CACHE`,
else `$XDG_CACHE_HOME/lightly-assets/openvino` (`~/.cache/...`): per user rather than per outputs folder, since an
entry depends only on the model and its settings, so every project and dataset shares one conversion.

This module imports neither torch nor OpenVINO at import time: a warm run loads only OpenVINO.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.errors import LightlyAssetsError

if TYPE_CHECKING:
    import openvino as ov
    import torch
    from torch import nn

log = logging.getLogger(__name__)

CACHE_ENV = "LIGHTLY_ASSETS_ENGINE_CACHE"  # the cache folder itself (the resource's `engine_cache_dir`)
_CACHE_FORMAT = "lightly-assets-openvino/1"
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: quantised graph, f32 for the rest
_CHUNK = 1 << 20


class EngineError(LightlyAssetsError):
    """A network the engine cannot run (conversion failed, wrong input layout); the message names the model."""


class Engine(Protocol):
    """A network ready to run: `name` (`openvino` / `torch`), the `precision` it computes in."""

    name: str
    precision: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...


def default_cache_dir() -> Path:
    """`$LIGHTLY_ASSETS_ENGINE_CACHE`, else `$XDG_CACHE_HOME/lightly-assets/openvino` (`~/.cache/...`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightly-assets" / "openvino"


def openvino_version() -> str:
    from importlib.metadata import version

    return version("openvino")


# --------------------------------------------------------------------------------------------------- torch


class TorchEngine:
    """The network in torch: normalisation, channels-last layout, autocast for bf16/fp16.

    On CUDA the uint8 batch goes through a reused pinned buffer and is copied without blocking; the float
    conversion and normalisation then run on the GPU (4x fewer bytes cross the bus than floats).
    """

    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, precision: str, preprocessing: Preprocessing):
        import torch

        self.module, self.device, self.precision, self.preprocessing = module, device, precision, preprocessing
        self._autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=device).view(shape)
        self._std = torch.tensor(preprocessing.std, dtype=torch.float32, device=device).view(shape)
        self._pinned: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW (a channels-last view, no copy on the CPU), lightly's arithmetic."""
        import torch

        if self.device.type == "cuda":
            x = self._to_gpu(batch)
        else:
            pixels = batch if batch.flags.writeable else batch.copy()  # torch wants writable memory
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        return x.to(torch.float32).mul_(1.0 / 255).sub_(self._mean).div_(self._std)

    def _to_gpu(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        if self._pinned is None or self._pinned.shape[1:] != batch.shape[1:] or len(self._pinned) < len(batch):
            self._pinned = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
            self._copied = None
        if self._copied is not None:
            self._copied.synchronize()  # the previous copy out of the shared buffer has finished
        pinned = self._pinned[: len(batch)]
        pinned.numpy()[...] = batch
        x = pinned.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return x.permute(0, 3, 1, 2)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = self.preprocess(pixels)
            if self._autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self._autocast):
                    y = self.module(x)
            else:
                y = self.module(x)
            return y.float().cpu().numpy()


# ------------------------------------------------------------------------------------------------ OpenVINO


class OpenVINOEngine:
    """A compiled OpenVINO model taking uint8 NHWC batches of any length; picklable (recompiles from its files)."""

    name = "openvino"

    def __init__(self, xml: Path, precision: str, threads: int) -> None:
        import openvino as ov

        self.xml, self.precision, self.threads = Path(xml), precision, threads
        core = ov.Core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],  # explicit: bf16 CPUs default to bf16
            "PERFORMANCE_HINT": "LATENCY",  # one stream: the batch is the parallelism
            "NUM_STREAMS": 1,
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(core.read_model(str(self.xml)), "CPU", config)
        self._request = self._compiled.create_infer_request()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(pixels, dtype=np.uint8)})
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def __reduce__(self):
        return (OpenVINOEngine, (self.xml, self.precision, self.threads))


def with_preprocessing(model: ov.Model, pre: Preprocessing) -> ov.Model:
    """The network behind a uint8 NHWC input of any batch size, normalised inside the graph, output (N, D).

    An output `[B, D, h, w]` is mean-pooled and `[B, T, D]` gives its first token, as for `onnx:` models.
    """
    from openvino.preprocess import ColorFormat, PrePostProcessor

    if len(model.inputs) != 1:
        raise EngineError(f"expected one input [B,3,H,W], got {len(model.inputs)} inputs")
    model.reshape({model.inputs[0]: [-1, 3, pre.height, pre.width]})
    model = _flat_output(model)
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(_ov_type("u8")).set_layout(_layout("NHWC")).set_color_format(ColorFormat.RGB)
    ppp.input().model().set_layout(_layout("NCHW"))
    steps = ppp.input().preprocess()
    steps.convert_element_type(_ov_type("f32"))
    steps.mean([m * 255.0 for m in pre.mean]).scale([s * 255.0 for s in pre.std])  # = (x / 255 - mean) / std
    ppp.output().tensor().set_element_type(_ov_type("f32"))
    return ppp.build()


def _flat_output(model: ov.Model) -> ov.Model:
    """The first output as (N, D): pooled over space (rank 4), first token (rank 3)."""
    import openvino as ov
    import openvino.opset13 as ops

    out = model.outputs[0]
    rank = out.get_partial_shape().rank.get_length()
    if rank == 2 and len(model.outputs) == 1:
        return model
    if rank == 4:
        flat = ops.reduce_mean(out, ops.constant(np.array([2, 3], np.int64)), keep_dims=False).output(0)
    elif rank == 3:
        flat = ops.gather(out, ops.constant(np.array(0, np.int64)), ops.constant(np.array(1, np.int64))).output(0)
    elif rank == 2:
        flat = out  # and the other outputs are dropped
    else:
        raise EngineError(f"expected an output [B,D] (or [B,D,h,w], [B,T,D]), got rank {rank}")
    return ov.Model([flat], model.get_parameters(), model.get_name())


def _ov_type(name: str):
    import openvino as ov

    return getattr(ov.Type, name)


def _layout(name: str):
    import openvino as ov

    return ov.Layout(name)


def convert(source: nn.Module | Path | str, pre: Preprocessing, calibration: np.ndarray | None = None) -> ov.Model:
    """torch module (eval, NCHW float) or ONNX file -> OpenVINO model with the preprocessing built in.

    `calibration` (uint8 NHWC samples) quantises the result to int8 with NNCF's post-training quantisation.
    """
    import openvino as ov

    try:
        if isinstance(source, (str, Path)):
            model = ov.Core().read_model(str(source))
        else:
            import torch

            example = torch.zeros(1, 3, pre.height, pre.width)
            with torch.inference_mode(False), torch.no_grad():
                model = ov.convert_model(source.to(memory_format=torch.contiguous_format), example_input=example)
        model = with_preprocessing(model, pre)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise many types; one line names the model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EngineError(
            f"{source if isinstance(source, (str, Path)) else type(source).__name__}: "
            f"OpenVINO cannot convert it ({first})"
        ) from None
    if calibration is not None:
        model = quantize_int8(model, calibration)
    return model


def quantize_int8(model: ov.Model, calibration: np.ndarray, batch: int = 16) -> ov.Model:
    """NNCF post-training quantisation on real samples (uint8 NHWC, the graph's own input)."""
    import nncf

    if len(calibration) == 0:
        raise EngineError("precision int8 needs calibration samples, got none")
    batches = [calibration[i : i + batch] for i in range(0, len(calibration), batch)]
    return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(calibration))


# --------------------------------------------------------------------------------------------------- cache


def cache_key(identity: str, pre: Preprocessing, precision: str) -> str:
    """Everything that changes the converted graph: weights, preprocessing, input shape, precision, versions."""
    text = f"{_CACHE_FORMAT}|{identity}|{pre.describe()}|{precision}|openvino {openvino_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelCache:
    """Converted models on disk, one folder per key; only entries whose files match their sha256 are used."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    def entry(self, key: str) -> Path:
        return self.root / key

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The entry's meta (with `xml`), or None when missing or corrupt (a corrupt entry is removed)."""
        folder = self.entry(key)
        meta_file = folder / "meta.json"
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text())
            files = meta["files"]
            intact = meta.get("key") == key and all(_sha256(folder / n) == h for n, h in files.items())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            intact = False
        if not intact:
            log.warning("%s: converted model is corrupt or incomplete; rebuilding it", folder)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return {**meta, "xml": str(folder / "model.xml")}

    def store(self, key: str, model: ov.Model, meta: dict[str, Any]) -> dict[str, Any]:
        """Write model.xml/.bin/meta.json into a temporary folder, then rename it into place."""
        import openvino as ov

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=self.root))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)  # keep the weights as trained
            files = {n: _sha256(tmp / n) for n in ("model.xml", "model.bin")}
            full = {**meta, "key": key, "files": files, "openvino": openvino_version(), "written": time.time()}
            (tmp / "meta.json").write_text(json.dumps(full, indent=1, sort_keys=True))
            os.chmod(tmp, 0o755)
            target = self.entry(key)
            try:
                os.rename(tmp, target)
            except OSError:  # another process stored the same key first: use its entry when intact
                if self.lookup(key) is None:
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {**full, "xml": str(self.entry(key) / "model.xml")}


def openvino_engine(
    source: Callable[[], nn.Module | Path | str] | nn.Module | Path | str,
    identity: str,
    pre: Preprocessing,
    precision: str = "fp32",
    threads: int = 0,
    cache: ModelCache | None = None,
    meta: dict[str, Any] | None = None,
    calibration: np.ndarray | Callable[[Preprocessing], np.ndarray] | None = None,
) -> tuple[OpenVINOEngine, dict[str, Any]]:
    """The compiled engine for `identity`, converted only when the cache has no intact entry for it.

    `source` may be a callable so that a warm cache never builds the torch module; `meta` is stored with a new
    entry (and returned from a cached one) so that callers can rebuild their model description without torch.
    `calibration` (int8 only): uint8 NHWC samples, or a function of the preprocessing that decodes them, called
    only when the quantised graph is not cached yet.
    """
    if precision not in _OV_PRECISION:
        raise EngineError(f"OpenVINO runs fp32, bf16 or int8, not {precision!r}")
    cache = cache or ModelCache()
    key = cache_key(identity, pre, precision)
    found = cache.lookup(key)
    if found is None and precision == "int8" and calibration is None:
        raise EngineError("precision int8 needs calibration samples to quantise the network (none given)")
    if found is None:
        start = time.perf_counter()
        samples = calibration(pre) if callable(calibration) and precision == "int8" else calibration
        samples = samples if precision == "int8" else None
        model = convert(source() if callable(source) and not _is_module(source) else source, pre, samples)
        found = cache.store(
            key,
            model,
            {
                **(meta or {}),
                "identity": identity,
                "precision": precision,
                "preprocessing": pre.describe(),
                "convert_s": round(time.perf_counter() - start, 3),
            },
        )
        log.info("converted %s for OpenVINO in %.1f s (cached in %s)", identity, found["convert_s"], cache.root)
    try:
        engine = OpenVINOEngine(Path(found["xml"]), precision, threads)
    except Exception as exc:  # noqa: BLE001 - a file that passed its sha256 but does not compile
        shutil.rmtree(cache.entry(key), ignore_errors=True)
        raise EngineError(f"{found['xml']}: OpenVINO cannot compile the cached model ({exc}); removed it") from None
    return engine, found


def _is_module(obj: object) -> bool:
    """nn.Module instances are callable too; only a plain function is a deferred source."""
    return hasattr(obj, "state_dict") and hasattr(obj, "forward")
