"""The model of the `embeddings` step is made while a run's first steps run: the vectors, the failures and the
threads a user sees are those of a run that loads it in the step."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, materialize

from lightly_assets.defs.embedding import embeddings
from lightly_assets.defs.indexing import file_index, frame_index
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.defs.resources import EmbeddingModelResource, RayClusterResource, StorageResource
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets.summary import failure_reason

NAMES = ["a/1.png", "a/2.png", "b/3.png", "b/4.png", "b/5.png"]
PRELOAD_THREAD = "lightly-assets-preload"


def _run(tmp_path: Path, model: EmbeddingModelResource):
    (tmp_path / "home").mkdir(exist_ok=True)
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
        return materialize(
            [file_index, frame_index, embeddings], instance=instance, partition_key="ds", raise_on_error=False,
            resources={
                "storage": StorageResource(data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out")),
                "embedding_model": model, "ray_cluster": RayClusterResource(),
            },
        )  # fmt: skip


def _preload_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PRELOAD_THREAD)]


@pytest.mark.e2e  # Dagster materialisations, an OpenVINO conversion
def test_the_step_embeds_with_the_model_made_while_the_first_steps_ran(tmp_path: Path, image_tree, made_on) -> None:
    data = image_tree(NAMES, root="data/ds")
    result = _run(tmp_path, EmbeddingModelResource(pretrained=False, input_size=16))
    assert result.success
    assert made_on == [f"{PRELOAD_THREAD}_0"]  # made once, ahead of the step, and used by it
    assert _preload_threads() == []  # joined when the run ended
    got = result.output_for_node("embeddings")
    direct = embed_samples(
        result.output_for_node("frame_index"), data, EmbeddingModelResource(pretrained=False, input_size=16).load(),
        options=EmbedOptions(batch_size=64),
    )  # fmt: skip
    assert got.filenames == direct.filenames == NAMES
    np.testing.assert_array_equal(got.matrix, direct.matrix)
    (mat,) = result.asset_materializations_for_node("embeddings")
    assert mat.metadata["weights"].value == "RANDOM (pretrained weights switched off)"  # provenance as before


@pytest.mark.e2e  # Dagster materialisations
def test_a_model_that_fails_to_load_fails_the_embeddings_step_with_its_one_line_message(
    tmp_path: Path, image_tree, made_on
) -> None:
    image_tree(NAMES, root="data/ds")
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"not a checkpoint")
    result = _run(tmp_path, EmbeddingModelResource(checkpoint=str(bad), input_size=16))
    assert not result.success and made_on == [f"{PRELOAD_THREAD}_0"]  # it failed on the preload thread
    (event,) = result.get_step_failure_events()
    assert event.step_key == "embeddings"  # the steps before it ran; the resource itself did not fail
    assert failure_reason(event).startswith(f"{bad}: not a readable PyTorch checkpoint")
    assert _preload_threads() == []
