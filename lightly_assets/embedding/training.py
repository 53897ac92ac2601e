"""Lightly's self-supervised training (SimCLR, as `lightly-ssl-train` / `lightly-magic` run it) on one dataset.

The network, loss, projection head and augmentations are lightly's own (`build_lightly_model`, `NTXentLoss`,
`SimCLRProjectionHead`, `SimCLRTransform`) with `lightly-ssl-train`'s defaults. Images are read one at a time and
video frames are decoded in a stream (PyAV, front to back, never written to disk), mixed by a shuffle buffer.
The result is written once, at the end, atomically, in `lightly-ssl-train`'s checkpoint layout (a Lightning-style
dict whose `state_dict` holds `model.backbone.*` and `model.projection_head.*`), so `lightly-embed checkpoint=…`
loads it; a run that is killed leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import importlib.metadata
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightly_assets import columns
from lightly_assets.atomic import atomic_output
from lightly_assets.dataset.video import iter_frames
from lightly_assets.embedding.checkpoint import check_shapes
from lightly_assets.embedding.errors import EmbeddingError
from lightly_assets.embedding.families.lightly import build_lightly_model, read_lightly
from lightly_assets.embedding.network import LightlyArch
from lightly_assets.embedding.settings import resolve_device, training_precision
from lightly_assets.errors import exception_line

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("filename", "source", "kind", "frame")
# lightly-ssl-train's defaults (lightly/cli/config/config.yaml): loss, optimizer and collate sections.
TEMPERATURE = 0.5
WEIGHT_DECAY = 1e-5
TRANSFORM: dict[str, Any] = dict(
    cj_prob=0.8, cj_bright=0.7, cj_contrast=0.7, cj_sat=0.7, cj_hue=0.2, min_scale=0.15,
    random_gray_scale=0.2, gaussian_blur=0.5, sigmas=(0.2, 2.0), vf_prob=0.0, hf_prob=0.5, rr_prob=0.0,
)  # fmt: skip
PROGRESS_EVERY_S = 5.0  # a progress line at most this often (always after the first step and each epoch)
DECODE_FACTOR = 4  # images and frames are scaled down to at most this many times the input size before cropping


class TrainingError(EmbeddingError):
    """Training cannot start or produced nothing; the message names the dataset or file and the reason."""


@dataclass(frozen=True)
class TrainSettings:
    """What a run does; the defaults are lightly-ssl-train's (SGD lr 1.0, batch 16, 100 epochs), plus a time budget."""

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1.0
    max_minutes: float | None = 60.0
    input_size: int = 64
    device: str = "auto"
    precision: str = "auto"
    workers: int = -1  # -1: none on a CPU (they would compete with the maths), 4 with a GPU
    seed: int = 0
    shuffle_buffer: int = 256


@dataclass
class TrainResult:
    """What a run did; `losses` holds the mean loss of each epoch (the last one may be partial)."""

    path: Path
    losses: list[float]
    epochs: int
    steps: int
    samples: int
    images_seen: int
    seconds: float
    device: str
    precision: str
    stopped_by: str
    partial_last_epoch: bool = False
    unreadable: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images_seen / self.seconds if self.seconds > 0 else 0.0


def simclr_transform(input_size: int) -> Any:
    from lightly.transforms.simclr_transform import SimCLRTransform  # lightly's transforms import torchvision

    return SimCLRTransform(input_size=input_size, **TRANSFORM)


def _cap(image: Image.Image, limit: int) -> Image.Image:
    """A loaded RGB copy (the file may close right after), at most `limit` pixels on its longer side."""
    image = image.convert("RGB")
    if max(image.size) > limit:
        image.thumbnail((limit, limit), Image.Resampling.BILINEAR)
    return image


class FrameStream(IterableDataset):
    """Every sample of `frame_index` once per epoch as two augmented views, in a shuffled, streamed order.

    Files are shuffled, then shared between loader workers; a video is decoded once, front to back, and its
    frames are mixed with other samples through a shuffle buffer, so memory stays bounded by the buffer.
    """

    def __init__(self, frame_index: pd.DataFrame, data_dir: Path, settings: TrainSettings, epoch: int = 0) -> None:
        columns.require(frame_index, REQUIRED_COLUMNS, "frame_index")
        self.data_dir = Path(data_dir)
        self.settings = settings
        self.epoch = epoch
        self.transform = simclr_transform(settings.input_size)
        self.sources: list[tuple[str, bool, frozenset[int]]] = []
        for source, rows in frame_index.groupby("source", sort=False):
            video = bool((rows["kind"] == "video").any())
            frames = frozenset(int(f) for f in rows["frame"].dropna()) if video else frozenset()
            self.sources.append((str(source), video, frames))
        self.unreadable: list[str] = []

    def _images(self, source: str, video: bool, frames: frozenset[int]) -> Iterator[Image.Image]:
        limit = self.settings.input_size * DECODE_FACTOR
        path = self.data_dir / source
        try:
            if not video:
                with Image.open(path) as im:
                    if im.format == "JPEG":
                        im.draft("RGB", (limit, limit))
                    yield _cap(im, limit)
                return
            for number, frame in iter_frames(path):
                if number in frames:
                    yield _cap(frame, limit)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is left out of training, like embedding does
            self.unreadable.append(f"{source}: {exception_line(exc)}")
            log.warning("training: skipping %s (%s)", source, exc)

    def __iter__(self) -> Iterator[Any]:
        rng = random.Random(self.settings.seed * 1_000_003 + self.epoch)
        order = list(self.sources)
        rng.shuffle(order)
        worker = get_worker_info()
        if worker is not None:
            order = order[worker.id :: worker.num_workers]
            rng = random.Random(rng.random() + worker.id)
        buffer: list[Image.Image] = []
        for source, video, frames in order:
            for image in self._images(source, video, frames):
                buffer.append(image)
                if len(buffer) >= self.settings.shuffle_buffer:
                    yield self.transform(buffer.pop(rng.randrange(len(buffer))))
        rng.shuffle(buffer)
        for image in buffer:
            yield self.transform(image)


