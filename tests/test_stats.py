import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from replbook.minkpp import mia_metrics
from replbook.stats import (
    auroc_rank,
    bootstrap_auroc_difference,
    bootstrap_indices,
    bootstrap_metrics,
    tpr_at_fpr,
)


def test_rank_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(10):
        labels = rng.integers(0, 2, 60)
        scores = rng.integers(0, 6, 60).astype(float)  # many ties
        assert auroc_rank(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_rank_auroc_is_vectorised_over_leading_axes():
    rng = np.random.default_rng(1)
    labels = np.array([1] * 10 + [0] * 10)
    scores = rng.normal(size=(4, 20))
    assert np.allclose(auroc_rank(scores, labels), [roc_auc_score(labels, s) for s in scores])


def test_stratified_bootstrap_keeps_class_counts_and_is_seeded():
    labels = np.array([1] * 7 + [0] * 13)
    idx = bootstrap_indices(20, labels, 50, seed=3)
    assert (labels[idx].sum(1) == 7).all()
    assert np.array_equal(idx, bootstrap_indices(20, labels, 50, seed=3))
    assert not np.array_equal(idx, bootstrap_indices(20, labels, 50, seed=4))


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(2)
    labels = np.array([1] * 100 + [0] * 100)
    scores = labels + rng.normal(scale=1.5, size=200)
    out = bootstrap_metrics({"s": scores}, labels, n_boot=200, seed=0)["s"]
    assert out["lo"] < out["auroc"] < out["hi"]
    assert out["tpr_lo"] <= out["tpr"] <= out["tpr_hi"]


@pytest.mark.parametrize("ties", [False, True])
def test_tpr_at_fpr_follows_the_official_roc_rule(ties):
    rng = np.random.default_rng(5)
    for n in (20, 57, 200):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 8, n).astype(float) if ties else rng.normal(size=n) + labels
        m = mia_metrics(scores, labels)
        assert tpr_at_fpr(scores, labels, 0.05) == pytest.approx(m["tpr05"])
        assert tpr_at_fpr(scores, labels, 0.01) == pytest.approx(m["tpr01"])


def test_tpr_at_fpr_worked_example_and_vectorisation():
    scores = np.array([0.9, 0.7, 0.4, 0.8, 0.3, 0.2])  # spec E5: TPR@5%FPR = 1/3
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert tpr_at_fpr(scores, labels, 0.05) == pytest.approx(1 / 3)
    assert tpr_at_fpr(scores, labels, 1 / 3) == pytest.approx(1.0)
    assert np.allclose(tpr_at_fpr(np.stack([scores, -scores]), labels, 0.05), [1 / 3, 0.0])


def test_paired_difference_of_a_score_with_itself_is_zero():
    rng = np.random.default_rng(3)
    labels = np.array([1] * 30 + [0] * 30)
    s = rng.normal(size=60)
    d = bootstrap_auroc_difference(s, s, labels, n_boot=100, seed=0)
    assert d == {"diff": 0.0, "lo": 0.0, "hi": 0.0}


def test_one_class_raises():
    with pytest.raises(ValueError, match="both classes"):
        auroc_rank(np.array([0.1, 0.2]), np.array([1, 1]))
