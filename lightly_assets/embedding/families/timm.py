"""`timm:NAME[.TAG]`: any timm model with pretrained weights (DINOv2/v3 ViTs, ConvNeXt, EfficientNet, CLIP towers).

Weights come from Hugging Face's cache (`$HF_HOME/hub`), where timm itself keeps them; the network is built with
`num_classes=0` (pooled penultimate features) and preprocessed with timm's own data config.
"""

from __future__ import annotations

from typing import Any

from lightly_assets.embedding.download import cached_path
from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.families.base import Network
from lightly_assets.embedding.preprocessing import Preprocessing, crop_resize
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import fetch_hf, fetch_named

_HF_FILES = ("model.safetensors", "pytorch_model.bin")


def build(spec: ModelSpec, options: BuildOptions) -> Network:
    import timm  # slow to import: only for timm: models
    import timm.data.config

    cfg = timm.models.get_pretrained_cfg(spec.name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        examples = ", ".join(timm.list_pretrained("*dinov2*")[:3] + timm.list_pretrained("convnext_tiny*")[:2])
        raise ModelError(
            f"{spec}: not a timm model with pretrained weights; accepted: timm:NAME from timm.list_pretrained() "
            f"(e.g. {examples})"
        )
    if cfg.hf_hub_id:
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES
        weights = fetch_hf(str(spec), cfg.hf_hub_id, files, options.stall_timeout, options.log)
    else:
        weights = fetch_named(
            str(spec), str(cfg.url), cached_path(str(cfg.url)), options.mirror, options.stall_timeout, options.log
        )
    model: Any = timm.create_model(
        spec.name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(weights.path)}
    )
    data = timm.data.config.resolve_data_config({}, model=model)
    _, height, width = data["input_size"]
    if height != width:
        raise ModelError(f"{spec}: non-square input {height}x{width} is not supported")
    if data.get("crop_mode", "center") != "center":
        raise ModelError(f"{spec}: timm crop mode {data.get('crop_mode')!r} is not supported (only 'center')")
    prep = Preprocessing.crop(
        int(height),
        crop_resize(int(height), float(data.get("crop_pct", 1.0))),
        interpolation=str(data.get("interpolation", "bicubic")),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
    )
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return Network(model.eval(), prep, f"timm {spec.name}, {dim}-d", weights, dim)
