"""The embedding network: Lightly's default ResNet (as `lightly-embed` builds it) or a torchvision ResNet.

Checkpoints written by `lightly-ssl-train` / `lightly-magic` are PyTorch Lightning files whose
`state_dict` holds `model.backbone.*` and `model.projection_head.*`; they load here unchanged, with the key
handling of lightly's CLI loader applied to a plain `torch.load` (see `network.py`: the same network and
the same keys without the seconds of importing `lightly.cli` and `lightly.models`). Nothing is ever
downloaded: without a checkpoint the weights are a seeded random initialisation, and `LoadedModel.random_init`
says so. How the network runs (precision, threads, memory layout, pinned batches) is `runtime.py`'s choice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from lightly_assets.embedding import runtime, warm
from lightly_assets.embedding.checkpoint import check_fit, read_state_dict
from lightly_assets.embedding.engine import Engine, EngineError, ModelCache, openvino_engine
from lightly_assets.embedding.models.spec import ModelError
from lightly_assets.embedding.network import LIGHTLY_RESNETS, LightlyArch, build_backbone, lightly_keys
from lightly_assets.embedding.network import projection_head_shapes as _projection_head_shapes
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.runtime import bf16_supported

if TYPE_CHECKING:
    from lightly.cli._cli_simclr import _SimCLR

__all__ = [
    "LightlyArch",
    "LoadedModel",
    "ModelError",
    "bf16_supported",
    "build_lightly_model",
    "load_model",
    "load_network",
    "resolve_device",
]

PREPROCESSING = "PIL resize (s,s) bilinear + ToTensor + Normalize(ImageNet)"
_FINGERPRINT_VERSION = "lightly-assets-model/2"  # 2: batch norms folded into the convolutions
_PRECISIONS = runtime.PRECISIONS
_DEFAULT_ARCH = LightlyArch()  # lightly-embed's config: resnet-18, width 1, num_ftrs 32, out_dim 128
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}

# (block type, blocks per stage) -> lightly / torchvision architecture names.
_LIGHTLY_NAMES = {spec: name for name, spec in LIGHTLY_RESNETS.items()}
_TORCHVISION_NAMES = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


class _Backbone(nn.Module):
    """`model.backbone(x)` flattened, which is exactly what `SelfSupervisedEmbedding.embed` returns per image."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(start_dim=1)


