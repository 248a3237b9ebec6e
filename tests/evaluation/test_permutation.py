"""The paired test for bits per byte: a sign-flip permutation test over documents, weighted by bytes, exact for
small n; it holds its level under a simulated null (the percentile bootstrap it replaces did not: 9 % at 17
documents), its interval inverts it, and a Monte Carlo p at its floor is printed as its real bound."""
from __future__ import annotations

import math

import numpy as np
import pytest

from neuronmoe.evaluation import stats

LN2 = math.log(2)


def _null_pair(rng, n):
    """Two models' per-document NLL (nats) on n documents of log-normal length: exchangeable on every document."""
    nbytes = np.maximum(1.0, np.round(np.exp(rng.normal(6.0, 1.0, size=n))))
    rate = rng.normal(1.2, 0.25, size=n)  # documents differ a lot in difficulty
    noise = 0.3 / np.sqrt(nbytes / 100.0)  # longer documents: a steadier rate
    a = nbytes * (rate + rng.normal(0, 1, size=n) * noise)
    b = nbytes * (rate + rng.normal(0, 1, size=n) * noise)
    return a, b, nbytes


@pytest.mark.slow
@pytest.mark.parametrize("n", [15, 28, 266])
def test_false_positive_rate_under_the_null_is_nominal(n):
    """1,000 null replications: the share with p < 0.05 lies in [3 %, 7 %] (the estimate's own 95 % margin at
    5 % is +-1.4 points, so a test at 9 % would fail)."""
    rng = np.random.default_rng(2026 + n)
    reps = 1000
    rejections = 0
    for _ in range(reps):
        a, b, nb = _null_pair(rng, n)
        r = stats.paired_permutation_ratio(a, b, nb, scale=1 / LN2, seed=int(rng.integers(1 << 30)))
        rejections += r.p < stats.ALPHA
    rate = rejections / reps
    print(f"n={n}: false-positive rate {100 * rate:.1f}% over {reps} null replications")
    assert 0.03 <= rate <= 0.07, rate


def test_exact_for_small_n_matches_a_brute_force_enumeration():
    rng = np.random.default_rng(0)
    a, b, nb = _null_pair(rng, 9)
    d = a - b
    t = d.sum()
    signs = np.array([[1 if (k >> i) & 1 == 0 else -1 for i in range(9)] for k in range(2 ** 9)])
    null = signs @ d
    p_ref = min(1.0, 2 * min(np.mean(null >= t - 1e-9), np.mean(null <= t + 1e-9)))
    r = stats.paired_permutation_ratio(a, b, nb, scale=1 / LN2)
    assert r.resamples is None and r.test == "paired permutation (exact, 2^9)"
    assert r.p == pytest.approx(p_ref) and r.diff == pytest.approx(t / nb.sum() / LN2)


def test_a_consistent_gap_is_found_and_the_interval_inverts_the_test():
    rng = np.random.default_rng(1)
    n = 300
    base = rng.normal(2.0, 1.0, size=n)
    nbytes = rng.integers(50, 500, size=n).astype(float)
    a, b = base * nbytes, (base + 0.02) * nbytes  # B is worse by 0.02 nats per byte on every document
    r = stats.paired_permutation_ratio(a, b, nbytes, scale=1 / LN2)
    assert r.resamples == stats.PERMUTATIONS and r.diff == pytest.approx(-0.02 / LN2)
    assert r.p == pytest.approx(stats.p_floor(stats.PERMUTATIONS)) and r.ci[0] <= r.diff <= r.ci[1] and r.ci[1] < 0
    # a constant per-byte gap leaves no doubt about its size: the interval collapses onto it
    assert r.ci == pytest.approx((-0.02 / LN2, -0.02 / LN2))
    _, se_a, _ = stats.bootstrap_ratio(a, nbytes, 1 / LN2)
    assert abs(r.diff) < 2 * se_a  # the unpaired standard error alone could not tell them apart
    same = stats.paired_permutation_ratio(a, a, nbytes)
    assert same.diff == 0.0 and same.p == 1.0
    # the interval holds exactly the shifts the test does not reject
    noisy_b = b + rng.normal(0, 5, size=n) * np.sqrt(nbytes)
    r = stats.paired_permutation_ratio(a, noisy_b, nbytes, scale=1 / LN2)
    for delta, inside in ((r.ci[0] - 1e-3, False), ((r.ci[0] + r.ci[1]) / 2, True), (r.ci[1] + 1e-3, False)):
        shifted = stats.paired_permutation_ratio(a - delta * LN2 * nbytes, noisy_b, nbytes, scale=1 / LN2)
        assert (shifted.p >= stats.ALPHA) is inside, (delta, shifted.p, r.ci)


def test_a_monte_carlo_p_at_its_floor_is_printed_as_its_real_bound():
    floor = stats.p_floor(2000)
    assert floor == pytest.approx(2 / 2001)
    r = stats.PairedResult(n=300, diff=-0.01, p=floor, test="paired permutation (2000 sign flips)", resamples=2000)
    assert stats.format_p_value(r) == "< 0.001"
    assert stats.format_p_value(stats.PairedResult(n=300, diff=-0.01, p=0.0123, test="x", resamples=2000)) == "0.012"
    exact = stats.PairedResult(n=15, diff=-0.01, p=2 / 2 ** 15, test="paired permutation (exact, 2^15)")
    assert stats.format_p_value(exact) == "6.1e-05"  # an exact p is what it is


def test_the_report_uses_the_permutation_test_for_bits_per_byte_and_other_scores():
    from neuronmoe.evaluation import report

    assert report.paired_permutation_ratio is stats.paired_permutation_ratio
    r = stats.paired_permutation_mean([0.2, 0.5, 0.9, 0.4], [0.1, 0.5, 0.7, 0.1])
    assert r.test.startswith("paired permutation (exact") and r.diff == pytest.approx(0.15)
    assert r.p == pytest.approx(0.25)  # 3 positive differences, one zero: 4 of 16 flips reach the sum, times 2