def _collate(batch: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([views[0] for views in batch]), torch.stack([views[1] for views in batch])


def _precision(name: str, device: torch.device) -> str:
    try:
        return training_precision(name, str(device))
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def initial_model(start: Path | None, seed: int) -> torch.nn.Module:
    """Lightly's default SimCLR network, from `start` (a lightly checkpoint of that network) or seeded at random."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_lightly_model(LightlyArch())
    if start is None:
        return model
    state = read_lightly(Path(start)).state  # the one reader of Lightly checkpoints, as embedding reads them
    expected = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    check_shapes(start, "lightly's default resnet-18 SimCLR network, where training starts", expected, state)
    expected = model.state_dict()
    head_ok = all(
        getattr(state.get(k), "shape", None) == v.shape for k, v in expected.items() if k.startswith("projection_head.")
    )
    model.load_state_dict(
        {k: v for k, v in state.items() if k in expected and (head_ok or k.startswith("backbone."))}, strict=False
    )
    return model


def checkpoint_dict(model: torch.nn.Module, epoch: int, steps: int, optimizer: torch.optim.Optimizer) -> dict:
    """lightly-ssl-train's layout: what Lightning saves for `SelfSupervisedEmbedding(model=_SimCLR)`."""
    try:
        lightning = importlib.metadata.version("pytorch_lightning")
    except importlib.metadata.PackageNotFoundError:
        lightning = "unknown"
    return {
        "epoch": epoch,
        "global_step": steps,
        "pytorch-lightning_version": lightning,
        "state_dict": {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()},
        "loops": {},
        "callbacks": {},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [],
    }


def train(
    frame_index: pd.DataFrame,
    data_dir: Path,
    out: Path,
    settings: TrainSettings = TrainSettings(),
    start: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on every sample of `frame_index` and write the checkpoint to `out` (atomically, once, at the end)."""
    from lightly.loss import NTXentLoss  # lightly.loss imports lightly.models (torchvision): only when training

    n = len(frame_index)
    if settings.batch_size < 2:
        raise TrainingError(
            f"batch_size must be at least 2 (SimCLR contrasts the samples of a batch), got {settings.batch_size}"
        )
    if n < settings.batch_size:
        raise TrainingError(
            f"{data_dir}: {n} samples, too few to form one batch of {settings.batch_size}; lower batch_size"
        )
    if settings.epochs < 1:
        raise TrainingError(f"epochs must be at least 1, got {settings.epochs}")
    device = torch.device(resolve_device(settings.device))
    precision = _precision(settings.precision, device)
    workers = settings.workers if settings.workers >= 0 else (4 if device.type == "cuda" else 0)
    model: Any = initial_model(start, settings.seed).to(device).train()  # lightly's _SimCLR: backbone, head
    criterion = NTXentLoss(temperature=TEMPERATURE, memory_bank_size=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, weight_decay=WEIGHT_DECAY)
    budget = settings.max_minutes * 60 if settings.max_minutes else None
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    losses: list[float] = []
    steps = seen = 0
    said = 0.0
    stopped_by, partial, unreadable = "epochs", False, []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for epoch in range(settings.epochs):
            stream = FrameStream(frame_index, Path(data_dir), settings, epoch)
            loader = DataLoader(stream, batch_size=settings.batch_size, drop_last=True, num_workers=workers,
                                collate_fn=_collate, pin_memory=device.type == "cuda")  # fmt: skip
            epoch_losses: list[float] = []
            for x0, x1 in loader:
                x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    z0 = model.projection_head(model.backbone(x0).flatten(1))
                    z1 = model.projection_head(model.backbone(x1).flatten(1))
                loss = criterion(z0.float(), z1.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                seen += len(x0)
                epoch_losses.append(float(loss.detach()))
                elapsed = time.perf_counter() - started
                if elapsed - said < PROGRESS_EVERY_S and steps > 1 and (budget is None or elapsed <= budget):
                    continue
                said = elapsed
                say(f"epoch {epoch + 1}/{settings.epochs} step {len(epoch_losses)} loss {epoch_losses[-1]:.4f} "
                    f"({seen / elapsed:.1f} img/s)")  # fmt: skip
                if budget is not None and elapsed > budget:
                    stopped_by, partial = f"time budget ({settings.max_minutes:g} min)", True
                    break
            unreadable = sorted(set(unreadable) | set(stream.unreadable))
            if not epoch_losses:
                raise TrainingError(
                    f"{data_dir}: epoch {epoch + 1} formed no batch of {settings.batch_size} "
                    f"({len(unreadable)} files unreadable); lower batch_size"
                )
            losses.append(float(np.mean(epoch_losses)))
            say(f"epoch {epoch + 1}/{settings.epochs} done: mean loss {losses[-1]:.4f}, {len(epoch_losses)} steps")
            if stopped_by != "epochs":
                break
            partial = False
    with atomic_output(out) as handle:
        torch.save(checkpoint_dict(model, len(losses) - 1, steps, optimizer), handle)
    return TrainResult(
        path=Path(out),
        losses=losses,
        epochs=len(losses),
        steps=steps,
        samples=n,
        images_seen=seen,
        seconds=time.perf_counter() - started,
        device=str(device),
        precision=precision,
        stopped_by=stopped_by,
        partial_last_epoch=partial,
        unreadable=unreadable,
    )
