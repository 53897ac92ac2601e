"""`torchvision:NAME[/WEIGHTS]`: a torchvision classification model with its ImageNet weights, classifier removed.

Weights come from torch's hub cache (`$TORCH_HOME/hub/checkpoints/<file of the weights URL>`), where
`torchvision` itself keeps them; preprocessing is the weights' own `transforms()` (resize, centre crop, statistics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lightly_assets.embedding.checkpoint import read_state_dict
from lightly_assets.embedding.download import cached_path
from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.families.base import Network
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import fetch_named

_HEADS = ("fc", "classifier", "heads", "head")


def build(spec: ModelSpec, options: BuildOptions) -> Network:
    import torchvision.models as tvm  # slow to import: only for torchvision: models

    arch, _, tag = spec.name.partition("/")
    try:
        enum: Any = tvm.get_model_weights(arch)
    except (ValueError, KeyError):
        names = tvm.list_models(module=tvm)
        raise ModelError(
            f"{spec}: not a torchvision classification model; accepted: torchvision:NAME with NAME one of "
            f"{', '.join(names[:12])}, … ({len(names)} in all)"
        ) from None
    try:
        weights_enum = enum[tag] if tag else enum.DEFAULT
    except KeyError:
        raise ModelError(
            f"{spec}: {arch} has no weights {tag!r}; accepted: {', '.join(w.name for w in enum)}"
        ) from None
    weights = fetch_named(
        str(spec), weights_enum.url, cached_path(weights_enum.url), options.mirror, options.stall_timeout, options.log
    )
    with torch.device("meta"):
        model = tvm.get_model(arch, weights=None)
    assert weights.path is not None  # fetch_named returns a file or raises
    state = read_state_dict(weights.path, f"{spec} weights are")
    model.load_state_dict(state, strict=True, assign=True)
    _drop_classifier(model)
    t = weights_enum.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    prep = Preprocessing.crop(crop, resize, interpolation=t.interpolation.value, mean=tuple(t.mean), std=tuple(t.std))
    dim = _probe(model, crop)
    return Network(model.eval(), prep, f"torchvision {arch} ({weights_enum.name}), {dim}-d", weights, dim)


def _drop_classifier(model: nn.Module) -> None:
    """The penultimate features: the last Linear of the classifier head becomes Identity."""
    for name in _HEADS:
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            setattr(model, name, nn.Identity())
            return
        if isinstance(head, nn.Sequential):
            for i in reversed(range(len(head))):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Identity()
                    return
    raise ModelError(f"{type(model).__name__}: no classifier head found to remove")


@torch.inference_mode()
def _probe(model: nn.Module, size: int) -> int:
    model.eval()
    return int(model(torch.zeros(1, 3, size, size)).flatten(1).shape[1])
