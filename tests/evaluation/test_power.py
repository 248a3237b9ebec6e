"""Minimum detectable differences: the closed forms, their 80 % power checked by simulation against the report's own
tests, and the report section per metric and language."""
from __future__ import annotations

import math

import numpy as np
import pytest

from neuronmoe.evaluation.power import Z_SUM, mdd_mean, mdd_ratio, power_section
from neuronmoe.evaluation.stats import mcnemar, paired_permutation_ratio
from tests.evaluation.test_report import _run  # noqa: F401  (run folders like `neuronmoe evaluate` writes)


def test_z_sum_is_the_textbook_constant():
    assert Z_SUM == pytest.approx(1.959964 + 0.841621, abs=1e-5)


def test_mdd_mean_closed_form_and_scaling():
    rng = np.random.default_rng(0)
    a, b = (rng.random(400) < 0.6).astype(float), (rng.random(400) < 0.5).astype(float)
    p = mdd_mean(a, b)
    d = a - b
    assert p.n == 400 and p.diff == pytest.approx(d.mean())
    assert p.mdd == pytest.approx(Z_SUM * d.std(ddof=1) / 20)
    # a quarter of the items: twice the detectable difference
    q = mdd_mean(a[:100], b[:100])
    assert q.mdd == pytest.approx(2 * Z_SUM * d[:100].std(ddof=1) / 20)
    # the items that detect the observed difference: n * (mdd / diff)^2
    assert p.items_for_observed == math.ceil(400 * (p.mdd / abs(p.diff)) ** 2)
    assert mdd_mean([1, 1], [1, 1]).items_for_observed is None


def test_mdd_has_about_80_percent_power_under_mcnemar():
    """Simulate paired 0/1 items whose true gap is the MDD: the exact McNemar test rejects in ~80 % of the runs."""
    rng = np.random.default_rng(1)
    n, q = 200, 0.3  # 30 % discordant pairs
    sd = math.sqrt(q)  # sd of d in {-1, 0, 1} with mean ~0
    gap = Z_SUM * sd / math.sqrt(n)
    hits = 0
    for _ in range(400):
        u = rng.random(n)
        a_only = u < (q + gap) / 2
        b_only = (u >= (q + gap) / 2) & (u < q)
        a, b = a_only.astype(float), b_only.astype(float)
        hits += mcnemar(a, b).p < 0.05
    assert 0.68 < hits / 400 < 0.9


def test_mdd_ratio_power_under_the_permutation_test():
    rng = np.random.default_rng(2)
    n, sd = 40, 30.0
    w = rng.uniform(200, 600, n)
    mdd = mdd_ratio(rng.normal(0, sd, n), np.zeros(n), w).mdd  # from one draw's spread
    shift = mdd * w.sum() / n  # the per-item mean shift whose ratio gap n * shift / sum(w) is the MDD
    hits = 0
    for k in range(200):
        d = rng.normal(shift, sd, n)
        hits += paired_permutation_ratio(d, np.zeros(n), w, samples=400, seed=k).p < 0.05
    assert 0.6 < hits / 200 < 0.95


def test_power_section_per_metric_and_language(tmp_path):
    from neuronmoe.evaluation.table import build_table

    rng = np.random.default_rng(3)
    dense = (rng.random(120) < 0.4).astype(float)
    better = dense.copy()
    better[np.flatnonzero(dense == 0)[:20]] = 1.0
    ll = list(-rng.uniform(200, 400, size=30))
    runs = [_run(tmp_path, "Dense", dense, ll), _run(tmp_path, "LayerMoE-S1", better, [x * 0.97 for x in ll], experts=80),
            _run(tmp_path, "NeuronMoE-S1", dense, [x * 0.99 for x in ll], experts=40)]
    lines = power_section(build_table(runs), runs)
    text = "\n".join(lines)
    assert lines[0].startswith("## Resolving power")
    rows = [ln for ln in lines if ln.startswith("| UDHR") or ln.startswith("| Held")]
    # 2 cells x 3 comparisons present (LayerMoE-S1 vs Dense, NeuronMoE-S1 vs Dense, NeuronMoE-S1 vs LayerMoE-S1)
    assert len(rows) == 6
    cloze = next(r for r in rows if "UDHR" in r and "LayerMoE-S1 vs Dense" in r).split("|")
    p = mdd_mean(better, dense)
    assert cloze[3].strip() == "120" and cloze[4].strip() == f"{100 * p.diff:+.3g} points"
    assert cloze[5].strip() == f"{100 * p.mdd:.3g} points" and cloze[6].strip() == str(p.items_for_observed)
    same = next(r for r in rows if "UDHR" in r and "NeuronMoE-S1 vs Dense" in r)
    assert "| n/a |" in same  # identical answers: no observed difference to size for
    assert " EL |" in text
