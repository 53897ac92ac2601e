"""Publishing a dataset with its precomputed embeddings into LightlyStudio.

LightlyStudio (PyPI `lightly-studio`) keeps datasets in a DuckDB file or a PostgreSQL database and shows them
in its web UI (`lightly-studio gui`). This module mirrors one of our datasets into it:

- Images become image samples; each is tagged with its weak-label name.
- Videos become LightlyStudio video samples with all their frames (its UI shows videos with a frame view).
  Frames are decoded by LightlyStudio itself and matched to our CSV rows by presentation timestamp, or by
  frame number when timestamps do not line up. Frames and their video carry the video's label tag.
- Embeddings come from the Lightly CSV. Images and videos go through LightlyStudio's supported path for
  precomputed vectors: an embedder registered with `register_default_embedder` that looks the vector up by
  file path (see LightlyStudio's `examples/example_load_existing_embeddings.py`). A video's vector is the
  mean of its frame vectors, because LightlyStudio's 2-D embedding view works on videos, not on frames.
  Frames get their own vectors stored with LightlyStudio's `embedding_storage.store_embeddings` (the
  frame embedder interface receives pixels only, so it cannot look vectors up).
- A dataset of images and videos becomes two LightlyStudio datasets, since a LightlyStudio dataset holds
  one sample type: `D` for the kind it was first created with and `D (videos)` or `D (images)` for the other.

Uploads are resumable rather than one transaction, because LightlyStudio commits in batches: every run
computes what is missing (samples, tags, embeddings, a video whose frames were not all written) and
completes it, and changes nothing that is already right. Samples whose files disappeared are tagged
`missing-file` and lose their embeddings (LightlyStudio has no supported delete for single images, and
annotations made in its UI must not be lost). A DuckDB file has one writer at a time, so uploads take an
exclusive `flock` on `<db file>.lock`.

Nothing is downloaded: the analytics switch is forced off before `lightly_studio` is imported and no built-in
embedder (MobileCLIP, Perception Encoder) is ever asked for, since every collection gets our embedding
model as its default before anything is embedded. `lightly_studio` is imported inside the functions because
the import takes seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sqlmodel import Session

logger = logging.getLogger(__name__)

ANALYTICS_ENV = "LIGHTLY_STUDIO_ANALYTICS_ENABLED"
MISSING_TAG = "missing-file"
SPACE_KEY_PREFIX = "lightly-assets/precomputed"
DEFAULT_LOCK_TIMEOUT_S = 600.0
# Metadata keys on a video sample, written once all its frames are in: their absence marks a partial load.
META_SIZE = "source_size"
META_MTIME = "source_mtime_ns"
META_FRAMES = "indexed_frames"
REQUIRED_COLUMNS = ("filename", "source", "kind", "frame", "pts", "label_name", "size", "mtime_ns")
# The database engine of lightly_studio is process-global: one upload per process at a time.
_PROCESS_LOCK = threading.Lock()


class StudioError(ValueError):
    """An upload that cannot be done or completed; the message names the dataset and the reason."""

    def __init__(self, dataset: str, reason: str) -> None:
        super().__init__(f"LightlyStudio dataset {dataset!r}: {reason}")
        self.dataset = dataset
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class StudioTarget:
    """Where to publish: a DuckDB file, or a PostgreSQL URL read from the environment variable named here.

    The URL is a secret: it is read only when connecting and never printed, put into errors or results.
    """

    db_file: Path | None = None
    db_url_env: str | None = None
    dataset_name: str
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    def __post_init__(self) -> None:
        if (self.db_file is None) == (self.db_url_env is None):
            raise StudioError(self.dataset_name, "set exactly one of db_file and db_url_env")
        if not self.dataset_name.strip():
            raise StudioError(self.dataset_name, "the dataset name is empty")

    def describe(self) -> str:
        """The target without secrets, for logs and metadata."""
        if self.db_file is not None:
            return f"duckdb:{Path(self.db_file).absolute()}"
        return f"postgresql URL from ${self.db_url_env}"

    def gui_command(self) -> str:
        """The shell command that opens LightlyStudio's UI on this database, offline."""
        if self.db_file is not None:
            db = f"--db-file {shlex.quote(str(Path(self.db_file).absolute()))}"
        else:
            db = f'--db-url "${self.db_url_env}"'
        return f"{ANALYTICS_ENV}=false lightly-studio gui {db}"


@dataclass(frozen=True)
class StudioDataset:
    """One LightlyStudio dataset written by an upload (a mixed dataset gives two)."""

    name: str
    sample_type: str
    dataset_id: str
    collection_id: str
    samples: int
    embeddings: int


