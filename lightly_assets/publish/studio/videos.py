"""Videos and their frames: load, match frames to CSV rows, tag, embed."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from lightly_assets.publish.studio.bulk_writes import store_vectors
from lightly_assets.publish.studio.embedder import serving
from lightly_assets.publish.studio.images import paths_in
from lightly_assets.publish.studio.plan import VideoRow
from lightly_assets.publish.studio.sample_ids import as_uuids
from lightly_assets.publish.studio.steps import (
    Outcome,
    count_live,
    default_model,
    flag_missing,
    sync_embeddings,
    tag_samples,
)
from lightly_assets.publish.studio.target import (
    LEGACY_FRAMES,
    LEGACY_MTIME,
    LEGACY_SIZE,
    META_FRAMES,
    META_MTIME,
    META_SIZE,
    StudioDataset,
    file_size_mb,
    modified_number,
)

if TYPE_CHECKING:
    from sqlmodel import Session

logger = logging.getLogger(__name__)

# Marker key: which frames of the video are samples ("all", or a digest of the kept frame numbers when
# frame_index subsamples), so a change of frame_stride / target_fps reloads the video.
META_FRAME_SET = "lightly_assets_frame_set"


def _frame_set(video: VideoRow) -> str:
    numbers = sorted(video.by_frame)
    if numbers == list(range(len(numbers))):
        return "all"
    return hashlib.sha256(",".join(map(str, numbers)).encode()).hexdigest()[:16]


def _video_samples(session: Session, collection_id: UUID) -> dict[str, UUID]:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.video import VideoTable

    return paths_in(session, collection_id, VideoTable)


def _frames_of(session: Session, video_ids: list[UUID]) -> dict[UUID, list[tuple[UUID, int, int]]]:
    """(frame sample id, frame number, pts) per video sample id."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
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
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.metadata import SampleMetadataTable
    from sqlmodel import col, select

    query = select(SampleMetadataTable.sample_id, SampleMetadataTable.data).where(
        col(SampleMetadataTable.sample_id).in_(sample_ids)
    )
    return {sample: dict(data) for sample, data in session.exec(query).all()} if sample_ids else {}


def _is_current(marker: dict[str, Any] | None, video: VideoRow) -> bool:
    """A video is complete when its marker exists, and unchanged when size and mtime still match."""
    if marker is None or marker.get(META_FRAME_SET, "all") != _frame_set(video):
        return False
    current = (
        META_FRAMES in marker
        and marker.get(META_SIZE) == file_size_mb(video.size)
        and marker.get(META_MTIME) == modified_number(video.mtime_ns)
    )
    legacy = (
        LEGACY_FRAMES in marker and marker.get(LEGACY_SIZE) == video.size and marker.get(LEGACY_MTIME) == video.mtime_ns
    )
    return current or legacy


def _referenced_elsewhere(session: Session, sample_ids: list[UUID]) -> bool:
    """Whether anything besides our own rows (vectors, tags, metadata) points at these samples."""
    # sqlmodel comes with LightlyStudio: only uploads need it
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
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
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


def _load_video(session: Session, dataset: Any, video: VideoRow) -> int:
    """Let LightlyStudio decode one video into frames, then mark it complete; returns frames added."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
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
        # Our decoder read every frame (a video that fails part-way never reaches the CSV), LightlyStudio's did
        # not: its frames count as unmatched, and target_counts_match_csv fails naming the difference.
        logger.warning("%s: LightlyStudio could not load this video; its frames are not in the target", video.path)
        return 0
    frame_set = _frame_set(video)
    kept = len(frame_ids)
    for video_id in created.values():
        if frame_set != "all":
            kept -= _keep_only_sampled(session, video_id, video)
        marker = {META_FRAMES: kept, META_SIZE: file_size_mb(video.size), META_MTIME: modified_number(video.mtime_ns)}
        if frame_set != "all":  # only a subsampled video carries which frames were kept
            marker[META_FRAME_SET] = frame_set
        dataset.update_metadata([(video_id, marker)])
    return kept


def _keep_only_sampled(session: Session, video_id: UUID, video: VideoRow) -> int:
    """Delete the frames LightlyStudio loaded that frame_index did not keep; returns how many.

    Why after loading: LightlyStudio's loader can subsample only by `target_fps`, not every n-th frame; it decodes
    every frame either way, so loading all and deleting the others costs the same and publishes exactly our frames.
    Same order of deletes as `video_resolver.delete_with_frames` (no cascading foreign keys; DuckDB checks them
    against committed state). Nothing else refers to a frame yet: tags and vectors come after loading.
    """
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTable
    from lightly_studio.models.video import VideoFrameTable
    from sqlmodel import col, delete

    drop = [
        sample_id for sample_id, number, _ in _frames_of(session, [video_id])[video_id] if number not in video.by_frame
    ]
    for start in range(0, len(drop), 1000):
        session.exec(delete(VideoFrameTable).where(col(VideoFrameTable.sample_id).in_(drop[start : start + 1000])))
    session.commit()
    for start in range(0, len(drop), 1000):
        session.exec(delete(SampleTable).where(col(SampleTable.sample_id).in_(drop[start : start + 1000])))
    session.commit()
    return len(drop)


def _match_frames(frames: list[tuple[UUID, int, int]], video: VideoRow) -> dict[UUID, np.ndarray]:
    """Pair LightlyStudio's frames with CSV rows by pts when every pts is known, else by frame number."""
    pts = [frame_pts for _, _, frame_pts in frames]
    if frames and video.by_pts and len(set(pts)) == len(pts) and all(p in video.by_pts for p in pts):
        return {sample_id: video.by_pts[frame_pts] for sample_id, _, frame_pts in frames}
    return {sample_id: video.by_frame[number] for sample_id, number, _ in frames if number in video.by_frame}