@dataclass
class LoadedModel:
    """A ready embedding network: `module` maps normalised NCHW float batches to (N, dim) vectors.

    `threads` are the network's threads (torch's intra-op threads, set process-wide when the model is loaded,
    or OpenVINO's), `decode_workers` the decode threads the pipeline runs beside them, `low_priority_decode`
    whether those threads yield to the network (CPU: the cores are shared) or not (GPU: decoding is the
    bottleneck). `engine` names what runs `embed`: `openvino` (then `compiled` runs it on the CPU) or `torch`.
    """

    module: nn.Module
    device: torch.device
    dim: int
    description: str
    checkpoint: str | None
    random_init: bool
    precision: str
    fingerprint: str
    input_size: int = 64
    notes: list[str] = field(default_factory=list)
    threads: int = 0
    decode_workers: int = 2
    low_priority_decode: bool = False
    preprocessing: Preprocessing | None = None  # None: lightly-embed's (whole image to input_size, ImageNet stats)
    spec: str = "lightly"  # what the user asked for (`LIGHTLY_ASSETS_MODEL`)
    space_key: str | None = None  # LightlyStudio's embedding space of these vectors; None: ours per dimension
    onnx_path: str | None = None  # for `onnx:` models: the file, for an engine that runs ONNX itself
    engine: str = "torch"
    compiled: Engine | None = None
    _pinned: torch.Tensor | None = field(default=None, init=False, repr=False)
    _copied: torch.cuda.Event | None = field(default=None, init=False, repr=False)
    _norm: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    @property
    def prep(self) -> Preprocessing:
        """How the pipeline turns a decoded image into this model's uint8 input."""
        return self.preprocessing or Preprocessing.stretch(self.input_size)

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 NHWC pixels (already resized) -> normalised float NCHW, the same arithmetic as lightly's transform.

        The permuted view of an NHWC array is already in channels_last layout, so no copy is made for it.
        On CUDA the uint8 batch goes through a reused pinned buffer and is copied without blocking; the
        float conversion and normalisation then run on the GPU (4x fewer bytes cross the bus than floats).
        """
        if self.device.type == "cuda":
            x = self._to_gpu(batch)
        else:
            pixels = batch if batch.flags.writeable else batch.copy()  # torch wants writable memory
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        mean, std = self._normalisation()
        return x.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)

    def _to_gpu(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 NHWC -> NCHW view on the GPU, through page-locked memory allocated once per batch shape.

        The copy to the GPU does not block; the next batch waits for it (an event) before it overwrites the
        shared buffer.
        """
        if self._pinned is None or self._pinned.shape[1:] != batch.shape[1:] or len(self._pinned) < len(batch):
            self._pinned = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
            self._copied = None
        if self._copied is not None:
            self._copied.synchronize()
        pinned = self._pinned[: len(batch)]
        pinned.numpy()[...] = batch
        x = pinned.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return x.permute(0, 3, 1, 2)

    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._norm is None:
            prep = self.prep
            mean = torch.tensor(prep.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(prep.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            self._norm = (mean, std)
        return self._norm

    @property
    def has_text(self) -> bool:
        """Whether the model has a text tower (CLIP): phrases and images share one space."""
        return hasattr(self.module, "embed_text")

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim) text embeddings of a CLIP model."""
        if not self.has_text:
            raise ModelError(f"{self.description}: this model has no text tower (use a CLIP model for text search)")
        return self.module.embed_text(texts)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a uint8 NHWC batch of `prep.shape` images; returns float32 (N, dim)."""
        if self.compiled is not None and self.device.type == "cpu":
            return self.compiled(batch)
        return self._torch_embed(batch)

    @torch.inference_mode()
    def _torch_embed(self, batch: np.ndarray) -> np.ndarray:
        x = self.preprocess(batch)
        dtype = _AUTOCAST.get(self.precision)
        if dtype is not None:
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                y = self.module(x)
        else:
            y = self.module(x)
        return y.float().cpu().numpy()


def load_model(
    checkpoint: str | None,
    input_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    decode_workers: int | None = None,
    engine: str = "torch",
    cache_dir: str | Path | None = None,
    calibration: np.ndarray | None = None,
) -> LoadedModel:
    """Build the network, load `checkpoint` (or seed a random init) and check it runs, before any data is read.

    `precision="auto"` is bf16 where the hardware computes it natively (AMX / AVX-512-BF16 CPUs, CUDA),
    else fp32; `"fp32"` gives bit-level reproducibility. `threads` / `decode_workers` default to the
    split of `runtime.plan_threads`; torch's intra-op thread count is set process-wide here.
    `engine` `auto`/`openvino` runs the network with OpenVINO on a CPU, converted once into the cache
    (`cache_dir`, default `engine.default_cache_dir()`); `precision="int8"` quantises it on `calibration`.
    """
    if input_size < 8:
        raise ModelError(f"input_size must be at least 8 pixels, got {input_size}")
    dev = resolve_device(device)
    try:
        engine_name = runtime.choose_engine(engine, dev.type)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    effective, notes = _resolve_precision(precision, dev, engine_name)
    plan = runtime.plan_threads(dev.type, runtime.usable_cores(), threads, decode_workers, engine=engine_name)
    if engine_name == "torch":
        runtime.apply_torch_threads(plan.network_threads)
    if checkpoint:
        module, description = _from_checkpoint(Path(checkpoint))
        random_init = False
    else:
        module, description = _random_lightly_model(seed)
        random_init = True
        notes.append(f"no checkpoint: RANDOM weights (torch seed {seed}), embeddings carry no learned meaning")
    module.eval()
    tag = effective if engine_name == "torch" else f"{effective} openvino"
    fingerprint = _fingerprint(module, description, input_size, tag)  # the weights as loaded
    dim = _known_dim(module)
    module = _fold_batchnorms(module).to(dev, memory_format=torch.channels_last)
    loaded = LoadedModel(
        module=module,
        device=dev,
        dim=0,
        description=description,
        checkpoint=str(checkpoint) if checkpoint else None,
        random_init=random_init,
        precision=effective,
        fingerprint=fingerprint,
        input_size=input_size,
        notes=notes,
        threads=torch.get_num_threads() if engine_name == "torch" else plan.network_threads,
        decode_workers=plan.decode_workers,
        low_priority_decode=plan.low_priority_decode,
    )
    loaded.dim = dim or _probe_dim(loaded, checkpoint)
    if engine_name == "openvino":
        _compile(loaded, warm.identity(warm_sha256(checkpoint), seed), cache_dir, calibration, None, engine == "auto")
    return loaded


def warm_sha256(checkpoint: str | Path | None) -> str | None:
    """The sha256 of the checkpoint file, which keys its converted model (None for the random init)."""
    from lightly_assets.embedding.weights import sha256_of

    return sha256_of(Path(checkpoint)) if checkpoint else None


def _compile(
    loaded: LoadedModel,
    identity: str,
    cache_dir,
    calibration: np.ndarray | None,
    source: Path | None = None,
    fallback: bool = False,
) -> None:
    """Attach the OpenVINO engine (converted now, or read from the cache) to a CPU model.

    `source`: an ONNX file that OpenVINO reads itself; else the torch module is converted. `fallback`
    (engine `auto`): a network OpenVINO cannot convert runs with torch, with a note, instead of failing.
    """
    module = source if source is not None else loaded.module.to(memory_format=torch.contiguous_format)
    meta = {
        "fingerprint": loaded.fingerprint,
        "dim": loaded.dim,
        "description": loaded.description,
        "random_init": loaded.random_init,
        "notes": [n for n in loaded.notes if "RANDOM" in n],
    }
    try:
        loaded.compiled, _ = openvino_engine(
            module, identity, loaded.prep, loaded.precision, loaded.threads, ModelCache(cache_dir), meta, calibration
        )
    except EngineError as exc:
        if not fallback:
            raise
        loaded.notes.append(f"engine auto: {exc}; running with torch instead")
        loaded.precision = "fp32" if loaded.precision == "int8" else loaded.precision
        runtime.apply_torch_threads(loaded.threads)
        return
    loaded.engine = "openvino"


def load_network(
    network,  # lightly_assets.embedding.models.Network
    spec: str,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    decode_workers: int | None = None,
    engine: str = "torch",
    cache_dir: str | Path | None = None,
    calibration: np.ndarray | None = None,
) -> LoadedModel:
    """Hand a named model's network to the engine: device, precision and threads as for `load_model`.

    The fingerprint (the embedding cache's key) covers the spec, the weights file's sha256, the preprocessing
    and the precision: switching any of them re-embeds. With OpenVINO an `onnx:` file is read by OpenVINO itself.
    """
    dev = resolve_device(device)
    try:
        engine_name = runtime.choose_engine(engine, dev.type)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    effective, notes = _resolve_precision(precision, dev, engine_name)
    if network.onnx_path is not None and effective != "fp32" and engine_name == "torch":
        notes.append(f"{spec}: the ONNX file runs in its own precision (fp32 here), not {effective}")
        effective = "fp32"
    plan = runtime.plan_threads(dev.type, runtime.usable_cores(), threads, decode_workers, engine=engine_name)
    if engine_name == "torch":
        runtime.apply_torch_threads(plan.network_threads)
    prep = network.preprocessing
    tag = effective if engine_name == "torch" else f"{effective} openvino"
    identity = f"{_FINGERPRINT_VERSION}|{spec}|{network.weights.sha256}|{prep.describe()}|{tag}"
    module = (
        network.module if network.onnx_path is not None else network.module.to(dev, memory_format=torch.channels_last)
    )
    loaded = LoadedModel(
        module=module,
        device=dev if network.onnx_path is None else torch.device("cpu"),
        dim=network.dim,
        description=network.description,
        checkpoint=str(network.weights.path) if network.weights.path else None,
        random_init=False,
        precision=effective,
        fingerprint=hashlib.sha256(identity.encode()).hexdigest()[:32],
        input_size=prep.height,
        notes=notes,
        threads=torch.get_num_threads() if engine_name == "torch" else plan.network_threads,
        decode_workers=plan.decode_workers,
        low_priority_decode=plan.low_priority_decode,
        preprocessing=prep,
        spec=spec,
        space_key=network.space_key,
        onnx_path=str(network.onnx_path) if network.onnx_path else None,
    )
    if engine_name == "openvino":
        source = Path(network.onnx_path) if network.onnx_path is not None else None
        _compile(loaded, f"{identity}|{warm.LOADER_VERSION}", cache_dir, calibration, source, engine == "auto")
    return loaded


def build_lightly_model(arch: LightlyArch = _DEFAULT_ARCH) -> _SimCLR:
    """The network of `lightly.cli._helpers.get_model_from_config`, built from lightly's own classes.

    For writing checkpoints in lightly's format (training, tests, benchmarks); embedding does not need it
    and does not pay for its imports (`network.build_backbone` is the same backbone).
    """
    from lightly.cli._cli_simclr import _SimCLR
    from lightly.models import ResNetGenerator
    from lightly.models.batchnorm import get_norm_layer

    resnet = ResNetGenerator(arch.name, arch.width)
    last_conv_channels = list(resnet.children())[-1].in_features
    features = nn.Sequential(
        get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.Conv2d(last_conv_channels, arch.num_ftrs, 1),
        nn.AdaptiveAvgPool2d(1),
    )
    return _SimCLR(features, num_ftrs=arch.num_ftrs, out_dim=arch.out_dim)


def _random_lightly_model(seed: int) -> tuple[nn.Module, str]:
    """Seeded without touching the caller's global RNG state; the same weights as lightly's classes give."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(LightlyArch())
    return _Backbone(backbone), _describe_lightly(LightlyArch(), "random init")


def _describe_lightly(arch: LightlyArch, origin: str) -> str:
    width = f" width {arch.width:g}" if arch.width != 1 else ""
    return f"lightly {arch.name}{width} SimCLR backbone, {arch.num_ftrs}-d ({origin})"


def resolve_device(device: str) -> torch.device:
    """The one place a device is chosen: `auto` is CUDA when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev


def _resolve_precision(precision: str, device: torch.device, engine: str = "torch") -> tuple[str, list[str]]:
    if precision not in _PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    if precision in ("fp32", "int8"):
        return runtime.choose_precision(precision, device.type, False, engine)
    return runtime.choose_precision(precision, device.type, bf16_supported(device), engine)


def _from_checkpoint(path: Path) -> tuple[nn.Module, str]:
    state = read_state_dict(path)
    keys = list(state)
    if any(k.startswith("module.") for k in keys):
        state = {k.removeprefix("module."): v for k, v in state.items()}
        keys = list(state)
    if any(re.match(r"^(model\.)?(backbone|features)\.", k) for k in keys):
        return _load_lightly(path, state)
    if any(k.startswith("layer1.") for k in keys) and "conv1.weight" in state:
        return _load_torchvision(path, state)
    raise ModelError(
        f"{path}: neither a lightly checkpoint (keys 'model.backbone.*') nor a torchvision ResNet state dict "
        f"(keys 'conv1.weight', 'layer1.*'); first keys: {keys[:5]}"
    )


def _stage_blocks(keys: list[str], stage_prefixes: list[str]) -> tuple[str, tuple[int, ...]]:
    """Block type and blocks per stage, read from key names such as `layer3.5.conv2.weight`."""
    counts = []
    for prefix in stage_prefixes:
        found = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
        counts.append(max(found) + 1 if found else 0)
    bottleneck = any(re.match(re.escape(stage_prefixes[0]) + r"\d+\.conv3\.", k) for k in keys)
    return ("bottleneck" if bottleneck else "basic"), tuple(counts)


def _lightly_arch(path: Path, state: Mapping[str, torch.Tensor]) -> LightlyArch:
    """Recover the `lightly-embed` config (name, width, num_ftrs, out_dim) the checkpoint was trained with."""
    keys = list(state)
    block, counts = _stage_blocks(keys, [f"backbone.{i}." for i in (3, 4, 5, 6)])
    name = _LIGHTLY_NAMES.get((block, counts))
    conv1, head = state.get("backbone.1.weight"), state.get("backbone.7.weight")
    if name is None or conv1 is None or head is None:
        raise ModelError(
            f"{path}: not a lightly ResNet checkpoint: {block} blocks per stage {counts} "
            f"(expected one of {sorted(set(_LIGHTLY_NAMES.values()))}); "
            f"backbone.1.weight {'found' if conv1 is not None else 'missing'}, "
            f"backbone.7.weight {'found' if head is not None else 'missing'}"
        )
    proj = state.get("projection_head.layers.2.weight")
    return LightlyArch(
        name=name,
        width=conv1.shape[0] / 64,
        num_ftrs=int(head.shape[0]),
        out_dim=int(proj.shape[0]) if proj is not None else 128,
    )


def _load_lightly(path: Path, state: Mapping[str, torch.Tensor]) -> tuple[nn.Module, str]:
    """lightly's CLI key handling (`model.` prefix, old `features`, old projection heads), then a strict load.

    The projection head is not used for embedding, but a SimCLR checkpoint must carry a head of the right
    shapes, as lightly's strict loader requires; a backbone-only file loads too.
    """
    if not all(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}
    fixed = lightly_keys(state)
    arch = _lightly_arch(path, fixed)
    with torch.device("meta"):  # no random init of weights that the checkpoint replaces
        backbone = build_backbone(arch)
    expected: dict[str, torch.Tensor] = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    origin = "backbone"
    if any(k.startswith("projection_head.") for k in fixed):
        origin = "SimCLR"
        expected |= {k: torch.empty(shape) for k, shape in _projection_head_shapes(arch).items()}
    check_fit(path, _describe_lightly(arch, origin), expected, fixed)
    weights = {  # float32 like the network lightly builds (a half-precision file is converted, as copy_ would)
        k.removeprefix("backbone."): v.float() if v.is_floating_point() else v
        for k, v in fixed.items()
        if k.startswith("backbone.")
    }
    backbone.load_state_dict(weights, strict=True, assign=True)
    return _Backbone(backbone), _describe_lightly(arch, f"checkpoint {path.name}")


def _load_torchvision(path: Path, state: Mapping[str, torch.Tensor]) -> tuple[nn.Module, str]:
    """A torchvision ResNet with `fc` dropped: the output is the pooled feature vector (512 or 2048-d)."""
    block, counts = _stage_blocks(list(state), [f"layer{i}." for i in (1, 2, 3, 4)])
    name = _TORCHVISION_NAMES.get((block, counts))
    if name is None:
        raise ModelError(
            f"{path}: not a torchvision ResNet state dict: {block} blocks per stage {counts} "
            f"(expected one of {sorted(_TORCHVISION_NAMES.values())})"
        )
    import torchvision.models  # only for torchvision checkpoints: its import costs start-up

    model = getattr(torchvision.models, name)(weights=None)
    model.fc = nn.Identity()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_fit(path, f"torchvision {name}", model.state_dict(), state)
    model.load_state_dict(state, strict=True)
    return model, f"torchvision {name} (fc dropped), checkpoint {path.name}"


def _fingerprint(module: nn.Module, description: str, input_size: int, precision: str) -> str:
    """Stable over runs: every tensor's name, dtype, shape and bytes, plus everything that changes the output."""
    h = hashlib.sha256()
    arch = re.sub(r"\(.*\)$", "", description)  # the file name is not part of the identity, its weights are
    h.update(f"{_FINGERPRINT_VERSION}|{arch}|{PREPROCESSING}|{input_size}|{precision}".encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _fold_batchnorms(module: nn.Module) -> nn.Module:
    """lightly's backbone with each eval-mode BatchNorm folded into the convolution before it (torch.fx).

    One pass over memory less per layer: ~8% faster in fp32 and bf16 on CPU; outputs differ from the
    unfolded network by ~1e-7 (relative) in fp32. Other networks are returned as they are.
    """
    if not (isinstance(module, _Backbone) and isinstance(module.backbone, nn.Sequential)):
        return module
    from torch.fx.experimental.optimization import fuse  # torch.fx is loaded with torch: no import cost

    return _Backbone(fuse(module.backbone)).eval()


def _known_dim(module: nn.Module) -> int | None:
    """The output size of lightly's backbone (its last conv's channels, pooled over any input >= 8 px).

    Known without running the network, so start-up does not pay for a probe batch of another shape than
    the real batches (the first call of each shape builds the CPU kernels, 0.1-0.5 s).
    """
    if isinstance(module, _Backbone) and isinstance(module.backbone, nn.Sequential):
        last_conv = module.backbone[-2]
        if isinstance(last_conv, nn.Conv2d) and isinstance(module.backbone[-1], nn.AdaptiveAvgPool2d):
            return int(last_conv.out_channels)
    return None


def _probe_dim(model: LoadedModel, checkpoint: str | None) -> int:
    """Run one blank image: an architecture that cannot take this input size fails now, not mid-dataset."""
    blank = np.zeros((1, model.input_size, model.input_size, 3), dtype=np.uint8)
    try:
        out = model.embed(blank)
    except RuntimeError as exc:
        where = checkpoint or "default model"
        raise ModelError(f"{where}: the network cannot embed {model.input_size}px images: {exc}") from None
    return int(out.shape[1])