@dataclass(frozen=True)
class UploadResult:
    """What the database holds for the dataset after an upload, read back by query.

    `samples` and `embeddings` count images and video frames (the rows of the CSV) that are not tagged
    `missing-file`; `videos` counts video samples. `dataset_id` and `collection_id` belong to the
    LightlyStudio dataset named like ours; its UI and HTTP API address it by `collection_id`.
    """

    target: str
    dataset_name: str
    dataset_id: str
    collection_id: str
    samples: int
    embeddings: int
    videos: int
    added: int
    removed: int
    unmatched: int
    gui_command: str
    datasets: tuple[StudioDataset, ...] = ()

    def as_metadata(self) -> dict[str, str | int]:
        """Flat values for asset metadata (no secrets)."""
        return {
            "studio_target": self.target,
            "studio_dataset": self.dataset_name,
            "studio_dataset_id": self.dataset_id,
            "studio_collection_id": self.collection_id,
            "studio_samples": self.samples,
            "studio_embeddings": self.embeddings,
            "studio_videos": self.videos,
            "studio_added": self.added,
            "studio_removed": self.removed,
            "studio_unmatched": self.unmatched,
            "studio_gui_command": self.gui_command,
        }


# ---------------------------------------------------------------------------------------------------------
# What to upload: frame_index joined with the CSV, without touching LightlyStudio.


@dataclass
class _Image:
    path: str
    label_name: str
    vector: np.ndarray


@dataclass
class _Video:
    path: str
    label_name: str
    size: int
    mtime_ns: int
    by_frame: dict[int, np.ndarray] = field(default_factory=dict)
    by_pts: dict[int, np.ndarray] = field(default_factory=dict)

    def mean(self) -> np.ndarray:
        return np.mean(np.stack(list(self.by_frame.values())), axis=0).astype(np.float32)


@dataclass
class _Plan:
    images: list[_Image]
    videos: list[_Video]
    dimension: int


