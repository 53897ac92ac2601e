"""`onnx:/path/model.onnx`: a user's own exported model, run with ONNX Runtime on every core.

Contract: one input `[B, 3, H, W]` float RGB, H x W from the file's static shape (else `input_size`); the whole
image resized to H x W (no crop, as lightly-embed resizes); ImageNet mean/std unless `mean` / `std` are set;
output `[B, D]` float (rank 4 `[B, D, h, w]` is mean-pooled, rank 3 `[B, T, D]` takes the first token).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightly_assets.embedding.download import sha256_of
from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.families.base import Network
from lightly_assets.embedding.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import Weights
from lightly_assets.errors import first_line
from lightly_assets.workers import usable_cores

_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")


class OnnxModule(nn.Module):
    """An ONNX Runtime session behind the torch module interface the engine takes (NCHW float in, (N, D) out).

    The session is rebuilt after pickling (Ray ships the model to its workers), so only the path travels.
    """

    def __init__(self, path: Path, input_name: str, rank: int) -> None:
        super().__init__()
        self.path, self.input_name, self.rank = Path(path), input_name, rank
        self._session = None

    def session(self):
        if self._session is None:
            self._session = _session(self.path)
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.detach().float().contiguous().cpu().numpy()
        (y,) = self.session().run(None, {self.input_name: pixels})[:1]
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 4:
            y = y.mean(axis=(2, 3))
        elif y.ndim == 3:
            y = y[:, 0]
        return torch.from_numpy(np.ascontiguousarray(y.reshape(len(y), -1)))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = None
        return state


def build(spec: ModelSpec, options: BuildOptions) -> Network:
    path = Path(spec.name).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: ONNX model file not found")
    session = _session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelError(f"{path}: the model takes {len(inputs)} inputs {names}; expected one [B,3,H,W] image input")
    shape = list(inputs[0].shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ModelError(f"{path}: input {inputs[0].name} has shape {shape}; expected [B,3,H,W] RGB")
    if inputs[0].type not in _FLOAT_TYPES:
        raise ModelError(f"{path}: input {inputs[0].name} is {inputs[0].type}; expected a float tensor [B,3,H,W]")
    out = outputs[0]
    if out.type not in _FLOAT_TYPES:
        raise ModelError(f"{path}: output {out.name} is {out.type} of shape {out.shape}; expected float [B,D]")
    if len(out.shape) not in (2, 3, 4):
        raise ModelError(f"{path}: output {out.name} has shape {out.shape}; expected [B,D] (or [B,T,D], [B,D,h,w])")
    height = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else options.input_size
    width = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else options.input_size
    prep = Preprocessing.stretch(
        height, width, mean=tuple(options.mean or IMAGENET_MEAN), std=tuple(options.std or IMAGENET_STD)
    )
    module = OnnxModule(path, inputs[0].name, len(out.shape))
    try:
        dim = int(module(torch.zeros(1, 3, height, width)).shape[1])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors are many; the first line says which
        first = first_line(exc)
        raise ModelError(f"{path}: the model does not run on a [1,3,{height},{width}] input ({first})") from None
    weights = Weights("checkpoint", path.resolve(), sha256_of(path), str(spec), str(path.resolve()))
    return Network(module, prep, f"ONNX {path.name}, {dim}-d", weights, dim, onnx_path=path.resolve())


def _session(path: Path):
    import onnxruntime as ort  # only for `onnx:` models (and slow to import)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = usable_cores()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - not ONNX, truncated, unsupported opset
        first = first_line(exc)
        raise ModelError(f"{path}: not a usable ONNX model ({first[:300]})") from None
