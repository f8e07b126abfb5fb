"""The judging intervals by hand cases, and against scipy where it has the reference."""

import numpy as np
import pytest
from scipy import stats

from replbook.intervals import (
    Interval,
    group_bootstrap,
    paired_bootstrap,
    paired_t,
    percentile,
    seed_bootstrap,
    signed_interval,
    wilson,
)


def test_paired_t_hand_case_and_one_seed():
    d = paired_t([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # sd of (1, 2, 3) is 1
    assert (d.mean, d.lo, d.hi, d.n) == pytest.approx((2.0, 2.0 - half, 2.0 + half, 3))
    assert d.method == "paired t over seeds" and d.level == 0.95
    assert paired_t([1.0, 2.0, 3.0], 1.0).mean == pytest.approx(1.0)  # a constant reference level
    one = paired_t([1.0], [0.0])
    assert one.mean == 1.0 and np.isnan(one.lo) and not one.finite


def test_paired_t_equals_scipy_ttest_rel():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=7), rng.normal(size=7)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    d = paired_t(a, b)
    assert (d.lo, d.hi) == pytest.approx((ci.low, ci.high))


def test_wilson_hand_case_and_scipy():
    w = wilson(5, 10)
    assert w.mean == 0.5 and (w.lo + w.hi) / 2 == pytest.approx(0.5)
    ref = stats.binomtest(7, 20).proportion_ci(0.95, method="wilson")
    w = wilson(7, 20)
    assert (w.lo, w.hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert wilson(0, 10).lo == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="n > 0"):
        wilson(0, 0)


def test_paired_bootstrap_brackets_the_mean_is_seeded_and_agrees_with_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    d = paired_bootstrap(a, b, n_boot=10_000, seed=1)
    assert d.lo < d.mean < d.hi and d == paired_bootstrap(a, b, n_boot=10_000, seed=1)
    ref = stats.bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, n_resamples=10_000,
                          method="percentile", random_state=2).confidence_interval
    assert d.lo == pytest.approx(ref.low, abs=0.01) and d.hi == pytest.approx(ref.high, abs=0.01)


def test_group_bootstrap_is_the_mean_of_group_means():
    a = [np.array([1.0, 1.0]), np.array([3.0] * 10)]
    b = [np.zeros(2), np.zeros(10)]
    d = group_bootstrap(a, b, seed=0, n_boot=200)
    assert d.mean == pytest.approx(2.0) and d.lo == pytest.approx(2.0) and d.n == 12


def test_seed_bootstrap_pools_the_seeds_replicates():
    rng = np.random.default_rng(0)
    boots = [0.1 + 0.01 * rng.normal(size=500), 0.2 + 0.01 * rng.normal(size=500)]
    pooled, seeds = seed_bootstrap([0.1, 0.2], boots)
    assert pooled.mean == pytest.approx(0.15) and pooled.lo < 0.15 < pooled.hi
    assert pooled.hi - pooled.lo < min(s.hi - s.lo for s in seeds)  # averaging seeds narrows it
    assert [s.mean for s in seeds] == [0.1, 0.2] and pooled.n == 2


def test_percentile_and_text():
    p = percentile(0.5, np.linspace(0, 1, 101))
    assert (p.lo, p.hi) == pytest.approx((0.025, 0.975))
    assert signed_interval(0.012, 0.003, 0.021) == "+0.012 [+0.003, +0.021]"
    assert signed_interval(0.81234, 0.7, 0.9, signed=False) == "0.812 [0.700, 0.900]"
    i = Interval(0.5, 0.25, 0.75, "m", 3)
    assert i.scaled(-2) == Interval(-1.0, -1.5, -0.5, "m", 3) and i.at("x.y").source == "x.y"
    assert i.text(1) == "+0.5 [+0.2, +0.8]"
