"""How meaningful embeddings are: leave-one-out k-nearest-neighbour agreement with the weak labels.

For each sample, its k nearest other samples (cosine similarity) vote on a label; the figure is the fraction of
samples whose vote equals their own weak label. It needs no training and no held-out set, so it is cheap enough
to report on every run. Two baselines put it in context: the same measure for a random network, and chance,
the same measure with the labels shuffled over the same neighbour graph (which also accounts for label imbalance).
Large datasets are measured on a seeded sample.

Video frames: a frame's nearest neighbours are the next frames of the same video, which share its label, so the
figure would be 1.0 whatever the model. The rule (SAME_SOURCE_RULE): neighbours from the same source file are
excluded, and only samples whose label also occurs in another file are scored (a label that is one video cannot be
recovered from other videos). Images are their own source, so image datasets are measured as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples

K = 5
MAX_SAMPLES = 2000
_PERMUTATIONS = 20
SAME_SOURCE_RULE = (
    "neighbours from the same video are excluded, and only samples whose weak label also occurs in another file "
    "are scored"
)


@dataclass(frozen=True)
class Knn:
    """kNN agreement of one set of embeddings, and chance on the same samples."""

    agreement: float
    chance: float
    samples: int
    k: int
    labels: int
    rule: str = ""  # SAME_SOURCE_RULE when it applied

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


def applicable(labels: np.ndarray, k: int = K, groups: np.ndarray | None = None) -> str | None:
    """None when the measure means something for these labels (and source files, `groups`), else why not."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return "needs at least two weak labels (sub-folders)"
    if len(labels) <= 2 * k:
        return f"needs more than {2 * k} samples: with fewer, the {k} neighbours are nearly all the others"
    if groups is not None:
        scored = scorable(labels, groups)
        if len(np.unique(labels[scored])) < 2 or scored.sum() <= 2 * k:
            return (
                "every weak label is a single video: with neighbours from the same video excluded (they are its "
                "next frames and agree trivially), no label can be recovered from the other files"
            )
    return None


