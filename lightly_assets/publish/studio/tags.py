"""Curation results as LightlyStudio tags: the duplicates, and each selection, under a versioned name.

LightlyStudio's own sampling writes its result into a tag whose name must be new; we follow that rule for a result
that drops members: it goes into `<base>-v<k>`, the next version after the highest one the collection has. A result
that holds every member of the latest version grows that tag instead (new files and the copies they bring): each
version of a million-member tag was another million links, and DuckDB's commit of them took 13 s once the table
held 21 M. An unchanged result keeps its tag. Images are tagged in the image dataset, video frames in the video
dataset's frame collection (a selection over videos is a frame selection).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pandas as pd

from lightly_assets.publish.studio.database import connected, scrub, writer_lock
from lightly_assets.publish.studio.id_relation import add_to_tag, id_table, in_collection
from lightly_assets.publish.studio.images import ids_of, paths_in
from lightly_assets.publish.studio.naming import dataset_names, frames_collection
from lightly_assets.publish.studio.plan import absolute_paths
from lightly_assets.publish.studio.sample_ids import SampleId, as_text
from lightly_assets.publish.studio.target import StudioError, StudioTarget
from lightly_assets.publish.studio.videos import _frames_of

if TYPE_CHECKING:
    from sqlalchemy import Subquery
    from sqlmodel import Session


def versioned(base: str, existing: Sequence[str]) -> tuple[str | None, str]:
    """(latest existing `<base>-v<k>` or None, the next new name)."""
    pattern = re.compile(rf"^{re.escape(base)}-v(\d+)$")
    versions = sorted(int(m.group(1)) for name in existing if (m := pattern.match(name)))
    latest = f"{base}-v{versions[-1]}" if versions else None
    return latest, f"{base}-v{(versions[-1] if versions else 0) + 1}"


def _collection(session: Session, name: str) -> UUID | None:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import collection_resolver

    return collection_resolver.get_by_name(session=session, name=name, parent_collection_id=None)


def _image_ids(session: Session, collection_id: UUID, root: Path, images: pd.DataFrame) -> dict[str, SampleId]:
    """Image sample name -> LightlyStudio id, for the rows of `images` only (the tags' members)."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.image import ImageTable

    ids = ids_of(session, collection_id, ImageTable, absolute_paths(root, images["source"]))
    names = images["filename"].astype(str).tolist()
    return {name: sample_id for name, sample_id in zip(names, ids.tolist(), strict=True) if sample_id is not None}


def _frame_ids(session: Session, collection_id: UUID, root: Path, frames: pd.DataFrame) -> dict[str, UUID]:
    """Frame sample name -> LightlyStudio frame id, matched like the upload does (pts, else frame number), for
    the videos of `frames` only (every row of a video: the match by pts needs them all)."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.video import VideoTable

    videos = paths_in(session, collection_id, VideoTable, absolute_paths(root, frames["source"].unique()))
    stored = _frames_of(session, list(videos.values()))
    out: dict[str, UUID] = {}
    for source, rows in frames.groupby("source", sort=False):
        video_id = videos.get((root / str(source)).as_posix())
        if video_id is None:
            continue
        by_pts = {int(p): str(n) for p, n in zip(rows["pts"], rows["filename"], strict=True) if not pd.isna(p)}
        by_frame = {int(f): str(n) for f, n in zip(rows["frame"], rows["filename"], strict=True)}
        ours = stored[video_id]
        pts = [p for _, _, p in ours]
        if ours and by_pts and len(set(pts)) == len(pts) and all(p in by_pts for p in pts):
            out.update({by_pts[p]: sample_id for sample_id, _, p in ours})
        else:
            out.update({by_frame[n]: sample_id for sample_id, n, _ in ours if n in by_frame})
    return out


def _write_tag(session: Session, collection_id: UUID, base: str, sample_ids: list[SampleId]) -> str:
    """The tag written or kept, as `<name>` or `<name> (+N members)` when the latest version grew."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import tag_resolver

    existing = {t.name: t.tag_id for t in tag_resolver.get_all_by_collection_id(session, collection_id)}
    latest, new = versioned(base, list(existing))
    with id_table(session, sample_ids) as ids:
        if latest is not None:
            held, shared = _overlap(session, existing[latest], sample_ids, ids)
            if shared == held:  # the result keeps every member: the latest version grows, or stays as it is
                added = len(set(as_text(sample_ids))) - held
                if added:
                    add_to_tag(
                        session, existing[latest], in_collection(collection_id, sample_ids, ids, existing[latest])
                    )
                return f"{latest} (+{added:,} members)" if added else latest
        tag_id = tag_resolver.get_or_create_sample_tag_by_name(
            session=session, collection_id=collection_id, tag_name=new
        ).tag_id
        add_to_tag(session, tag_id, in_collection(collection_id, sample_ids, ids))
    return new


def _overlap(session: Session, tag_id: UUID, sample_ids: list[SampleId], ids: Subquery | None) -> tuple[int, int]:
    """(the tag's members, how many of them are in `sample_ids`): two counts in the database when the ids are a
    table there."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.sample import SampleTagLinkTable
    from lightly_studio.resolvers import tag_resolver
    from sqlmodel import col, func, select

    if ids is None:
        held = set(as_text(tag_resolver.get_sample_ids_by_tag_id(session, tag_id)))
        return len(held), len(held & set(as_text(sample_ids)))
    members = select(func.count()).where(col(SampleTagLinkTable.tag_id) == tag_id)
    shared = members.join_from(SampleTagLinkTable, ids, ids.c.sample_id == col(SampleTagLinkTable.sample_id))
    return session.exec(members).one(), session.exec(shared).one()


def publish_tags(
    target: StudioTarget, data_dir: Path, frame_index: pd.DataFrame, tags: Mapping[str, Sequence[str]]
) -> dict[str, str]:
    """Tag samples (by Lightly filename) under versioned names; returns base name -> tag names written, grown or kept.

    Call after `upload_dataset`: the samples must be in LightlyStudio already. An empty list writes no tag.
    """
    root = Path(data_dir).absolute()
    has_images = bool((frame_index["kind"] == "image").any())
    # only the samples that some tag holds are looked up (reading every path back takes seconds at 100,000)
    members = frame_index["filename"].isin([n for names in tags.values() for n in names])
    images = pd.DataFrame(frame_index[(frame_index["kind"] == "image") & members])
    tagged_videos = frame_index.loc[(frame_index["kind"] == "video") & members, "source"].unique()
    frames = pd.DataFrame(frame_index[(frame_index["kind"] == "video") & frame_index["source"].isin(tagged_videos)])
    written: dict[str, list[str]] = {}
    with writer_lock(target), connected(target) as session:
        try:
            image_name, video_name = dataset_names(session, target.dataset_name, has_images)
            ids: list[tuple[UUID, Mapping[str, SampleId]]] = []
            if not images.empty and (image_id := _collection(session, image_name)) is not None:
                ids.append((image_id, _image_ids(session, image_id, root, images)))
            if not frames.empty and (video_id := _collection(session, video_name)) is not None:
                frames_id = frames_collection(session, video_id)
                if frames_id is not None:
                    ids.append((frames_id, _frame_ids(session, video_id, root, frames)))
            for base, names in tags.items():
                for collection_id, by_name in ids:
                    members = [by_name[n] for n in names if n in by_name]
                    if members:
                        written.setdefault(base, []).append(_write_tag(session, collection_id, base, members))
            session.commit()
        except StudioError:
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {scrub(str(error), target)}"
            raise StudioError(target.dataset_name, f"tagging curation results failed: {reason}") from error
    return {base: ", ".join(names) for base, names in written.items()}
