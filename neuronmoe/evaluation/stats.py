"""Uncertainty for evaluation numbers (pure functions, numpy only).

* accuracy (a mean of 0/1 items): closed-form standard error ``sqrt(p(1-p)/(n-1))`` (the sample
  standard deviation over sqrt(n), as lm-eval's ``mean_stderr``);
* ratio metrics over documents (bits per byte = -sum(loglik) / sum(bytes) / ln 2): bootstrap over
  documents (standard error of one run's value);
* two models on the same items: the exact McNemar test for 0/1 items (a two-sided binomial test
  on the discordant pairs), a paired sign-flip permutation test otherwise (per-item differences weighted
  by bytes for bits per byte; exact for small n, Monte Carlo otherwise), which holds its level at the
  few dozen documents of a held-out set where a percentile bootstrap does not.
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
#: sign flips of a Monte Carlo paired permutation test; below EXACT_MAX_N items every one of the 2^n is used
PERMUTATIONS = 2000
EXACT_MAX_N = 16


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
    resamples: int | None = None  # Monte Carlo permutation test: its sign flips (None: exact)

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


def _flip_matrix(n: int, samples: int, seed: int, exact_max_n: int) -> tuple[np.ndarray, int | None]:
    """Rows of documents whose difference changes sign: every non-empty subset when ``n <= exact_max_n`` (an exact
    test; second value None), else ``samples`` random subsets (Monte Carlo; second value ``samples``)."""
    if n <= exact_max_n:
        k = np.arange(1, 2 ** n, dtype=np.int64)[:, None]
        return ((k >> np.arange(n, dtype=np.int64)) & 1).astype(np.float64), None
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(samples, n)).astype(np.float64), samples


def paired_permutation_ratio(num_a: Sequence[float], num_b: Sequence[float], den: Sequence[float], scale: float = 1.0,
                             samples: int = PERMUTATIONS, seed: int = BOOTSTRAP_SEED,
                             exact_max_n: int = EXACT_MAX_N) -> PairedResult:
    """A - B of ``scale * sum(num) / sum(den)`` on the same items, by a paired sign-flip permutation test.

    Under the null hypothesis the two runs are exchangeable on every item, so each per-item difference
    ``d_i = num_a_i - num_b_i`` is as likely with either sign. The statistic is ``sum(d)`` (the ratio difference
    times the fixed ``sum(den)``: items weigh by their ``den``, bytes for bits per byte); its null distribution
    flips the signs of every subset of items (exact, ``2^n`` of them, for ``n <= exact_max_n``), else of
    ``samples`` random subsets (Monte Carlo, with the observed assignment counted, so the p-value is valid and at
    least ``2 / (samples + 1)``). Two-sided p = twice the smaller one-sided p. The 95% interval inverts the
    same test: flipping subset ``F`` changes the verdict on a shift ``delta`` exactly at
    ``sum_F(d) / sum_F(den)``, so the interval is the 2.5% and 97.5% quantiles of those ratios.
    """
    xa, xb, w = (np.asarray(v, dtype=np.float64) for v in (num_a, num_b, den))
    if xa.shape != xb.shape or xa.shape != w.shape:
        raise ValueError("paired permutation test: the two runs must cover the same items")
    d = xa - xb
    n = int(d.size)
    diff = float(scale * d.sum() / w.sum()) if n else 0.0
    if n < 2 or not np.any(d):
        return PairedResult(n=n, diff=diff, p=1.0, test="paired permutation")
    flips, resamples = _flip_matrix(n, samples, seed, exact_max_n)
    tol = 1e-12 * float(np.abs(d).sum())
    D, B = flips @ d, flips @ w  # T* - T = -2 D: a flip reaches the observed sum or beyond when D <= 0
    p_hi = (1 + np.count_nonzero(D <= tol)) / (len(D) + 1)
    p_lo = (1 + np.count_nonzero(D >= -tol)) / (len(D) + 1)
    p = float(min(1.0, 2.0 * min(p_hi, p_lo)))
    ratios = D[B > 0] / B[B > 0]
    lo, hi = np.quantile(ratios, [ALPHA / 2, 1 - ALPHA / 2])
    test = f"paired permutation (exact, 2^{n})" if resamples is None else f"paired permutation ({resamples} sign flips)"
    return PairedResult(n=n, diff=diff, p=p, test=test, ci=(float(scale * lo), float(scale * hi)), resamples=resamples)


def paired_permutation_mean(a: Sequence[float], b: Sequence[float], samples: int = PERMUTATIONS,
                            seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """A - B of item means, by the paired sign-flip permutation test (for non-binary per-item scores)."""
    return paired_permutation_ratio(a, b, np.ones(len(a)), 1.0, samples, seed)


def p_floor(resamples: int) -> float:
    """The smallest p a two-sided Monte Carlo permutation test with ``resamples`` sign flips can give."""
    return 2.0 / (resamples + 1)


def format_p_value(r: PairedResult) -> str:
    """The p-value; a Monte Carlo p at its floor is printed as the bound it really is (2,000 flips: ``< 0.001``)."""
    if r.resamples and r.p <= p_floor(r.resamples) * (1 + 1e-9):
        bound = p_floor(r.resamples)
        exp = math.floor(math.log10(bound))
        nice = math.ceil(round(bound / 10 ** exp, 9)) * 10 ** exp  # rounded up to one significant digit
        return f"< {nice:.1g}"
    return f"{r.p:.2g}"
