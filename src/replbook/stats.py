"""The metrics computations use: a vectorised AUROC, TPR at a fixed FPR, stratified bootstrap resamples and the
bootstrap replicates of AUROC over items. The intervals verdicts are judged on live in :mod:`replbook.intervals`."""

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


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> np.ndarray:
    """TPR at the lowest threshold whose FPR is at most ``max_fpr``: the official ``get_metrics`` rule (last TPR
    on sklearn's ROC curve where FPR <= max_fpr), vectorised over leading axes.

    With k = floor(max_fpr · n_neg) negatives allowed at or above the threshold, the threshold must exceed the
    (k+1)-th highest negative score, so TPR = share of positives scoring above it.

    Args:
        scores: [..., N]; labels: [N] with 1 = positive (the same for every leading index).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    neg, pos = scores[..., ~labels], scores[..., labels]
    allowed = int(np.floor(max_fpr * neg.shape[-1] + 1e-9))
    if allowed >= neg.shape[-1]:
        return np.ones(scores.shape[:-1])
    kth_highest = -np.partition(-neg, allowed, axis=-1)[..., allowed]
    return (pos > kth_highest[..., None]).mean(-1)


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


def bootstrap_metrics(
    scores: dict[str, np.ndarray], labels: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
    max_fpr: float = 0.05, replicates: bool = False,
) -> dict[str, dict[str, float]]:
    """AUROC and TPR at ``max_fpr`` with percentile bootstrap intervals for each named score, all on the same
    stratified resamples (so differences between methods can be read pairwise with
    :func:`bootstrap_auroc_difference`). Keys: auroc, lo, hi, tpr, tpr_lo, tpr_hi, and with ``replicates`` also
    ``boot``: the [n_boot] AUROC replicates, from which any paired statistic of the scores has its interval."""
    labels = np.asarray(labels)
    idx = bootstrap_indices(len(labels), labels, n_boot, seed)
    boot_labels = labels[idx[0]]  # stratified: every resample lists the classes in the same order
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        auroc, tpr = auroc_rank(s[idx], boot_labels), tpr_at_fpr(s[idx], boot_labels, max_fpr)
        out[name] = {
            "auroc": float(auroc_rank(s, labels)), "lo": float(np.percentile(auroc, lo)),
            "hi": float(np.percentile(auroc, hi)),
            "tpr": float(tpr_at_fpr(s, labels, max_fpr)), "tpr_lo": float(np.percentile(tpr, lo)),
            "tpr_hi": float(np.percentile(tpr, hi)),
        }
        if replicates:
            out[name]["boot"] = auroc
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
