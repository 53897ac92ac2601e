"""The default near-duplicate threshold per model, and the test that says when similarities mean nothing.

How the defaults were chosen: with an ImageNet-trained CNN (torchvision / timm) on 219 real photos, resized and
re-compressed copies sat at cosine >= 0.87 (median 0.95) while distinct photos stayed below 0.72 (99.9th
percentile); 0.85 sits between the two, closer to the copies so that a crop or recolouring is not a "duplicate".
Self-supervised (Lightly's SimCLR zoo network) and CLIP-style embeddings are more concentrated (distinct images
share a higher baseline cosine), so their default is stricter. `benchmarks/bench_curation.py` re-measures the
separation on a real photo set for any model setting.
"""

from __future__ import annotations

import numpy as np

from lightly_assets.curation.errors import CurationError

# Keyed by the model setting (`embedding_model.model` / LIGHTLY_ASSETS_MODEL): an exact value first, then the
# longest prefix (`torchvision:`, `timm:` ...), then FALLBACK.
DEFAULT_SIMILARITY: dict[str, float] = {
    "lightly": 0.95,
    "torchvision:": 0.85,
    "timm:": 0.85,
    "clip": 0.92,
    "open_clip:": 0.92,
    "mobileclip:": 0.92,
    "onnx:": 0.9,
}
FALLBACK_SIMILARITY = 0.9
# Random pairs whose median cosine is above this leave no room for a threshold: everything looks alike.
UNIFORM_MEDIAN = 0.9
# ... or more than this share of random pairs reach the threshold (real duplicates make up far fewer pairs: 222
# photos with 2 copies each have 1% same-photo pairs).
UNIFORM_SHARE = 0.05
PAIRS_SAMPLED = 4000


def default_similarity(model: str | None) -> float:
    """The threshold for a model setting: exact key, else longest matching prefix, else the fallback."""
    key = (model or "lightly").strip().lower()
    if key in DEFAULT_SIMILARITY:
        return DEFAULT_SIMILARITY[key]
    prefixes = [p for p in DEFAULT_SIMILARITY if p.endswith(":") and key.startswith(p)]
    if prefixes:
        return DEFAULT_SIMILARITY[max(prefixes, key=len)]
    return FALLBACK_SIMILARITY


def check_similarity(value: float) -> float:
    """A cosine threshold in (0, 1], else a one-line configuration error."""
    if not (0.0 < float(value) <= 1.0):
        raise CurationError(f"duplicates config: similarity must be in (0, 1], got {value}")
    return float(value)


def random_pair_cosines(unit: np.ndarray, pairs: int = PAIRS_SAMPLED, seed: int = 0) -> np.ndarray:
    """Cosines of random distinct pairs (seeded): the baseline a duplicate threshold has to stand out from."""
    n = len(unit)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, pairs)
    j = (i + rng.integers(1, n, pairs)) % n  # never i itself
    return np.einsum("ij,ij->i", unit[i], unit[j])


def uniformity_warning(unit: np.ndarray, similarity: float, random_weights: bool) -> str | None:
    """Why the duplicate groups cannot be trusted, or None when the similarities separate samples."""
    if random_weights:
        return "weights are random: similarities too uniform to mean anything (near-duplicate groups are noise)"
    cosines = random_pair_cosines(unit)
    if len(cosines) < 10:
        return None
    median = float(np.median(cosines))
    above = float(np.mean(cosines >= similarity))
    if median >= UNIFORM_MEDIAN or above > UNIFORM_SHARE:
        return (
            f"similarities too uniform to mean anything: random pairs have median cosine {median:.3f} and "
            f"{above:.1%} of them reach the threshold {similarity}"
        )
    return None