def scorable(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Samples whose label also occurs in another source file: the only ones other files can agree with."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    files_per_label: dict[object, set] = {}
    for label, group in zip(labels.tolist(), groups.tolist(), strict=True):
        files_per_label.setdefault(label, set()).add(group)
    return np.array([len(files_per_label[label]) > 1 for label in labels.tolist()], dtype=bool)


def neighbours(vectors: np.ndarray, k: int = K, groups: np.ndarray | None = None) -> np.ndarray:
    """(n, k') indices of each row's nearest other rows by cosine similarity, nearest first; k' = min(k, n-1).

    With `groups` (each row's source file), rows of the same group are never neighbours; a row with fewer than
    k' rows in other groups gets -1 in the places left over.
    """
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    sims = x @ x.T
    if groups is not None:
        groups = np.asarray(groups)
        sims[groups[:, None] == groups[None, :]] = -np.inf
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(x) - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    ordered = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-ordered, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return np.where(np.isinf(np.take_along_axis(ordered, order, axis=1)), -1, top)


def _agreement(neigh: np.ndarray, codes: np.ndarray, n_labels: int, scored: np.ndarray | None = None) -> float:
    """Majority vote of the neighbours (ties go to the label whose votes are nearer) against each own label."""
    n, k = neigh.shape
    valid = neigh >= 0
    votes = codes[np.where(valid, neigh, 0)]
    scores = np.zeros((n, n_labels))
    closeness = 1.0 + 1e-3 * (k - np.arange(k)) / k  # a tie-break that never outweighs one whole vote
    weights = np.where(valid, closeness[None, :], 0.0)
    np.add.at(scores, (np.repeat(np.arange(n), k), votes.ravel()), weights.ravel())
    hits = scores.argmax(axis=1) == codes
    return float(hits[scored].mean() if scored is not None else hits.mean())


def knn_agreement(
    vectors: np.ndarray, labels: np.ndarray, k: int = K, seed: int = 0, groups: np.ndarray | None = None
) -> Knn:
    """Leave-one-out kNN agreement of `vectors` with `labels` (both already sampled), with chance beside it.

    `groups` (the source file of each row) applies SAME_SOURCE_RULE; `samples` then counts the scored rows.
    """
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    n_labels = int(codes.max()) + 1
    neigh = neighbours(vectors, k, groups)
    scored = scorable(labels, groups) if groups is not None else None
    rng = np.random.default_rng(seed)
    chance = float(np.mean([_agreement(neigh, rng.permutation(codes), n_labels, scored) for _ in range(_PERMUTATIONS)]))
    return Knn(
        agreement=_agreement(neigh, codes, n_labels, scored),
        chance=chance,
        samples=int(scored.sum()) if scored is not None else len(codes),
        k=neigh.shape[1],
        labels=n_labels,
        rule=SAME_SOURCE_RULE if groups is not None and _repeats(groups) else "",
    )


def _repeats(groups: np.ndarray) -> bool:
    """Whether any source file gives more than one sample (a video): only then does the rule change anything."""
    return len(np.unique(np.asarray(groups))) < len(groups)


@dataclass(frozen=True)
class Quality:
    """The figure for the embeddings and for a random network on the same samples; `reason` when not applicable."""

    knn: Knn | None
    random: Knn | None
    reason: str | None = None

    def metadata(self) -> dict[str, float | int | str]:
        if self.knn is None:
            return {"knn_agreement": f"not applicable: {self.reason}"}
        out: dict[str, float | int | str] = {"knn_agreement": round(self.knn.agreement, 4)}
        if self.random is not None:  # only beside a model that is not itself the random network
            out["knn_agreement_random_network"] = round(self.random.agreement, 4)
        out |= {"knn_agreement_chance": round(self.knn.chance, 4), "knn_samples": self.knn.samples, "knn_k": self.knn.k}
        if self.knn.rule:
            out["knn_rule"] = self.knn.rule
        return out

    def describe(self) -> str:
        if self.knn is None:
            return f"n/a ({self.reason})"
        rnd = f", random network {self.random.agreement:.3f}" if self.random else ""
        rule = f"; {self.knn.rule}" if self.knn.rule else ""
        return (
            f"{self.knn.agreement:.3f} (chance {self.knn.chance:.3f}{rnd}; k={self.knn.k}, {self.knn.samples} samples"
            f"{rule})"
        )


def measure(
    matrix: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    random_vectors=None,
    max_samples: int = MAX_SAMPLES,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Quality:
    """kNN agreement of `matrix` (one row per sample, `labels` beside it) on a seeded sample of its rows.

    `random_vectors(sample_rows)` returns the random network's vectors of those rows (positions into `rows`,
    the caller's own row ids of `matrix`), so only the sample is embedded a second time; None skips it (as it
    should when the model is the random network: a figure compared with itself says nothing).
    `groups` (each row's source file) applies SAME_SOURCE_RULE for video frames.
    """
    labels = np.asarray(labels)
    groups = None if groups is None else np.asarray(groups)
    reason = applicable(labels, groups=groups)
    if reason:
        return Quality(None, None, reason)
    pick = sample_rows(len(matrix), max_samples, seed)
    picked_groups = None if groups is None else groups[pick]
    knn = knn_agreement(matrix[pick], labels[pick], seed=seed, groups=picked_groups)
    rnd = None
    if random_vectors is not None:
        vectors, kept = random_vectors(np.asarray(rows)[pick])
        kept_groups = None if picked_groups is None else picked_groups[kept]
        if applicable(labels[pick][kept], groups=kept_groups) is None:
            rnd = knn_agreement(vectors, labels[pick][kept], seed=seed, groups=kept_groups)
    return Quality(knn, rnd, None)


def sample_embedder(frame_index, data_dir, model, batch_size: int = 64, workers: int | None = 2, cache=None):
    """A `random_vectors` callback for `measure`: embeds just the given rows of `frame_index` with `model`."""

    def embed(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = embed_samples(
            frame_index.iloc[np.asarray(rows)],
            data_dir,
            model,
            options=EmbedOptions(batch_size=batch_size, workers=workers),
            cache=cache,
        )
        return result.matrix, result.indices

    return embed


def knn_of_model(frame_index, data_dir, model, max_samples: int = 500, seed: int = 0, **embed_kwargs) -> Quality:
    """The figure for `model` on a seeded sample of `frame_index` (before/after training), embedding only the sample."""
    labels = frame_index["label"].to_numpy()
    groups = frame_index["source"].astype(str).to_numpy()
    reason = applicable(labels, groups=groups)
    if reason:
        return Quality(None, None, reason)
    pick = sample_rows(len(frame_index), max_samples, seed)
    vectors, kept = sample_embedder(frame_index, data_dir, model, **embed_kwargs)(pick)
    labels, groups = labels[pick][kept], groups[pick][kept]
    reason = applicable(labels, groups=groups)
    if reason:
        return Quality(None, None, reason)
    return Quality(knn_agreement(vectors, labels, seed=seed, groups=groups), None)
