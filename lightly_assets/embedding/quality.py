"""How meaningful embeddings are: leave-one-out k-nearest-neighbour agreement with the weak labels.

For each sample, its k nearest other samples (cosine similarity) vote on a label; the figure is the fraction of
samples whose vote equals their own weak label. It needs no training and no held-out set, so it is cheap enough
to report on every run. Two baselines put it in context: the same measure for a random network, and chance,
the same measure with the labels shuffled over the same neighbour graph (which also accounts for label imbalance).
Large datasets are measured on a seeded sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K = 5
MAX_SAMPLES = 2000
_PERMUTATIONS = 20


@dataclass(frozen=True)
class Knn:
    """kNN agreement of one set of embeddings, and chance on the same samples."""

    agreement: float
    chance: float
    samples: int
    k: int
    labels: int

    @property
    def margin(self) -> float:
        """Two standard errors of chance: agreement above chance + margin is not sampling noise."""
        return 2.0 * float(np.sqrt(max(self.chance * (1 - self.chance), 0.0) / max(self.samples, 1)))

    @property
    def better_than_chance(self) -> bool:
        return self.agreement > self.chance + self.margin


def sample_rows(n: int, max_samples: int = MAX_SAMPLES, seed: int = 0) -> np.ndarray:
    """All rows, or a seeded sorted sample of `max_samples` of them."""
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))


def applicable(labels: np.ndarray, k: int = K) -> str | None:
    """None when the measure means something for these labels, else why not."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return "needs at least two weak labels (sub-folders)"
    if len(labels) <= 2 * k:
        return f"needs more than {2 * k} samples: with fewer, the {k} neighbours are nearly all the others"
    return None


def neighbours(vectors: np.ndarray, k: int = K) -> np.ndarray:
    """(n, k') indices of each row's nearest other rows by cosine similarity, nearest first; k' = min(k, n-1)."""
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(x) - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _agreement(neigh: np.ndarray, codes: np.ndarray, n_labels: int) -> float:
    """Majority vote of the neighbours (ties go to the label whose votes are nearer) against each own label."""
    n, k = neigh.shape
    votes = codes[neigh]
    scores = np.zeros((n, n_labels))
    closeness = 1.0 + 1e-3 * (k - np.arange(k)) / k  # a tie-break that never outweighs one whole vote
    np.add.at(scores, (np.repeat(np.arange(n), k), votes.ravel()), np.tile(closeness, n))
    return float((scores.argmax(axis=1) == codes).mean())


def knn_agreement(vectors: np.ndarray, labels: np.ndarray, k: int = K, seed: int = 0) -> Knn:
    """Leave-one-out kNN agreement of `vectors` with `labels` (both already sampled), with chance beside it."""
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    n_labels = int(codes.max()) + 1
    neigh = neighbours(vectors, k)
    rng = np.random.default_rng(seed)
    chance = float(np.mean([_agreement(neigh, rng.permutation(codes), n_labels) for _ in range(_PERMUTATIONS)]))
    return Knn(
        agreement=_agreement(neigh, codes, n_labels),
        chance=chance,
        samples=len(codes),
        k=neigh.shape[1],
        labels=n_labels,
    )


@dataclass(frozen=True)
class Quality:
    """The figure for the embeddings and for a random network on the same samples; `reason` when not applicable."""

    knn: Knn | None
    random: Knn | None
    reason: str | None = None

    def metadata(self) -> dict[str, float | int | str]:
        if self.knn is None:
            return {"knn_agreement": f"not applicable: {self.reason}"}
        out: dict[str, float | int | str] = {
            "knn_agreement": round(self.knn.agreement, 4),
            "knn_agreement_random_network": round(self.random.agreement, 4) if self.random else "not computed",
            "knn_agreement_chance": round(self.knn.chance, 4),
            "knn_samples": self.knn.samples,
            "knn_k": self.knn.k,
        }
        return out

    def describe(self) -> str:
        if self.knn is None:
            return f"n/a ({self.reason})"
        rnd = f", random network {self.random.agreement:.3f}" if self.random else ""
        return (
            f"{self.knn.agreement:.3f} (chance {self.knn.chance:.3f}{rnd}; k={self.knn.k}, {self.knn.samples} samples)"
        )


def measure(
    matrix: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    random_vectors=None,
    max_samples: int = MAX_SAMPLES,
    seed: int = 0,
) -> Quality:
    """kNN agreement of `matrix` (one row per sample, `labels` beside it) on a seeded sample of its rows.

    `random_vectors(sample_rows)` returns the random network's vectors of those rows (positions into `rows`,
    the caller's own row ids of `matrix`), so only the sample is embedded a second time; None skips it.
    """
    labels = np.asarray(labels)
    reason = applicable(labels)
    if reason:
        return Quality(None, None, reason)
    pick = sample_rows(len(matrix), max_samples, seed)
    knn = knn_agreement(matrix[pick], labels[pick], seed=seed)
    rnd = None
    if random_vectors is not None:
        vectors, kept = random_vectors(np.asarray(rows)[pick])
        if applicable(labels[pick][kept]) is None:
            rnd = knn_agreement(vectors, labels[pick][kept], seed=seed)
    return Quality(knn, rnd, None)


def sample_embedder(frame_index, data_dir, model, batch_size: int = 64, workers: int = 2, cache=None):
    """A `random_vectors` callback for `measure`: embeds just the given rows of `frame_index` with `model`."""
    from lightly_assets.embedding.pipeline import embed_samples

    def embed(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = embed_samples(
            frame_index.iloc[np.asarray(rows)], data_dir, model, batch_size=batch_size, workers=workers, cache=cache
        )
        return result.matrix, result.indices

    return embed


def knn_of_model(frame_index, data_dir, model, max_samples: int = 500, seed: int = 0, **embed_kwargs) -> Quality:
    """The figure for `model` on a seeded sample of `frame_index` (before/after training), embedding only the sample."""
    labels = frame_index["label"].to_numpy()
    reason = applicable(labels)
    if reason:
        return Quality(None, None, reason)
    pick = sample_rows(len(frame_index), max_samples, seed)
    vectors, kept = sample_embedder(frame_index, data_dir, model, **embed_kwargs)(pick)
    labels = labels[pick][kept]
    reason = applicable(labels)
    if reason:
        return Quality(None, None, reason)
    return Quality(knn_agreement(vectors, labels, seed=seed), None)
