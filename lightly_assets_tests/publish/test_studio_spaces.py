"""In LightlyStudio each model is its own embedding model of the dataset: vectors of two models never mix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightly_assets.publish.studio import StudioTarget, upload_dataset
from lightly_assets.publish.studio.embedder import space_for, space_key
from lightly_assets_tests.media import make_cats_and_dogs
from lightly_assets_tests.tables import frame_index, image_rows, write_csv

pytestmark = pytest.mark.lightly_studio


def test_space_per_model_and_weights() -> None:
    assert space_for("lightly", None, 32) == space_key(32) == "lightly-assets/precomputed-32d"  # as before
    assert space_for("mobileclip:s0", "ab" * 32, 512, own="mobileclip_s0") == "mobileclip_s0"  # LightlyStudio's name
    timm = space_for("timm:vit_small_patch14_dinov2.lvd142m", "12345678" + "0" * 56, 384)
    assert timm == "lightly-assets/timm-vit_small_patch14_dinov2.lvd142m-12345678-384d"
    assert space_for("timm:vit_small_patch14_dinov2.lvd142m", "87654321" + "0" * 56, 384) != timm  # other weights


def test_two_models_are_two_embedding_models_and_the_last_is_the_default(tmp_path: Path) -> None:
    from lightly_studio.resolvers import collection_embedding_model_resolver, embedding_model_resolver

    from lightly_assets.publish.studio.database import connected

    data, db = tmp_path / "animals", tmp_path / "s.db"
    make_cats_and_dogs(data)
    index = frame_index(image_rows(data))
    target = StudioTarget(db_file=db, dataset_name="animals")
    write_csv(index, tmp_path / "a.csv", seed=0, dim=8)
    first = upload_dataset(target, data, index, tmp_path / "a.csv")
    spaces = ["lightly-assets/onnx-one.onnx-aaaaaaaa-12d", "lightly-assets/onnx-two.onnx-bbbbbbbb-12d"]
    write_csv(index, tmp_path / "b.csv", seed=1, dim=12)
    second = upload_dataset(target, data, index, tmp_path / "b.csv", space=spaces[0])
    write_csv(index, tmp_path / "c.csv", seed=2, dim=12)
    third = upload_dataset(target, data, index, tmp_path / "c.csv", space=spaces[1])
    assert (first.embeddings, second.embeddings, third.embeddings) == (6, 6, 6)
    with connected(target) as session:
        models = embedding_model_resolver.get_all_by_dataset_id(session=session, dataset_id=third.dataset_id)
        names = {m.name: m.embedding_dimension for m in models}
        default = collection_embedding_model_resolver.get_default_model_by_collection_id(
            session=session, collection_id=third.collection_id
        ).name
    assert names == {space_key(8): 8, spaces[0]: 12, spaces[1]: 12}
    assert default == spaces[1]
