"""How small a difference the evaluation can resolve: the minimum detectable difference of every paired comparison.

For two models scored on the same ``n`` items with per-item differences ``d_i``, a two-sided test at level
``ALPHA`` (0.05) has power ``POWER`` (80 %) against a true difference of

    MDD = (z_{1 - ALPHA/2} + z_{POWER}) * SE,   SE = sd(d) / sqrt(n)              (accuracy: d_i in {-1, 0, 1})
    MDD = (z_{1 - ALPHA/2} + z_{POWER}) * SE,   SE = sqrt(n) * sd(d) / sum(bytes) / ln 2   (bits per byte: d_i the
                                                                                       documents' log-likelihood gaps)

(the normal approximation of the report's own tests: exact McNemar, paired sign-flip permutation), with ``sd(d)``
from the observed differences. It shrinks as ``1 / sqrt(n)``, so the items a comparison needs to detect its observed
difference at that power are ``n * (MDD / |difference|)^2``: docs/benchmarks.md uses this to choose the local
suite's default sizes (``neuronmoe/configs/eval_suites.yaml``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from neuronmoe.evaluation.stats import ALPHA

POWER = 0.8


def _z(p: float) -> float:
    """The standard normal quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


#: z_{1 - ALPHA/2} + z_{POWER}: 1.960 + 0.842 = 2.802 at the defaults
Z_SUM = _z(1 - ALPHA / 2) + _z(POWER)


@dataclass(frozen=True)
class Power:
    """One paired comparison: its items, observed difference (A - B) and minimum detectable difference."""

    n: int
    diff: float
    mdd: float

    @property
    def items_for_observed(self) -> int | None:
        """Items needed to detect the observed difference with 80 % power (None: no difference observed)."""
        if not self.diff or not math.isfinite(self.mdd):
            return None
        return max(2, math.ceil(self.n * (self.mdd / abs(self.diff)) ** 2))


def mdd_mean(a: Sequence[float], b: Sequence[float]) -> Power:
    """A vs B as means over the same items (accuracy: 0/1 per item)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(d.size)
    if n < 2:
        return Power(n, float(d.mean()) if n else 0.0, float("nan"))
    return Power(n, float(d.mean()), float(Z_SUM * d.std(ddof=1) / math.sqrt(n)))


def mdd_ratio(num_a: Sequence[float], num_b: Sequence[float], den: Sequence[float], scale: float = 1.0) -> Power:
    """A vs B of ``scale * sum(num) / sum(den)`` over the same items (bits per byte: num = -log-likelihood, den = bytes)."""
    d = np.asarray(num_a, dtype=float) - np.asarray(num_b, dtype=float)
    w = np.asarray(den, dtype=float)
    n = int(d.size)
    diff = float(scale * d.sum() / w.sum()) if n else 0.0
    if n < 2:
        return Power(n, diff, float("nan"))
    return Power(n, diff, float(Z_SUM * scale * math.sqrt(n) * d.std(ddof=1) / w.sum()))


def paired_power(run_a: dict[str, Any], run_b: dict[str, Any], column: dict[str, Any]) -> Power | None:
    """The :class:`Power` of run A vs run B on one cell, over the items both evaluated (as the report's paired test)."""
    from neuronmoe.evaluation.report import LN2, paired_values

    values = paired_values(run_a, run_b, column)
    if values is None:
        return None
    _, a, b, nbytes = values
    return mdd_ratio(a, b, nbytes, scale=1 / LN2) if nbytes is not None else mdd_mean(a, b)


#: the comparisons the miniature report is about: every adapter against Dense, the NeuronMoE rows against LayerMoE
COMPARISONS = (("LayerMoE-S1", "Dense"), ("NeuronMoE-EN", "Dense"), ("NeuronMoE-S1", "Dense"), ("NeuronMoE", "Dense"),
               ("NeuronMoE-EN", "LayerMoE-S1"), ("NeuronMoE-S1", "LayerMoE-S1"), ("NeuronMoE", "LayerMoE-S1"))


def power_section(table: Any, runs: list[dict[str, Any]], comparisons: Sequence[tuple[str, str]] = COMPARISONS) -> list[str]:
    """Markdown lines: per metric and language (cell), each comparison's items, observed difference, minimum detectable
    difference at 80 % power, and the items that would detect the observed difference."""
    from neuronmoe.evaluation.table import PERCENT_METRICS

    by_label = {row["model"]: run for row, run in zip(table.rows, runs)}
    rows = []
    for c in table.columns:
        pct = 100.0 if c.get("metric") in PERCENT_METRICS else 1.0
        unit = " points" if pct == 100.0 else ""
        for a, b in comparisons:
            if a not in by_label or b not in by_label:
                continue
            p = paired_power(by_label[a], by_label[b], c)
            if p is None:
                continue
            need = p.items_for_observed
            rows.append(f"| {c['label']} {(c.get('lang') or '').upper()} | {a} vs {b} | {p.n} | {pct * p.diff:+.3g}{unit} | "
                        f"{pct * p.mdd:.3g}{unit} | {need if need is not None else 'n/a'} |")
    if not rows:
        return []
    return ["## Resolving power (minimum detectable differences)", "",
            f"Smallest true difference each paired comparison detects with {POWER:.0%} power at two-sided p < {ALPHA} "
            "(normal approximation, the per-item differences' observed spread), and the items that would detect the "
            "observed difference with that power; docs/benchmarks.md explains how the default sizes follow from it.", "",
            "| cell | comparison | items | observed difference | detectable difference | items for the observed difference |",
            "|---|---|---:|---:|---:|---:|", *rows, ""]