def _read_csv(dataset: str, csv_path: Path) -> tuple[list[str], np.ndarray]:
    """Filenames and float32 vectors of a Lightly embeddings CSV, checked enough to trust the join."""
    try:
        table = pd.read_csv(csv_path, dtype={"filenames": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise StudioError(dataset, f"cannot read embeddings CSV {csv_path}: {error}") from error
    columns = list(table.columns)
    expected = ["filenames", *(f"embedding_{i}" for i in range(len(columns) - 2)), "labels"]
    if len(columns) < 3 or columns != expected:
        raise StudioError(
            dataset, f"{csv_path} is not a Lightly embeddings CSV (header filenames, embedding_0.., labels)"
        )
    try:
        vectors = table[columns[1:-1]].to_numpy(dtype=np.float32)
    except ValueError as error:
        raise StudioError(dataset, f"{csv_path} has non-numeric embedding values") from error
    if not np.isfinite(vectors).all():
        raise StudioError(dataset, f"{csv_path} has NaN or infinite embedding values")
    filenames = table["filenames"].tolist()
    if len(set(filenames)) != len(filenames):
        raise StudioError(dataset, f"{csv_path} lists a filename twice")
    return filenames, vectors


def _optional_int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _plan(dataset: str, data_dir: Path, frame_index: pd.DataFrame, csv_path: Path) -> _Plan:
    """Join frame_index with the CSV; a sample without a vector (or the reverse) means a stale CSV."""
    missing_columns = [c for c in REQUIRED_COLUMNS if c not in frame_index.columns]
    if missing_columns:
        raise StudioError(dataset, f"frame_index lacks columns {missing_columns}")
    filenames, vectors = _read_csv(dataset, csv_path)
    row_of = {name: i for i, name in enumerate(filenames)}
    index_names = set(frame_index["filename"])
    absent = [name for name in frame_index["filename"] if name not in row_of]
    extra = [name for name in filenames if name not in index_names]
    if absent or extra:
        raise StudioError(
            dataset,
            f"{csv_path} does not match frame_index ({len(absent)} samples without a CSV row, e.g. "
            f"{absent[:3]}; {len(extra)} CSV rows without a sample, e.g. {extra[:3]}); rebuild the CSV",
        )
    root = Path(data_dir).absolute()
    images: list[_Image] = []
    videos: dict[str, _Video] = {}
    for row in frame_index.itertuples(index=False):
        vector = vectors[row_of[row.filename]]
        path = (root / row.source).as_posix()
        if row.kind == "image":
            images.append(_Image(path, str(row.label_name), vector))
            continue
        if row.kind != "video":
            raise StudioError(dataset, f"frame_index row {row.filename!r} has unknown kind {row.kind!r}")
        if _optional_int(row.frame) is None:
            raise StudioError(dataset, f"frame_index row {row.filename!r} is a video frame without a frame number")
        video = videos.setdefault(row.source, _Video(path, str(row.label_name), int(row.size), int(row.mtime_ns)))
        video.by_frame[int(row.frame)] = vector
        pts = _optional_int(row.pts)
        if pts is not None:
            video.by_pts[pts] = vector
    return _Plan(images=images, videos=list(videos.values()), dimension=int(vectors.shape[1]))


# ---------------------------------------------------------------------------------------------------------
# Database access: lock, import, connect, close.


def _db_url(target: StudioTarget) -> str:
    if target.db_file is not None:
        return f"duckdb:///{Path(target.db_file).absolute().as_posix()}"
    url = os.environ.get(str(target.db_url_env), "")
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise StudioError(
            target.dataset_name, f"${target.db_url_env} must hold a postgresql:// URL (it is unset or not one)"
        )
    return url


def _scrub(text: str, target: StudioTarget) -> str:
    """Remove the database URL and its password from a message."""
    if target.db_url_env is None:
        return text
    url = os.environ.get(target.db_url_env, "")
    secrets = [url]
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        secrets.append(make_url(url).password or "")
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def _file_lock(target: StudioTarget) -> Iterator[None]:
    """Exclusive lock on `<db file>.lock`, so two uploads never write one DuckDB file at once."""
    if target.db_file is None:
        yield
        return
    db_file = Path(target.db_file).absolute()
    db_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = db_file.with_name(db_file.name + ".lock")
    deadline = time.monotonic() + target.lock_timeout_s
    with open(lock_path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StudioError(
                        target.dataset_name,
                        f"{db_file} is being written by another upload (lock {lock_path} held for more "
                        f"than {target.lock_timeout_s:g} s); retry when it has finished",
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _import_studio() -> None:
    """Import lightly_studio offline, without letting it take over the root logger."""
    os.environ[ANALYTICS_ENV] = "false"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import lightly_studio  # noqa: F401
    from lightly_studio.dataset import env

    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    if env.LIGHTLY_STUDIO_ANALYTICS_ENABLED:
        logger.warning(
            "lightly_studio was imported before lightly_assets.studio with analytics on; "
            "set %s=false in the environment to keep it offline",
            ANALYTICS_ENV,
        )


@contextlib.contextmanager
def _connected(target: StudioTarget) -> Iterator[Session]:
    """Open the database for this process, yield LightlyStudio's session, always close it again."""
    _import_studio()
    from lightly_studio.database import db_manager

    with _PROCESS_LOCK:
        db_manager.close()
        try:
            db_manager.connect(db_url=_db_url(target))
        except StudioError:
            raise
        except Exception as error:  # any driver error becomes one clear message
            raise StudioError(target.dataset_name, _connect_problem(error, target)) from (
                None if target.db_url_env else error
            )
        session = db_manager.persistent_session()
        try:
            yield session
        except BaseException:
            with contextlib.suppress(Exception):
                session.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                db_manager.close()


def _connect_problem(error: Exception, target: StudioTarget) -> str:
    message = _scrub(f"{type(error).__name__}: {error}", target)
    if "locked by another process" in message or "Could not set lock" in message:
        return (
            f"cannot open {target.describe()}: another process has it open (a running `lightly-studio gui`?); "
            "stop it and retry"
        )
    return f"cannot open {target.describe()}: {message}"


# ---------------------------------------------------------------------------------------------------------
# The embedder LightlyStudio calls to get our vectors.


@cache
def _embedder_class() -> type:
    """Subclass LightlyStudio's embedder interfaces lazily (they live in the slow-to-import package)."""
    import lightly_studio as ls
    from lightly_studio_serve.embedder import ImagePathEmbedder, VideoPathEmbedder

    class PrecomputedEmbedder(ImagePathEmbedder, VideoPathEmbedder):
        """Answers LightlyStudio's embed calls from a table of precomputed vectors keyed by file path."""

        def __init__(self, dimension: int) -> None:
            self.dimension = dimension
            self.vectors: dict[str, np.ndarray] = {}

        def embedding_space_spec(self) -> ls.EmbeddingSpaceSpec:
            return ls.EmbeddingSpaceSpec(space_key=_space_key(self.dimension), dimension=self.dimension)

        def _lookup(self, paths: list[str]) -> ls.EmbeddingResult:
            kept = [i for i, path in enumerate(paths) if path in self.vectors]
            rows = [self.vectors[paths[i]] for i in kept]
            matrix = np.stack(rows) if rows else np.empty((0, self.dimension), dtype=np.float32)
            return ls.EmbeddingResult(embeddings=matrix.astype(np.float32), kept_indices=kept)

        def embed_images(self, paths: list[str]) -> ls.EmbeddingResult:
            return self._lookup(paths)

        def embed_videos(self, paths: list[str]) -> ls.EmbeddingResult:
            return self._lookup(paths)

    return PrecomputedEmbedder


def _space_key(dimension: int) -> str:
    return f"{SPACE_KEY_PREFIX}-{dimension}d"


_EMBEDDERS: dict[int, Any] = {}


def _embedder(dimension: int) -> Any:
    """One registered embedder per dimension and process; registering changes no default of LightlyStudio."""
    if dimension not in _EMBEDDERS:
        import lightly_studio as ls

        embedder = _embedder_class()(dimension)
        ls.register_default_embedder(embedder=embedder, for_capabilities=set())
        _EMBEDDERS[dimension] = embedder
    return _EMBEDDERS[dimension]


@contextlib.contextmanager
def _serving(dimension: int, vectors: dict[str, np.ndarray]) -> Iterator[None]:
    """Let the registered embedder answer LightlyStudio's embed calls with these vectors, for the block only."""
    embedder = _embedder(dimension)
    embedder.vectors = vectors
    try:
        yield
    finally:
        embedder.vectors = {}


# ---------------------------------------------------------------------------------------------------------
# Steps shared by images and videos.


def _default_model(session: Session, collection_id: UUID, dataset_id: UUID, dimension: int) -> UUID:
    """Make our embedding space the collection's default model (what LightlyStudio does on first embed)."""
    from lightly_studio.models.embedding_model import EmbeddingModelCreate
    from lightly_studio.resolvers import (
        collection_embedding_model_resolver,
        embedding_model_resolver,
    )

    model = embedding_model_resolver.get_or_create(
        session=session,
        embedding_model=EmbeddingModelCreate(
            name=_space_key(dimension), embedding_dimension=dimension, dataset_id=dataset_id
        ),
    )
    model_id = model.embedding_model_id
    current = collection_embedding_model_resolver.get_default_by_collection_id(
        session=session, collection_id=collection_id
    )
    if current != model_id:
        collection_embedding_model_resolver.get_or_add_collection_model(
            session=session, collection_id=collection_id, embedding_model_id=model_id
        )
        collection_embedding_model_resolver.set_default(
            session=session, collection_id=collection_id, embedding_model_id=model_id
        )
    return model_id


def _tag(session: Session, collection_id: UUID, name: str) -> UUID:
    from lightly_studio.resolvers import tag_resolver

    return tag_resolver.get_or_create_sample_tag_by_name(
        session=session, collection_id=collection_id, tag_name=name
    ).tag_id


def _tag_samples(session: Session, collection_id: UUID, by_tag: dict[str, list[UUID]]) -> None:
    """Add samples to tags; LightlyStudio skips links that exist already."""
    from lightly_studio.resolvers import tag_resolver

    for name, sample_ids in by_tag.items():
        if sample_ids:
            tag_resolver.add_sample_ids_to_tag_id(
                session=session, tag_id=_tag(session, collection_id, name), sample_ids=sample_ids
            )


def _tagged(session: Session, tag_id: UUID) -> set[UUID]:
    from lightly_studio.models.sample import SampleTagLinkTable
    from sqlmodel import col, select

    query = select(SampleTagLinkTable.sample_id).where(col(SampleTagLinkTable.tag_id) == tag_id)
    return {sample_id for sample_id in session.exec(query).all() if sample_id is not None}


def _delete_embeddings(session: Session, model_id: UUID, sample_ids: list[UUID]) -> None:
    from lightly_studio.models.sample_embedding import SampleEmbeddingTable
    from sqlmodel import col, delete

    for start in range(0, len(sample_ids), 1000):
        session.exec(
            delete(SampleEmbeddingTable).where(
                col(SampleEmbeddingTable.embedding_model_id) == model_id,
                col(SampleEmbeddingTable.sample_id).in_(sample_ids[start : start + 1000]),
            )
        )
    session.commit()


def _flag_missing(
    session: Session, collection_id: UUID, model_id: UUID, missing: list[UUID], present: list[UUID]
) -> int:
    """Tag samples whose files are gone (and drop their vectors); untag those that came back."""
    from lightly_studio.resolvers import tag_resolver

    existing = tag_resolver.get_by_name(session=session, tag_name=MISSING_TAG, collection_id=collection_id)
    if existing is None and not missing:
        return 0  # nothing was ever missing: no empty tag in the UI
    tag_id = existing.tag_id if existing is not None else _tag(session, collection_id, MISSING_TAG)
    flagged = _tagged(session, tag_id)
    returned = [sample_id for sample_id in present if sample_id in flagged]
    if returned:
        tag_resolver.remove_sample_ids_from_tag_id(session=session, tag_id=tag_id, sample_ids=returned)
    if missing:
        tag_resolver.add_sample_ids_to_tag_id(session=session, tag_id=tag_id, sample_ids=missing)
        _delete_embeddings(session, model_id, missing)
    return len(set(missing) - flagged)


def _sync_embeddings(
    session: Session,
    model_id: UUID,
    wanted: dict[UUID, np.ndarray],
    store: Callable[[list[UUID]], None],
) -> None:
    """Store vectors that are absent, replace those that differ from the CSV, leave the rest alone."""
    from lightly_studio.resolvers import sample_embedding_resolver

    stored = sample_embedding_resolver.get_by_sample_ids(
        session=session, sample_ids=list(wanted), embedding_model_id=model_id
    )
    stale = [
        row.sample_id
        for row in stored
        if not np.allclose(np.asarray(row.embedding, dtype=np.float32), wanted[row.sample_id], atol=1e-6)
    ]
    if stale:
        _delete_embeddings(session, model_id, stale)
    done = {row.sample_id for row in stored} - set(stale)
    todo = [sample_id for sample_id in wanted if sample_id not in done]
    if todo:
        store(todo)


def _count(session: Session, collection_id: UUID) -> tuple[int, int]:
    """Samples of a collection not tagged missing, and how many of them have a default-model vector."""
    from lightly_studio.models.sample import SampleTable, SampleTagLinkTable
    from lightly_studio.models.sample_embedding import SampleEmbeddingTable
    from lightly_studio.resolvers import collection_embedding_model_resolver, tag_resolver
    from sqlmodel import col, func, select

    live = select(SampleTable.sample_id).where(col(SampleTable.collection_id) == collection_id)
    tag = tag_resolver.get_by_name(session=session, tag_name=MISSING_TAG, collection_id=collection_id)
    if tag is not None:
        flagged = select(SampleTagLinkTable.sample_id).where(col(SampleTagLinkTable.tag_id) == tag.tag_id)
        live = live.where(col(SampleTable.sample_id).notin_(flagged))
    samples = session.exec(select(func.count()).select_from(live.subquery())).one()
    model_id = collection_embedding_model_resolver.get_default_by_collection_id(
        session=session, collection_id=collection_id
    )
    if model_id is None:
        return int(samples), 0
    embedded = session.exec(
        select(func.count())
        .select_from(SampleEmbeddingTable)
        .where(
            col(SampleEmbeddingTable.embedding_model_id) == model_id,
            col(SampleEmbeddingTable.sample_id).in_(live),
        )
    ).one()
    return int(samples), int(embedded)


@dataclass
class _Outcome:
    dataset: StudioDataset
    added: int = 0
    removed: int = 0
    unmatched: int = 0
    videos: int = 0


# ---------------------------------------------------------------------------------------------------------
# Images.


def _paths_in(session: Session, collection_id: UUID, table: Any) -> dict[str, UUID]:
    """File path → sample id of the images or videos (`table`) of one collection."""
    from lightly_studio.models.sample import SampleTable
    from sqlmodel import col, select

    query = (
        select(table.file_path_abs, table.sample_id)
        .join(SampleTable, col(SampleTable.sample_id) == col(table.sample_id))
        .where(col(SampleTable.collection_id) == collection_id)
    )
    return dict(session.exec(query).all())


def _image_paths(session: Session, collection_id: UUID) -> dict[str, UUID]:
    from lightly_studio.models.image import ImageTable

    return _paths_in(session, collection_id, ImageTable)


def _sync_images(name: str, images: list[_Image], dimension: int) -> _Outcome:
    import lightly_studio as ls
    from lightly_studio.core.file_outcome_report import AllInputFilesFailedError
    from lightly_studio.core.image import add_images
    from lightly_studio.embed import embed_samples

    dataset = ls.ImageDataset.load_or_create(name=name)
    session, collection_id = dataset.session, dataset.collection_id
    model_id = _default_model(session, collection_id, dataset.dataset_id, dimension)
    wanted = {image.path: image for image in images}
    before = _image_paths(session, collection_id)
    new_paths = [path for path in wanted if path not in before]
    if new_paths:
        with contextlib.suppress(AllInputFilesFailedError):  # unreadable for LightlyStudio: counted below
            add_images.load_into_dataset_from_paths(
                session=session, root_collection_id=collection_id, image_paths=new_paths, show_progress=False
            )
    present = _image_paths(session, collection_id)
    live = {path: present[path] for path in wanted if path in present}
    by_label: dict[str, list[UUID]] = {}
    for path, sample_id in live.items():
        by_label.setdefault(wanted[path].label_name, []).append(sample_id)
    _tag_samples(session, collection_id, by_label)
    missing = [sample_id for path, sample_id in present.items() if path not in wanted]
    removed = _flag_missing(session, collection_id, model_id, missing, list(live.values()))

    with _serving(dimension, {path: wanted[path].vector for path in live}):
        _sync_embeddings(
            session,
            model_id,
            {sample_id: wanted[path].vector for path, sample_id in live.items()},
            lambda todo: embed_samples.embed_image_samples(
                session=session, collection_id=collection_id, sample_ids=todo
            ),
        )
    samples, embeddings = _count(session, collection_id)
    return _Outcome(
        dataset=StudioDataset(name, "image", str(dataset.dataset_id), str(collection_id), samples, embeddings),
        added=len(set(present) - set(before)),
        removed=removed,
        unmatched=len(wanted) - len(live),
    )


# ---------------------------------------------------------------------------------------------------------
# Videos and their frames.


def _video_samples(session: Session, collection_id: UUID) -> dict[str, UUID]:
    from lightly_studio.models.video import VideoTable

    return _paths_in(session, collection_id, VideoTable)


def _frames_of(session: Session, video_ids: list[UUID]) -> dict[UUID, list[tuple[UUID, int, int]]]:
    """(frame sample id, frame number, pts) per video sample id."""
    from lightly_studio.models.video import VideoFrameTable
    from sqlmodel import col, select

    frames: dict[UUID, list[tuple[UUID, int, int]]] = {video_id: [] for video_id in video_ids}
    for start in range(0, len(video_ids), 500):
        query = select(
            VideoFrameTable.parent_sample_id,
            VideoFrameTable.sample_id,
            VideoFrameTable.frame_number,
            VideoFrameTable.frame_timestamp_pts,
        ).where(col(VideoFrameTable.parent_sample_id).in_(video_ids[start : start + 500]))
        for parent, sample_id, number, pts in session.exec(query).all():
            frames[parent].append((sample_id, number, pts))
    return frames


def _markers(session: Session, sample_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    from lightly_studio.models.metadata import SampleMetadataTable
    from sqlmodel import col, select

    query = select(SampleMetadataTable.sample_id, SampleMetadataTable.data).where(
        col(SampleMetadataTable.sample_id).in_(sample_ids)
    )
    return dict(session.exec(query).all()) if sample_ids else {}


def _is_current(marker: dict[str, Any] | None, video: _Video) -> bool:
    """A video is complete when its marker exists, and unchanged when size and mtime still match."""
    return (
        marker is not None
        and META_FRAMES in marker
        and marker.get(META_SIZE) == video.size
        and marker.get(META_MTIME) == video.mtime_ns
    )


def _referenced_elsewhere(session: Session, sample_ids: list[UUID]) -> bool:
    """Whether anything besides our own rows (vectors, tags, metadata) points at these samples."""
    from sqlmodel import SQLModel, func, select

    own = {"sample_embedding", "sampletaglinktable", "metadata", "video", "video_frame", "image"}
    for table in SQLModel.metadata.sorted_tables:
        if table.name in own:
            continue
        for foreign_key in table.foreign_keys:
            if foreign_key.column.table.name != "sample":
                continue
            for start in range(0, len(sample_ids), 1000):
                query = (
                    select(func.count())
                    .select_from(table)
                    .where(foreign_key.parent.in_(sample_ids[start : start + 1000]))
                )
                if session.exec(query).one():
                    return True
    return False


def _purge_video(session: Session, video_id: UUID, frame_ids: list[UUID]) -> bool:
    """Remove a partial or changed video so it can be loaded again; refuse if the UI added anything to it."""
    from lightly_studio.models.metadata import SampleMetadataTable
    from lightly_studio.models.sample import SampleTagLinkTable
    from lightly_studio.resolvers import video_resolver
    from sqlmodel import col, delete

    ids = [*frame_ids, video_id]
    if _referenced_elsewhere(session, ids):
        return False
    for start in range(0, len(ids), 1000):
        batch = ids[start : start + 1000]
        session.exec(delete(SampleTagLinkTable).where(col(SampleTagLinkTable.sample_id).in_(batch)))
        session.exec(delete(SampleMetadataTable).where(col(SampleMetadataTable.sample_id).in_(batch)))
    session.commit()
    video_resolver.delete_with_frames(session=session, video_sample_id=video_id)
    return True


def _load_video(session: Session, dataset: Any, video: _Video) -> int:
    """Let LightlyStudio decode one video into frames, then mark it complete; returns frames added."""
    from lightly_studio.core.file_outcome_report import AllInputFilesFailedError
    from lightly_studio.core.video import add_videos

    try:
        created, frame_ids = add_videos.load_into_collection_from_paths(
            session=session,
            collection_id=dataset.collection_id,
            video_paths=[video.path],
            show_progress=False,
            embed_frames=False,
        )
    except AllInputFilesFailedError:
        return 0  # LightlyStudio cannot read it: its frames are counted as unmatched
    for video_id in created.values():
        dataset.update_metadata(
            [(video_id, {META_SIZE: video.size, META_MTIME: video.mtime_ns, META_FRAMES: len(frame_ids)})]
        )
    return len(frame_ids)


def _match_frames(frames: list[tuple[UUID, int, int]], video: _Video) -> dict[UUID, np.ndarray]:
    """Pair LightlyStudio's frames with CSV rows by pts when every pts is known, else by frame number."""
    pts = [frame_pts for _, _, frame_pts in frames]
    if frames and video.by_pts and len(set(pts)) == len(pts) and all(p in video.by_pts for p in pts):
        return {sample_id: video.by_pts[frame_pts] for sample_id, _, frame_pts in frames}
    return {sample_id: video.by_frame[number] for sample_id, number, _ in frames if number in video.by_frame}


def _load_videos(session: Session, dataset: Any, wanted: dict[str, _Video]) -> int:
    """Load videos that are new, left partial by an interrupted run, or changed on disk; returns frames added."""
    before = _video_samples(session, dataset.collection_id)
    markers = _markers(session, list(before.values()))
    frames = _frames_of(session, list(before.values()))
    added = 0
    for path, video in wanted.items():
        video_id = before.get(path)
        if video_id is not None and not _is_current(markers.get(video_id), video):
            if _purge_video(session, video_id, [frame[0] for frame in frames[video_id]]):
                video_id = None
            else:
                logger.warning("%s changed but has annotations in LightlyStudio; keeping its old frames", path)
        if video_id is None:
            added += _load_video(session, dataset, video)
    return added


def _tag_videos(
    session: Session,
    collection_ids: tuple[UUID, UUID],
    live: dict[str, UUID],
    frames: dict[UUID, list[tuple[UUID, int, int]]],
    wanted: dict[str, _Video],
) -> None:
    """Tag each video, and each of its frames, with the video's weak label."""
    video_tags: dict[str, list[UUID]] = {}
    frame_tags: dict[str, list[UUID]] = {}
    for path, video_id in live.items():
        label = wanted[path].label_name
        video_tags.setdefault(label, []).append(video_id)
        frame_tags.setdefault(label, []).extend(frame[0] for frame in frames[video_id])
    _tag_samples(session, collection_ids[0], video_tags)
    _tag_samples(session, collection_ids[1], frame_tags)


def _embed_videos(
    session: Session,
    collection_id: UUID,
    models: tuple[UUID, UUID],
    frame_vectors: dict[UUID, np.ndarray],
    video_vectors: dict[str, tuple[UUID, np.ndarray]],
    dimension: int,
) -> None:
    """Frames: vectors stored as LightlyStudio's frame embedding does. Videos: through the registered embedder."""
    from lightly_studio.embed import embed_samples, embedding_storage

    _sync_embeddings(
        session,
        models[1],
        frame_vectors,
        lambda todo: embedding_storage.store_embeddings(
            session=session,
            model_id=models[1],
            sample_ids=todo,
            embeddings=np.stack([frame_vectors[sample_id] for sample_id in todo]),
            show_progress=False,
        ),
    )
    with _serving(dimension, {path: vector for path, (_, vector) in video_vectors.items()}):
        _sync_embeddings(
            session,
            models[0],
            dict(video_vectors.values()),
            lambda todo: embed_samples.embed_video_samples(
                session=session, collection_id=collection_id, sample_ids=todo
            ),
        )


def _sync_videos(name: str, videos: list[_Video], dimension: int) -> _Outcome:
    import lightly_studio as ls
    from lightly_studio.models.collection import SampleType
    from lightly_studio.resolvers import collection_resolver

    dataset = ls.VideoDataset.load_or_create(name=name)
    session, collection_id = dataset.session, dataset.collection_id
    frames_id = collection_resolver.get_or_create_child_collection(
        session=session, collection_id=collection_id, sample_type=SampleType.VIDEO_FRAME
    )
    models = (
        _default_model(session, collection_id, dataset.dataset_id, dimension),
        _default_model(session, frames_id, dataset.dataset_id, dimension),
    )
    wanted = {video.path: video for video in videos}
    added = _load_videos(session, dataset, wanted)
    present = _video_samples(session, collection_id)
    live = {path: present[path] for path in wanted if path in present}
    frames = _frames_of(session, list(present.values()))
    _tag_videos(session, (collection_id, frames_id), live, frames, wanted)
    gone = [video_id for path, video_id in present.items() if path not in wanted]
    _flag_missing(session, collection_id, models[0], gone, list(live.values()))
    removed = _flag_missing(
        session,
        frames_id,
        models[1],
        [frame[0] for video_id in gone for frame in frames[video_id]],
        [frame[0] for video_id in live.values() for frame in frames[video_id]],
    )
    frame_vectors: dict[UUID, np.ndarray] = {}
    for path, video_id in live.items():
        frame_vectors.update(_match_frames(frames[video_id], wanted[path]))
    video_vectors = {path: (video_id, wanted[path].mean()) for path, video_id in live.items()}
    _embed_videos(session, collection_id, models, frame_vectors, video_vectors, dimension)
    samples, embeddings = _count(session, frames_id)
    return _Outcome(
        dataset=StudioDataset(name, "video", str(dataset.dataset_id), str(collection_id), samples, embeddings),
        added=added,
        removed=removed,
        unmatched=sum(len(video.by_frame) for video in videos) - len(frame_vectors),
        videos=_count(session, collection_id)[0],
    )


# ---------------------------------------------------------------------------------------------------------
# Naming: which LightlyStudio dataset holds which kind.


def _root_type(session: Session, name: str) -> str | None:
    from lightly_studio.resolvers import collection_resolver

    collection_id = collection_resolver.get_by_name(session=session, name=name, parent_collection_id=None)
    if collection_id is None:
        return None
    collection = collection_resolver.get_by_id(session=session, collection_id=collection_id)
    return None if collection is None else collection.sample_type.value.lower()


def _frames_collection(session: Session, collection_id: UUID) -> UUID | None:
    """The frame collection under a video collection, without creating one."""
    from lightly_studio.models.collection import CollectionTable, SampleType
    from sqlmodel import col, select

    query = select(CollectionTable.collection_id).where(
        col(CollectionTable.parent_collection_id) == collection_id,
        col(CollectionTable.sample_type) == SampleType.VIDEO_FRAME,
    )
    return session.exec(query).first()


def _names(session: Session, name: str, has_images: bool) -> tuple[str, str]:
    """(image dataset name, video dataset name): the kind found first under `name` keeps it."""
    kind = _root_type(session, name)
    if kind not in (None, "image", "video"):
        raise StudioError(name, f"LightlyStudio already has a dataset {name!r} of type {kind!r}")
    if kind == "image" or (kind is None and has_images):
        return name, f"{name} (videos)"
    return f"{name} (images)", name


# ---------------------------------------------------------------------------------------------------------
# Public API.


def upload_dataset(target: StudioTarget, data_dir: Path, frame_index: pd.DataFrame, csv_path: Path) -> UploadResult:
    """Mirror one dataset with its CSV embeddings into LightlyStudio; safe to repeat and to resume."""
    name = target.dataset_name
    plan = _plan(name, Path(data_dir), frame_index, Path(csv_path))
    with _file_lock(target), _connected(target) as session:
        step = "choosing the LightlyStudio datasets"
        try:
            image_name, video_name = _names(session, name, bool(plan.images))
            outcomes: list[_Outcome] = []
            if plan.images or _root_type(session, image_name) == "image":
                step = f"writing images into {image_name!r}"
                outcomes.append(_sync_images(image_name, plan.images, plan.dimension))
            if plan.videos or _root_type(session, video_name) == "video":
                step = f"writing videos into {video_name!r}"
                outcomes.append(_sync_videos(video_name, plan.videos, plan.dimension))
        except StudioError:
            raise
        except Exception as error:
            raise StudioError(
                name,
                f"upload to {target.describe()} failed while {step}: {type(error).__name__}: "
                f"{_scrub(str(error), target)}; what was written is consistent and the next run completes it",
            ) from error
    if not outcomes:
        raise StudioError(name, "nothing to upload: frame_index is empty and LightlyStudio has no such dataset")
    primary = next((o for o in outcomes if o.dataset.name == name), outcomes[0])
    return UploadResult(
        target=target.describe(),
        dataset_name=name,
        dataset_id=primary.dataset.dataset_id,
        collection_id=primary.dataset.collection_id,
        samples=sum(o.dataset.samples for o in outcomes),
        embeddings=sum(o.dataset.embeddings for o in outcomes),
        videos=sum(o.videos for o in outcomes),
        added=sum(o.added for o in outcomes),
        removed=sum(o.removed for o in outcomes),
        unmatched=sum(o.unmatched for o in outcomes),
        gui_command=target.gui_command(),
        datasets=tuple(o.dataset for o in outcomes),
    )


def count_in_studio(target: StudioTarget, dataset_name: str) -> tuple[int, int]:
    """(samples, embeddings) that LightlyStudio holds for a dataset: images and video frames, not missing."""
    if target.db_file is not None and not Path(target.db_file).exists():
        return 0, 0
    with _file_lock(target), _connected(target) as session:
        from lightly_studio.resolvers import collection_resolver

        samples = embeddings = 0
        for name in (dataset_name, f"{dataset_name} (videos)", f"{dataset_name} (images)"):
            collection_id = collection_resolver.get_by_name(session=session, name=name, parent_collection_id=None)
            if collection_id is not None and _root_type(session, name) == "video":
                collection_id = _frames_collection(session, collection_id)
            if collection_id is not None:
                counted = _count(session, collection_id)
                samples, embeddings = samples + counted[0], embeddings + counted[1]
        return samples, embeddings