def _load_videos(session: Session, dataset: Any, wanted: dict[str, VideoRow]) -> int:
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
    wanted: dict[str, VideoRow],
) -> None:
    """Tag each video, and each of its frames, with the video's weak label."""
    video_tags: dict[str, list[UUID]] = {}
    frame_tags: dict[str, list[UUID]] = {}
    for path, video_id in live.items():
        label = wanted[path].label_name
        video_tags.setdefault(label, []).append(video_id)
        frame_tags.setdefault(label, []).extend(frame[0] for frame in frames[video_id])
    tag_samples(session, collection_ids[0], video_tags)
    tag_samples(session, collection_ids[1], frame_tags)


def _embed_videos(
    session: Session,
    collection_id: UUID,
    models: tuple[UUID, UUID],
    frame_vectors: dict[UUID, np.ndarray],
    video_vectors: dict[str, tuple[UUID, np.ndarray]],
    dimension: int,
    space: str | None = None,
) -> None:
    """Frames: vectors stored as LightlyStudio's frame embedding does. Videos: through the registered embedder."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.embed import embed_samples

    frame_ids, frame_rows = list(frame_vectors), list(frame_vectors.values())
    sync_embeddings(
        session,
        models[1],
        frame_ids,
        frame_rows,
        lambda todo, rows: store_vectors(
            session, models[1], todo, np.stack([frame_rows[row] for row in rows.tolist()])
        ),
    )
    with serving(dimension, {path: vector for path, (_, vector) in video_vectors.items()}, space):
        sync_embeddings(
            session,
            models[0],
            [video_id for video_id, _ in video_vectors.values()],
            [vector for _, vector in video_vectors.values()],
            lambda todo, _rows: embed_samples.embed_video_samples(
                session=session, collection_id=collection_id, sample_ids=as_uuids(todo)
            ),
        )


def sync_videos(name: str, videos: list[VideoRow], dimension: int, space: str | None = None) -> Outcome:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio as ls
    from lightly_studio.models.collection import SampleType
    from lightly_studio.resolvers import collection_resolver

    dataset = ls.VideoDataset.load_or_create(name=name)
    session, collection_id = dataset.session, dataset.collection_id
    frames_id = collection_resolver.get_or_create_child_collection(
        session=session, collection_id=collection_id, sample_type=SampleType.VIDEO_FRAME
    )
    models = (
        default_model(session, collection_id, dataset.dataset_id, dimension, space),
        default_model(session, frames_id, dataset.dataset_id, dimension, space),
    )
    wanted = {video.path: video for video in videos}
    added = _load_videos(session, dataset, wanted)
    present = _video_samples(session, collection_id)
    live = {path: present[path] for path in wanted if path in present}
    frames = _frames_of(session, list(present.values()))
    _tag_videos(session, (collection_id, frames_id), live, frames, wanted)
    gone = [video_id for path, video_id in present.items() if path not in wanted]
    flag_missing(session, collection_id, models[0], gone, list(live.values()))
    removed = flag_missing(
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
    _embed_videos(session, collection_id, models, frame_vectors, video_vectors, dimension, space)
    samples, embeddings = count_live(session, frames_id)
    return Outcome(
        dataset=StudioDataset(name, "video", str(dataset.dataset_id), str(collection_id), samples, embeddings),
        added=added,
        removed=removed,
        unmatched=sum(len(video.by_frame) for video in videos) - len(frame_vectors),
        videos=count_live(session, collection_id)[0],
    )
