"""CLIP models, with their text tower: `mobileclip:s0` (LightlyStudio's own MobileCLIP-S0) and
`open_clip:ARCH/PRETRAINED`.

`mobileclip:s0` is the model whose vectors LightlyStudio's GUI can search by text by itself: the dataset's
embedding space is named `mobileclip_s0`, the name of LightlyStudio's built-in MobileCLIP embedder, which the GUI
(a separate process) loads from the same weights file, `$LIGHTLY_STUDIO_MODEL_CACHE_DIR/mobileclip_s0.pt`
(downloaded there once by us, atomically), to embed the typed phrase. Preprocessing is LightlyStudio's: shorter
side to 256 bilinear, centre crop 256, pixels in [0, 1] (no mean/std).

`open_clip:` weights come from Hugging Face's cache (or the URL open_clip lists, into torch's hub cache), with
open_clip's own preprocessing; `Embedder.embed_text` embeds phrases with its text tower.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lightly_assets.embedding.download import cached_path
from lightly_assets.embedding.errors import ModelError
from lightly_assets.embedding.families.base import Network
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.spec import BuildOptions, ModelSpec
from lightly_assets.embedding.weights import fetch_hf, fetch_named
from lightly_assets.errors import first_line

MOBILECLIP_SPACE = "mobileclip_s0"  # LightlyStudio's space key and model name
MOBILECLIP_URL = "https://docs-assets.developer.apple.com/ml-research/datasets/mobileclip/mobileclip_s0.pt"
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ClipImageTower(nn.Module):
    """`encode_image` as the forward pass; `embed_text` runs the text tower (CPU, no grad)."""

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.model: Any = model  # open_clip / MobileCLIP: untyped libraries
        self.tokenizer = tokenizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(texts).to(device)).float().cpu().numpy()


def build(spec: ModelSpec, options: BuildOptions) -> Network:
    if spec.family == "mobileclip":
        return _mobileclip(spec, options)
    return _open_clip(spec, options)


def mobileclip_cache() -> Path:
    """Where LightlyStudio keeps (and its GUI looks for) the MobileCLIP-S0 weights."""
    default = Path.home() / ".cache" / "lightly-studio"
    return Path(os.environ.get("LIGHTLY_STUDIO_MODEL_CACHE_DIR") or default) / f"{MOBILECLIP_SPACE}.pt"


def _mobileclip(spec: ModelSpec, options: BuildOptions) -> Network:
    if spec.name.lower() not in ("s0", MOBILECLIP_SPACE):
        raise ModelError(f"{spec}: LightlyStudio ships MobileCLIP-S0 only; accepted: mobileclip:s0")
    weights = fetch_named(
        str(spec), MOBILECLIP_URL, mobileclip_cache(), options.mirror, options.stall_timeout, options.log
    )
    from lightly_studio.vendor import mobileclip  # slow (imports lightly_studio): only for this model

    try:
        model, _, _ = mobileclip.create_model_and_transforms(MOBILECLIP_SPACE, pretrained=str(weights.path))
    except RuntimeError as exc:
        first = first_line(exc)
        raise ModelError(f"{weights.path}: not MobileCLIP-S0 weights ({first[:300]})") from None
    prep = Preprocessing.crop(256, 256, interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tower = ClipImageTower(model, mobileclip.get_tokenizer(MOBILECLIP_SPACE))
    return Network(tower, prep, "MobileCLIP-S0 (LightlyStudio's), 512-d", weights, 512, space_key=MOBILECLIP_SPACE)


def _open_clip(spec: ModelSpec, options: BuildOptions) -> Network:
    import open_clip  # optional and slow to import: only for open_clip: models

    arch, _, tag = spec.name.partition("/")
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        known = ", ".join(f"{a}/{t}" for a, t in open_clip.list_pretrained()[:6])
        raise ModelError(
            f"{spec}: not an open_clip model with pretrained weights; accepted: open_clip:ARCH/PRETRAINED from "
            f"open_clip.list_pretrained() (e.g. {known}, …)"
        )
    if cfg.get("hf_hub"):
        parts = cfg["hf_hub"].strip("/").split("/")
        files = (parts[2],) if len(parts) > 2 else _OPEN_CLIP_FILES
        weights = fetch_hf(str(spec), "/".join(parts[:2]), files, options.stall_timeout, options.log)
    else:
        url = cfg["url"]
        weights = fetch_named(str(spec), url, cached_path(url), options.mirror, options.stall_timeout, options.log)
    # From a file, open_clip does not apply the tag's settings: pass its activation and preprocessing on.
    tag_preprocessing = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    model: Any = open_clip.create_model(
        arch,
        pretrained=str(weights.path),
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        force_preprocess_cfg=tag_preprocessing,
    )
    pp: dict[str, Any] = model.visual.preprocess_cfg
    size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    if pp.get("resize_mode", "shortest") == "squash":
        prep = Preprocessing.stretch(
            size, interpolation=pp["interpolation"], mean=tuple(pp["mean"]), std=tuple(pp["std"])
        )
    else:
        prep = Preprocessing.crop(
            size, size, interpolation=pp["interpolation"], mean=tuple(pp["mean"]), std=tuple(pp["std"])
        )
    dim = int(model.visual.output_dim)
    tower = ClipImageTower(model, open_clip.get_tokenizer(arch))
    return Network(tower, prep, f"open_clip {arch} ({tag}), {dim}-d", weights, dim)
