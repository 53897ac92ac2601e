"""OpenVINO, the CPU default: the network converted once, with the normalisation inside the graph.

`ov.convert_model` from the torch module (or `read_model` of an ONNX file); OpenVINO's PrePostProcessor builds the
normalisation into the graph (u8 NHWC -> f32 NCHW, `/255`, `-mean`, `/std`), so Python never makes a float copy of
the batch; bf16 through `INFERENCE_PRECISION_HINT` where the CPU has it natively, f32 elsewhere, int8 after NNCF
quantisation (opt-in). Converted graphs are kept by `compiled_cache`.

OpenVINO itself is imported inside the functions (`openvino_import`, which declines its telemetry first): loading
the Dagster definitions (which name this engine) and the CUDA path do not pay for it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from lightly_assets.embedding.engines.compiled_cache import ModelCache, cache_key
from lightly_assets.embedding.engines.openvino_import import import_nncf, import_openvino
from lightly_assets.embedding.errors import EngineError
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.workers import usable_cores

if TYPE_CHECKING:
    import openvino as ov
    from torch import nn

log = logging.getLogger(__name__)

_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: quantised graph, f32 for the rest
# Input pixels per infer request and network thread: a request whose activations leave the caches runs slower per
# sample. On 2 AVX-512 cores, one thread per stream (docs/benchmarks.md, 2026-12-04): the network alone at 224 px
# ran 7.1-7.6 samples/s with 1-2 per request against 4.1 with 64; the embedding step at 64 px ran fastest with 32
# per request (the network alone with 4-8: below that, the Python around each request costs more than it saves).
PIXELS_PER_THREAD = 64 * 64 * 32


def streams_for(threads: int) -> int:
    """Two streams, each with half the network's threads, where it has two threads or more; else one.

    One stream of N threads meets at a barrier after every layer: when a decode thread (or another process)
    takes one of its cores, the other threads wait for it. Two streams, each on its own batch, share no barrier,
    so one keeps its core busy while the other core decodes. `threads` 0 (OpenVINO's own choice): one stream.
    """
    return 2 if threads >= 2 else 1


class OpenVINOEngine:
    """A compiled OpenVINO model taking uint8 NHWC batches of any length; picklable (recompiles from its files).

    `streams` (default `streams_for(threads)`) infer requests run at once, one batch each: `in_flight` keeps them
    all fed; a single call splits its batch between them.
    """

    name = "openvino"

    def __init__(self, xml: Path, precision: str, threads: int, streams: int | None = None) -> None:
        ov = import_openvino()  # see the module's docstring

        self.xml, self.precision, self.threads = Path(xml), precision, threads
        self.streams = streams or streams_for(threads)
        core = ov.Core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],  # explicit: bf16 CPUs default to bf16
            "NUM_STREAMS": self.streams,  # the threads are split between the streams
        }
        if self.streams == 1:
            config["PERFORMANCE_HINT"] = "LATENCY"  # one stream: the batch is the parallelism
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(core.read_model(str(self.xml)), "CPU", config)
        self._requests = [self._compiled.create_infer_request() for _ in range(self.streams)]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """One batch, in requests of `rows_per_request` samples: split between the streams, so that all the
        threads work on it."""
        pixels = np.asarray(pixels)
        rows = self.rows_per_request(len(pixels), pixels.shape[1] * pixels.shape[2])
        if rows >= len(pixels):
            request = self._requests[0]
            request.infer({0: np.ascontiguousarray(pixels, dtype=np.uint8)})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        flight = self.in_flight()
        try:
            done = [
                vectors for start in range(0, len(pixels), rows) for vectors in flight.put(pixels[start : start + rows])
            ]
            return np.concatenate(done + flight.finish())
        finally:
            flight.close()

    def in_flight(self) -> InFlight:
        """Batches run one per stream at once: the next is filled while the others are in the network."""
        return InFlight(self._requests)

    def rows_per_request(self, batch_size: int, pixels: int) -> int:
        """Samples of `pixels` each to put into one request: a batch shared between the streams, and no more
        than PIXELS_PER_THREAD per thread of a stream (at least one; threads 0, OpenVINO's choice: every core)."""
        share = -(-batch_size // self.streams)
        threads = max(1, (self.threads or usable_cores()) // self.streams)
        return max(1, min(share, PIXELS_PER_THREAD * threads // max(1, pixels)))

    def __reduce__(self) -> tuple[type[OpenVINOEngine], tuple[Path, str, int, int]]:
        return (OpenVINOEngine, (self.xml, self.precision, self.threads, self.streams))

    def to(self, device: str, precision: str) -> OpenVINOEngine:
        """OpenVINO runs on the CPU only; `embedder.Embedder.to` hands a GPU to the torch network instead."""
        return self


class InFlight:
    """Batches in an engine's infer requests, oldest first; every method hands back vectors in submission order.

    `put` starts a batch (copied into its request, so the caller may refill its array at once), first waiting for
    the oldest batch when every request is busy; `ready` takes what has finished by now without waiting; `finish`
    waits for the rest; `close` (always, e.g. after an error) leaves no request running.
    """

    def __init__(self, requests: list[Any]) -> None:
        self._free, self._busy = list(requests), deque[Any]()

    def put(self, pixels: np.ndarray) -> list[np.ndarray]:
        done = self.ready()
        if not self._free:
            done.append(self._pop())
        request = self._free.pop()
        request.start_async({0: np.ascontiguousarray(pixels, dtype=np.uint8)}, share_inputs=False)
        self._busy.append(request)
        return done

    def ready(self) -> list[np.ndarray]:
        done = []
        while self._busy and self._busy[0].wait_for(0):
            done.append(self._pop())
        return done

    def finish(self) -> list[np.ndarray]:
        return [self._pop() for _ in range(len(self._busy))]

    def close(self) -> None:
        for request in self._busy:
            request.wait()
        self._free += self._busy
        self._busy.clear()

    def _pop(self) -> np.ndarray:
        request = self._busy.popleft()
        request.wait()
        vectors = np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        self._free.append(request)
        return vectors


def with_preprocessing(model: ov.Model, pre: Preprocessing) -> ov.Model:
    """The network behind a uint8 NHWC input of any batch size, normalised inside the graph, output (N, D).

    An output `[B, D, h, w]` is mean-pooled and `[B, T, D]` gives its first token, as for `onnx:` models.
    """
    import_openvino()
    from openvino.preprocess import ColorFormat, PrePostProcessor  # see the module's docstring

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
    ov = import_openvino()  # see the module's docstring
    import openvino.opset13 as ops  # see the module's docstring

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
    return ov.Model([flat], model.get_parameters(), model.get_name())  # pyright: ignore[reportGeneralTypeIssues]  # openvino stubs: two Model classes


def _ov_type(name: str):
    ov = import_openvino()  # see the module's docstring

    return getattr(ov.Type, name)


def _layout(name: str):
    ov = import_openvino()  # see the module's docstring

    return ov.Layout(name)


def convert(source: nn.Module | Path | str, pre: Preprocessing, calibration: np.ndarray | None = None) -> ov.Model:
    """torch module (eval, NCHW float) or ONNX file -> OpenVINO model with the preprocessing built in.

    `calibration` (uint8 NHWC samples) quantises the result to int8 with NNCF's post-training quantisation.
    """
    ov = import_openvino()  # see the module's docstring

    try:
        if isinstance(source, (str, Path)):
            model = ov.Core().read_model(str(source))
        else:
            import torch  # an ONNX file converts without torch

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
    nncf = import_nncf()  # optional and slow to import: only for precision int8

    if len(calibration) == 0:
        raise EngineError("precision int8 needs calibration samples, got none")
    batches = [calibration[i : i + batch] for i in range(0, len(calibration), batch)]
    return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))  # NNCF counts items: batches


def openvino_engine(
    source: Callable[[], nn.Module | Path | str | None] | nn.Module | Path | str,
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
        samples = None
        if precision == "int8":
            samples = calibration(pre) if callable(calibration) else calibration
        built = source() if callable(source) and not _is_module(source) else source
        if built is None or callable(built) and not _is_module(built):
            raise EngineError(f"{identity}: not in the converted-model cache, and no network was given to convert")
        model = convert(cast("nn.Module | Path | str", built), pre, samples)
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
