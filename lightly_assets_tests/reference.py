"""What Lightly's own tools produce: the reference every parity test compares against.

`lightly.cli` and `lightly.data` import hydra, torchvision and PyTorch Lightning (about 5 CPU-seconds), so each
function imports them when a test calls it: collecting the suite, on every xdist worker, stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightly_assets.embedding.network import LightlyArch


def lightly_embed(input_dir: Path, checkpoint: Path | str, input_size: int) -> tuple[np.ndarray, list[int], list[str]]:
    """`lightly-embed` on a folder: its dataset, transform and checkpoint loading; `checkpoint=""` means its zoo URL."""
    from lightly.cli.embed_cli import _embed_cli

    cfg = {
        "input_dir": str(input_dir),
        "checkpoint": str(checkpoint),
        "model": {"name": "resnet-18", "width": 1, "num_ftrs": 32, "out_dim": 128},
        "collate": {"input_size": input_size},
        "loader": {"batch_size": 2, "shuffle": False, "num_workers": 0, "drop_last": False},
    }
    return _embed_cli(cfg, is_cli_call=False)


def lightly_view(root: Path) -> tuple[list[str], list[int]]:
    """The filenames and labels `LightlyDataset` gives a folder, in its order."""
    from lightly.data import LightlyDataset

    ds = LightlyDataset(input_dir=str(root))
    labels = [label for _, label in ds.dataset.samples]
    return [n.replace(os.sep, "/") for n in ds.get_filenames()], labels


def lightly_backbone_vectors(checkpoint: Path, arch: LightlyArch, batch: torch.Tensor) -> np.ndarray:
    """The vectors lightly-embed computes: lightly's own model loading, then `model.backbone` flattened."""
    from lightly.cli._helpers import get_model_from_config

    cfg = {
        "checkpoint": str(checkpoint),
        "model": {"name": arch.name, "width": arch.width, "num_ftrs": arch.num_ftrs, "out_dim": arch.out_dim},
    }
    encoder = get_model_from_config(cfg)
    encoder.model.eval()
    with torch.no_grad():
        return encoder.model.backbone(batch.contiguous()).flatten(1).cpu().numpy()


def lightly_training_state(model: torch.nn.Module) -> dict[str, Any]:
    """The state dict lightly-ssl-train's Lightning module holds for `model` (keys `model.*`)."""
    from lightly.embedding import SelfSupervisedEmbedding

    return SelfSupervisedEmbedding(model, None, None, None).state_dict()


def lightly_renamed_keys(state: dict[str, Any]) -> dict[str, Any]:
    """The keys lightly's CLI loads from an older checkpoint, after its own renaming."""
    from lightly.cli._helpers import _filter_state_dict, _fix_projection_head_keys

    return _fix_projection_head_keys(_filter_state_dict(dict(state)))
