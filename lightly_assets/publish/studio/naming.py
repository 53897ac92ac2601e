"""Naming: which LightlyStudio dataset holds which sample type."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from lightly_assets.publish.studio.target import StudioError

if TYPE_CHECKING:
    from sqlmodel import Session


def root_type(session: Session, name: str) -> str | None:
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.resolvers import collection_resolver

    collection_id = collection_resolver.get_by_name(session=session, name=name, parent_collection_id=None)
    if collection_id is None:
        return None
    collection = collection_resolver.get_by_id(session=session, collection_id=collection_id)
    return None if collection is None else collection.sample_type.value.lower()


def frames_collection(session: Session, collection_id: UUID) -> UUID | None:
    """The frame collection under a video collection, without creating one."""
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.models.collection import CollectionTable, SampleType
    from sqlmodel import col, select

    query = select(CollectionTable.collection_id).where(
        col(CollectionTable.parent_collection_id) == collection_id,
        col(CollectionTable.sample_type) == SampleType.VIDEO_FRAME,
    )
    return session.exec(query).first()


def dataset_names(session: Session, name: str, has_images: bool) -> tuple[str, str]:
    """(image dataset name, video dataset name): the kind found first under `name` keeps it."""
    kind = root_type(session, name)
    if kind not in (None, "image", "video"):
        raise StudioError(name, f"LightlyStudio already has a dataset {name!r} of type {kind!r}")
    if kind == "image" or (kind is None and has_images):
        return name, f"{name} (videos)"
    return f"{name} (images)", name
