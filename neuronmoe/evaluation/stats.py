"""Uncertainty for evaluation numbers (pure functions, numpy only).

* accuracy (a mean of 0/1 items): closed-form standard error ``sqrt(p(1-p)/(n-1))`` (the sample
  standard deviation over sqrt(n), as lm-eval's ``mean_stderr``);
* ratio metrics over documents (bits per byte = -sum(loglik) / sum(bytes) / ln 2): bootstrap over
  documents (standard error and percentile interval);
* two models on the same items: the exact McNemar test for 0/1 items (a two-sided binomial test
  on the discordant pairs), a paired bootstrap over items otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: two-sided significance level of the marks in the report
ALPHA = 0.05
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 1234


def mean_se(values: Sequence[float]) -> float | None:
    """Standard error of a mean (sample standard deviation / sqrt(n)); None below 2 items."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    return float(x.std(ddof=1) / math.sqrt(x.size))


def binom_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair coin flips (min(1, 2 * P(X <= min(k, n-k))))."""
    if n <= 0:
        return 1.0
    k = min(k, n - k)
    # log-space cumulative sum: stable for the 10^4 discordant pairs of a large benchmark
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    m = max(logs)
    tail = math.exp(m) * sum(math.exp(v - m) for v in logs)
    return float(min(1.0, 2.0 * tail))


@dataclass(frozen=True)
class PairedResult:
    """A vs B on the same n items: difference (A - B), its p-value, and the test used."""

    n: int
    diff: float
    p: float
    test: str
    ci: tuple[float, float] | None = None
    a_only: int | None = None  # McNemar: items A got right and B wrong
    b_only: int | None = None

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def mcnemar(a: Sequence[float], b: Sequence[float]) -> PairedResult:
    """Exact McNemar test on paired 0/1 outcomes (same items, same order)."""
    x = np.asarray(a, dtype=float) > 0.5
    y = np.asarray(b, dtype=float) > 0.5
    if x.shape != y.shape:
        raise ValueError(f"mcnemar: {x.size} vs {y.size} items; pair them first")
    a_only = int(np.sum(x & ~y))
    b_only = int(np.sum(~x & y))
    n = int(x.size)
    diff = (a_only - b_only) / n if n else 0.0
    return PairedResult(n=n, diff=float(diff), p=binom_two_sided_p(a_only, a_only + b_only), test="McNemar (exact)",
                        a_only=a_only, b_only=b_only)


def bits_per_byte(loglik: Sequence[float], n_bytes: Sequence[float]) -> float:
    """-sum(loglik) / sum(bytes) / ln 2 (lm-eval's corpus-level bits per byte)."""
    return float(-np.sum(loglik) / np.sum(n_bytes) / math.log(2))


def _boot_ratios(nums: list[np.ndarray], den: np.ndarray, samples: int, seed: int, chunk_cells: int = 2_000_000) -> list[np.ndarray]:
    """``sum(num[idx]) / sum(den[idx])`` for each numerator over ``samples`` resamples of the items.

    The same resamples serve every numerator (a paired bootstrap); drawn in chunks so that
    10^4 items x 2000 resamples never hold more than ``chunk_cells`` indices at once.
    """
    rng = np.random.default_rng(seed)
    n = den.size
    per = max(1, chunk_cells // max(n, 1))
    outs: list[list[np.ndarray]] = [[] for _ in nums]
    left = samples
    while left > 0:
        k = min(per, left)
        idx = rng.integers(0, n, size=(k, n))
        d = den[idx].sum(axis=1)
        for o, x in zip(outs, nums):
            o.append(x[idx].sum(axis=1) / d)
        left -= k
    return [np.concatenate(o) for o in outs]


def bootstrap_ratio(num: Sequence[float], den: Sequence[float], scale: float = 1.0,
                    samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, tuple[float, float]]:
    """(value, standard error, 95% percentile interval) of ``scale * sum(num) / sum(den)``, resampling items."""
    x = np.asarray(num, dtype=float)
    d = np.asarray(den, dtype=float)
    value = float(scale * x.sum() / d.sum())
    if x.size < 2:
        return value, float("nan"), (value, value)
    boot = scale * _boot_ratios([x], d, samples, seed)[0]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return value, float(boot.std(ddof=1)), (float(lo), float(hi))


def paired_bootstrap_ratio(num_a: Sequence[float], num_b: Sequence[float], den: Sequence[float], scale: float = 1.0,
                           samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """A - B of ``scale * sum(num)/sum(den)`` on the same items, by a paired bootstrap over items.

    The p-value is two-sided: twice the share of resampled differences on the other side of 0
    (at least 1/samples).
    """
    xa = np.asarray(num_a, dtype=float)
    xb = np.asarray(num_b, dtype=float)
    d = np.asarray(den, dtype=float)
    if xa.shape != xb.shape or xa.shape != d.shape:
        raise ValueError("paired bootstrap: the two runs must cover the same items")
    diff = float(scale * (xa.sum() - xb.sum()) / d.sum())
    if xa.size < 2:
        return PairedResult(n=int(xa.size), diff=diff, p=1.0, test="paired bootstrap")
    ra, rb = _boot_ratios([xa, xb], d, samples, seed)
    boot = scale * (ra - rb)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    if diff == 0.0:
        p = 1.0
    else:
        other_side = np.mean(boot <= 0) if diff > 0 else np.mean(boot >= 0)
        p = float(min(1.0, max(2.0 * other_side, 1.0 / samples)))
    return PairedResult(n=int(xa.size), diff=diff, p=p, test=f"paired bootstrap ({samples})", ci=(float(lo), float(hi)))


def paired_bootstrap_mean(a: Sequence[float], b: Sequence[float], samples: int = BOOTSTRAP_SAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """A - B of item means, by a paired bootstrap (for non-binary per-item scores)."""
    ones = np.ones(len(a))
    return paired_bootstrap_ratio(a, b, ones, 1.0, samples, seed)


def z_difference(ours: float, theirs: float, se: float | None) -> float | None:
    """(ours - theirs) in units of our standard error."""
    if se is None or not se or math.isnan(se):
        return None
    return (ours - theirs) / se
