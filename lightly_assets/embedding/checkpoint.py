"""The one reader of weights files: a Lightning `{"state_dict": ...}` file, a bare state dict, or safetensors.

`weights_only=True` so a checkpoint cannot run code; Lightning files written by lightly's CLI load this way.
Every failure is one line naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lightly_assets.embedding.errors import ModelError
from lightly_assets.errors import first_line


def read_state_dict(path: Path | str, what: str = "", mmap: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; `module.` prefixes (DataParallel) are dropped.

    `what` leads the reason when the file is unreadable (e.g. "cached pretrained weights are").
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        obj = _read_safetensors(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
            first = first_line(exc)
            lead = f"{what} " if what else ""
            raise ModelError(f"{path}: {lead}not a readable PyTorch checkpoint ({first})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: expected a state dict (or a dict with 'state_dict') of tensors")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def check_shapes(path: Path | str, what: str, expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]):
    """Tensors of `expected` missing from `got` or shaped differently: one line naming the file, else nothing."""
    wrong = sorted(k for k, v in expected.items() if getattr(got.get(k), "shape", None) != v.shape)
    if wrong:
        raise ModelError(
            f"{path}: does not fit {what} ({len(wrong)} tensors missing or shaped differently, e.g. {wrong[:3]})"
        )


def check_fit(path: Path | str, what: str, expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]):
    """Raise ModelError listing missing, unexpected and wrongly shaped keys, if any (a strict load's conditions)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and got[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{label}: {items[:5]}{more}")
    raise ModelError(f"{path}: checkpoint does not fit {what}: " + "; ".join(parts))


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # only Hugging Face weights come as .safetensors

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise ModelError(f"{path}: not a readable safetensors file ({str(exc).strip()[:200]})") from None
