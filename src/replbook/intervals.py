"""The intervals verdicts are judged on, computed from saved results when a page renders.

Every function returns an :class:`Interval`: the estimate, its bounds, how they were computed (``method``), over how
many units (``n``: seeds or items), at which ``level``, and ``source``: the results field it was read from. All are
cheap and deterministic (fixed seeds): a page may compute them, never a model.

- :func:`paired_t`: mean of paired differences over seeds with a Student-t interval;
- :func:`seed_bootstrap`: the seed mean of a statistic with the percentile interval of the seed means of its
  bootstrap replicates (each seed resamples its own test items, the trained models held fixed), and every seed's
  own interval;
- :func:`paired_bootstrap` and :func:`group_bootstrap`: the mean of paired item differences (overall, or the mean of
  per-group means) with a percentile bootstrap over items;
- :func:`wilson`: a proportion's Wilson score interval;
- :func:`percentile`: a point value with the percentile interval of its replicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import norm
from scipy.stats import t as t_dist

#: The method name of a Student-t interval over seeds (``scale_to_decide`` solves its t quantile for n).
T_METHOD = "paired t over seeds"


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval: ``mean`` in [``lo``, ``hi``] at ``level``, by ``method`` over ``n`` units,
    read from the results field ``source``."""

    mean: float
    lo: float
    hi: float
    method: str
    n: int
    level: float = 0.95
    source: str = ""

    @property
    def finite(self) -> bool:
        return all(map(math.isfinite, (self.mean, self.lo, self.hi)))

    def as_dict(self) -> dict:
        """As the claims file records it: ``from`` names the results field it was read from."""
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "method": self.method, "n": self.n,
                "level": self.level, "from": self.source}

    def at(self, source: str) -> Interval:
        """The same interval, naming the results field it was read from."""
        return replace(self, source=source)

    def scaled(self, factor: float) -> Interval:
        """In other units (e.g. ×100 for points); a negative factor swaps the bounds."""
        lo, hi = sorted((self.lo * factor, self.hi * factor))
        return replace(self, mean=self.mean * factor, lo=lo, hi=hi)

    def text(self, digits: int = 3, signed: bool = True) -> str:
        """``+0.012 [+0.003, +0.021]``."""
        return signed_interval(self.mean, self.lo, self.hi, digits, signed)


def signed_interval(mean: float, lo: float, hi: float, digits: int = 3, signed: bool = True) -> str:
    """``+0.012 [+0.003, +0.021]`` (``signed=False``: ``0.812 [0.790, 0.834]``)."""
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(mean)} [{f.format(lo)}, {f.format(hi)}]"


def _bounds(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}.")
    return (1 - level) / 2, (1 + level) / 2


def t_half_width(sd: float, n: int, level: float = 0.95) -> float:
    """Half-width of a Student-t interval of a mean of ``n`` units with standard deviation ``sd``."""
    return float(t_dist.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan


def paired_t(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray | float = 0.0, level: float = 0.95,
             source: str = "") -> Interval:
    """Mean of a − b over paired units (seeds) with a Student-t interval (n − 1 degrees of freedom); one unit gives
    NaN bounds. ``b`` may be a constant (a reference level)."""
    a = np.asarray(a, dtype=np.float64)
    d = a - np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    mean = float(d.mean())
    half = t_half_width(float(d.std(ddof=1)), len(d), level) if len(d) > 1 else math.nan
    return Interval(mean, mean - half, mean + half, T_METHOD, len(d), level, source)


def seed_bootstrap(points: Sequence[float], replicates: Sequence[np.ndarray], level: float = 0.95,
                   source: str = "", nan_omit: bool = False) -> tuple[Interval, list[Interval]]:
    """(pooled, per seed): the mean over seeds of ``points`` (one value per seed) with the percentile interval of
    the seed means of the bootstrap ``replicates`` ([n_boot] per seed, on each seed's own resamples), and each seed's
    value with the percentile interval of its own replicates. ``nan_omit``: a resample where the statistic is
    undefined (NaN: e.g. no unknown object drawn) is left out of the means and percentiles instead of making them
    NaN."""
    q = [100 * x for x in _bounds(level)]
    boots = np.asarray([np.asarray(r, dtype=np.float64) for r in replicates])
    mean, pct = (np.nanmean, np.nanpercentile) if nan_omit else (np.mean, np.percentile)
    lo, hi = pct(mean(boots, axis=0), q)
    pooled = Interval(float(np.mean(points)), float(lo), float(hi), "seed bootstrap (items resampled, seeds pooled)",
                      len(points), level, source)
    seeds = [Interval(float(p), *map(float, pct(b, q)), "bootstrap over items", len(b), level, source)
             for p, b in zip(points, boots, strict=True)]
    return pooled, seeds


def percentile(point: float, replicates: np.ndarray, level: float = 0.95, source: str = "") -> Interval:
    """A point value with the percentile interval of its bootstrap ``replicates``."""
    lo, hi = np.percentile(np.asarray(replicates, dtype=np.float64), [100 * x for x in _bounds(level)])
    return Interval(float(point), float(lo), float(hi), "percentile bootstrap", len(replicates), level, source)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                     source: str = "") -> Interval:
    """Mean of a − b over paired items [N] with a percentile bootstrap interval over items."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    lo, hi = np.quantile(boots, _bounds(level))
    return Interval(float(d.mean()), float(lo), float(hi), "paired bootstrap over items", len(d), level, source)


def group_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], seed: int, n_boot: int = 2000,
                    level: float = 0.95, source: str = "") -> Interval:
    """Mean over groups (tasks, sites) of the per-group mean of a − b, paired items within each group, with a
    percentile interval from resampling the items within each group (the mean of per-group means, whatever the group
    sizes). ``a``, ``b``: one array per group."""
    rng = np.random.default_rng(seed)
    diffs = [np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64) for x, y in zip(a, b, strict=True)]
    boots = np.mean([d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1) for d in diffs], axis=0)
    lo, hi = np.quantile(boots, _bounds(level))
    return Interval(float(np.mean([d.mean() for d in diffs])), float(lo), float(hi),
                    "paired bootstrap over items within groups", sum(len(d) for d in diffs), level, source)


def wilson(k: float, n: int, level: float = 0.95, source: str = "") -> Interval:
    """Wilson score interval of the proportion k / n, with the exact normal quantile of ``level``."""
    if n <= 0:
        raise ValueError(f"a proportion needs n > 0 trials; got {n}.")
    z = float(norm.ppf(_bounds(level)[1]))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, centre - half, centre + half, "Wilson score", n, level, source)
