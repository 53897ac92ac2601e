"""Embedding the samples: `embeddings`, one float32 vector per sample, with its quality figures."""

import dataclasses
from functools import partial

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    Output,
)

from lightly_assets.defs import checks
from lightly_assets.defs.common import dataset_asset, user_errors
from lightly_assets.defs.metadata import (
    skipped,
    unreadable_by_source,
    weights_fact,
)
from lightly_assets.defs.resources import EmbeddingModelResource, RayClusterResource, StorageResource
from lightly_assets.embedding.cache import EmbeddingCache
from lightly_assets.embedding.calibration import calibration_pixels
from lightly_assets.embedding.download import cached_path
from lightly_assets.embedding.errors import EmbeddingError
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets.embedding.quality import measure, sample_embedder
from lightly_assets.embedding.weights import TRAINED_NAME, Weights
from lightly_assets.progress import Progress
from lightly_assets.publish.studio.embedder import space_for

EMBEDDINGS_FACTS = [
    "samples", "dimension", "model", "model_spec", "preprocessing", "studio_space", "weights", "weights_sha256",
    "device", "precision", "engine", "orientation", "torch_threads", "decode_workers", "decode_processes", "reused",
    "embedded", "skipped", "seconds", "samples_per_second", "knn_agreement", "knn_agreement_random_network",
    "knn_agreement_chance", "knn_samples", "knn_k", "knn_rule", "executor", "ray_nodes",
]  # fmt: skip


@dataset_asset(
    facts=EMBEDDINGS_FACTS,
    check_specs=checks.EMBEDDINGS,
    kinds={"pytorch", "numpy"},
)
def embeddings(
    context: AssetExecutionContext,
    storage: StorageResource,
    embedding_model: EmbeddingModelResource,
    ray_cluster: RayClusterResource,
    frame_index: pd.DataFrame,
):
    """One float32 vector per sample; only new or changed samples are embedded, the rest come from the cache.

    Weights: the configured checkpoint, else the dataset's trained `embedding_model.ckpt`, else Lightly's
    pretrained zoo weights (torch's hub cache), else a seeded random initialisation (said loudly). The trained
    checkpoint is found on disk: `embedding_model` is no declared upstream, since the UI's Materialize would then
    warn that an optional asset is "not materialized".
    """
    name = context.partition_key
    out = storage.outputs_for(name)
    with user_errors():
        executor = embedding_model.executor_for(ray_cluster)  # local, or the Ray cluster
        calibration = partial(calibration_pixels, frame_index, storage.dataset_dir(name))  # int8 only, once
        model = embedding_model.load(trained=out / TRAINED_NAME, log=context.log.info, calibration=calibration)
        weights = model.weights
        context.log.info(f"{name}: weights {weights.describe()}")
        if model.random_init:
            context.log.warning(
                f"{name}: embedding with RANDOM seeded weights ({model.description}): "
                f"{weights.note or 'pretrained weights switched off'}"
            )
        cache = EmbeddingCache(out / "embedding_cache.npz")
        result = embed_samples(
            frame_index,
            storage.dataset_dir(name),
            model,
            options=EmbedOptions(
                batch_size=embedding_model.batch_size,
                workers=embedding_model.workers,
                orientation=embedding_model.orientation,
            ),
            cache=cache,
            progress=Progress("embedding", context.log.info),
            executor=executor,
        )
    left_out = unreadable_by_source(result.unreadable, frame_index)
    for s in left_out:
        context.log.warning(f"could not embed {s.path}: {s.reason}")
    if not result.filenames:
        with user_errors():
            detail = "; ".join(f"{n}: {r}" for n, r in result.unreadable[:5])
            raise EmbeddingError(f"{storage.dataset_dir(name)}: no sample could be decoded ({detail})")
    with user_errors():
        baseline = None
        if not model.random_init:
            baseline = sample_embedder(
                frame_index,
                storage.dataset_dir(name),
                embedding_model.random_model(),
                batch_size=embedding_model.batch_size,
                workers=embedding_model.workers,
                cache=EmbeddingCache(out / "embedding_cache_random.npz"),
            )
        sources = frame_index["source"].astype(str).to_numpy()[result.indices]  # same-video rule for frames
        quality = measure(result.matrix, np.asarray(result.labels), result.indices, baseline, groups=sources)
    context.log.info(f"{name}: kNN agreement with the weak labels {quality.describe()}")
    space = space_for(model.spec, weights.sha256, model.dim, model.space_key)  # one LightlyStudio model per model
    yield Output(
        dataclasses.replace(result, model=model.description, space=space),  # what downstream needs, in the value
        metadata={
            "samples": len(result.filenames),
            "dimension": int(result.matrix.shape[1]) if result.matrix.ndim == 2 else 0,
            "model": model.description,
            "model_spec": model.spec,
            "preprocessing": model.prep.describe(),
            "studio_space": space,
            "weights": weights_fact(weights),
            **({"weights_sha256": weights.sha256} if weights.sha256 else {}),
            "device": str(model.device),
            "precision": model.precision,
            "engine": model.engine,
            "orientation": embedding_model.orientation,
            "torch_threads": model.threads,
            "decode_workers": result.workers,
            "decode_processes": result.decode_processes,
            "reused": result.reused,
            "embedded": len(result.filenames) - result.reused,
            "skipped": skipped(left_out),
            "seconds": round(result.seconds, 3),
            "samples_per_second": round(result.samples_per_s, 1),
            **quality.metadata(),
            "executor": executor.describe(),
            **({"ray_nodes": len(result.nodes)} if embedding_model.executor == "ray" else {}),
        },
    )
    yield checks.finite_values(result.matrix, result.filenames)
    yield checks.all_samples_embedded(result.unreadable, len(frame_index))
    yield checks.trained_weights(model.random_init, model.description, weights.note, _cache_file(weights))
    yield checks.knn_better_than_chance(quality)


def _cache_file(weights: Weights) -> str:
    """Where torch's hub cache looks for the pretrained file, so an offline user can put it there."""
    return str(cached_path(weights.url)) if weights.random and weights.url else ""
