"""Statistics shared by the chapters: a vectorised AUROC and bootstrap intervals over items."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC by the Mann-Whitney statistic, ties counted one half (equal to sklearn's trapezoidal ROC area).

    Args:
        scores: [..., N] scores, higher = positive.
        labels: [N] or [..., N] with 1 = positive, 0 = negative.

    Returns:
        [...] AUROC per leading index.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.broadcast_to(np.asarray(labels, dtype=bool), scores.shape)
    n_pos = labels.sum(-1)
    n_neg = labels.shape[-1] - n_pos
    if np.any(n_pos == 0) or np.any(n_neg == 0):
        raise ValueError("AUROC needs both classes in every sample; got a sample with one class only.")
    ranks = rankdata(scores, axis=-1)  # average ranks for ties
    rank_sum_pos = np.where(labels, ranks, 0.0).sum(-1)
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_indices(n_items: int, labels: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Stratified bootstrap resamples [n_boot, n_items]: each class is resampled within itself, so every
    resample keeps the original class counts (and an AUROC is always defined)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    out = np.empty((n_boot, n_items), dtype=np.int64)
    start = 0
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        out[:, start : start + len(members)] = rng.choice(members, size=(n_boot, len(members)))
        start += len(members)
    return out


def bootstrap_auroc(
    scores: dict[str, np.ndarray], labels: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, dict[str, float]]:
    """AUROC with a percentile bootstrap interval for each named score, all on the same resamples (so that
    differences between methods can be read pairwise with :func:`bootstrap_auroc_difference`)."""
    labels = np.asarray(labels)
    idx = bootstrap_indices(len(labels), labels, n_boot, seed)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        boot = auroc_rank(s[idx], labels[idx])
        out[name] = {
            "auroc": float(auroc_rank(s, labels)),
            "lo": float(np.percentile(boot, lo)),
            "hi": float(np.percentile(boot, hi)),
        }
    return out


def bootstrap_auroc_difference(
    scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, n_boot: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Paired bootstrap of AUROC(a) - AUROC(b) on the same items: point value and percentile interval."""
    labels = np.asarray(labels)
    idx = bootstrap_indices(len(labels), labels, n_boot, seed)
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    diff = auroc_rank(a[idx], labels[idx]) - auroc_rank(b[idx], labels[idx])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {
        "diff": float(auroc_rank(a, labels) - auroc_rank(b, labels)),
        "lo": float(np.percentile(diff, lo)),
        "hi": float(np.percentile(diff, hi)),
    }
