"""The paper's Figure 1 for any two allocations: experts per layer as bars, the per-layer
neuron score as a line, totals and the reduction in the legend (PNG + PDF); with the bootstrap's
per-layer 90 % intervals of the allocation when given."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from neuronmoe.allocation.store import Allocation
from neuronmoe.errors import InputError


def _as_alloc(a: Any, default_name: str) -> Allocation:
    if isinstance(a, Allocation):
        return a
    if isinstance(a, (list, tuple)):
        return Allocation(experts_per_layer=[int(x) for x in a], name=default_name)
    from neuronmoe.allocation.store import load_allocation

    return load_allocation(a)


@dataclass
class FigureOne:
    """What Figure 1 draws (see :func:`plot_allocation_comparison`)."""

    a: Allocation
    r: Allocation
    labels: tuple[str, str]
    scores: Sequence[float] | None
    score_label: str
    params_change: float | None
    intervals: Sequence[tuple[int, int]] | None = None

    @property
    def change(self) -> float:
        return self.a.total_experts / self.r.total_experts - 1.0 if self.r.total_experts else 0.0


def plot_allocation_comparison(
    allocation: Allocation | Sequence[int] | str,
    reference: Allocation | Sequence[int] | str,
    stem: str | Path,
    *,
    scores: Sequence[float] | None = None,
    labels: tuple[str, str] | None = None,
    score_label: str = "unique language-specific neurons",
    params_change: float | None = None,
    intervals: Sequence[tuple[int, int]] | None = None,
) -> list[Path]:
    """Draw Figure 1 for ``allocation`` vs ``reference`` and save ``stem.png`` + ``stem.pdf``.

    ``scores`` (default: the allocation's recorded scores) is drawn as a line on a second axis.
    The legend gives each total and the change of ``allocation`` vs ``reference`` in experts
    (and in parameters when ``params_change`` is given, e.g. the record's
    ``reference.moe_ffn_params_change``). ``intervals``: per layer ``(low, high)`` experts of the
    allocation (the bootstrap's 90 % interval), drawn as a bar over each of its columns.
    """
    a, r = _as_alloc(allocation, "allocation"), _as_alloc(reference, "reference")
    if a.num_layers != r.num_layers:
        raise InputError(f"figure: {a.name} has {a.num_layers} layers, {r.name} has {r.num_layers}")
    if intervals is not None and len(intervals) != a.num_layers:
        raise InputError(f"figure: {len(intervals)} intervals for {a.num_layers} layers")
    spec = FigureOne(a, r, labels or (a.label, r.label), a.scores if scores is None else scores, score_label,
                     params_change, intervals)
    fig, ax = _draw_bars(spec)
    handles, hlabels = ax.get_legend_handles_labels()
    if spec.scores is not None:
        h2, l2 = _draw_scores(ax, spec)
        handles, hlabels = handles + h2, hlabels + l2
    ax.legend(handles, hlabels, loc="upper center", ncol=1)
    ax.set_title(f"Expert allocation: {spec.labels[0]} vs {spec.labels[1]}")
    from neuronmoe.plotting import save_figure

    stem = Path(stem)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    return save_figure(fig, stem)


def _draw_bars(spec: FigureOne) -> tuple[Any, Any]:
    import logging

    from neuronmoe.plotting import new_figure

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
    a, r = spec.a, spec.r
    la, lr = spec.labels
    n = a.num_layers
    xs = list(range(n))
    width = 0.4
    fig, ax = new_figure(width=max(7.0, 0.28 * n), height=3.4)
    extra = f", {spec.params_change * 100:+.1f}% params" if spec.params_change is not None else ""
    ax.bar([x - width / 2 for x in xs], a.experts_per_layer, width, color="#1f77b4",
           label=f"{la}: {a.total_experts} experts ({spec.change * 100:+.1f}% experts{extra} vs {lr})")
    ax.bar([x + width / 2 for x in xs], r.experts_per_layer, width, color="#9e9e9e", label=f"{lr}: {r.total_experts} experts")
    top = max(max(a.experts_per_layer), max(r.experts_per_layer))
    if spec.intervals is not None:
        lo = [float(i[0]) for i in spec.intervals]
        hi = [float(i[1]) for i in spec.intervals]
        ax.errorbar([x - width / 2 for x in xs], [(p + q) / 2 for p, q in zip(lo, hi)],
                    yerr=[[(q - p) / 2 for p, q in zip(lo, hi)]] * 2, fmt="none", ecolor="black", elinewidth=1.0,
                    capsize=2.5, label=f"{la}: bootstrap 90% interval per layer")
        top = max(top, max(hi))
    ax.set_xlabel("layer")
    ax.set_ylabel("experts per layer (incl. original MLP)")
    ax.set_xticks(xs if n <= 40 else xs[:: max(1, n // 20)])
    ax.set_ylim(0, top * 1.45 + 1.0)  # head room for the legend
    return fig, ax


def _draw_scores(ax: Any, spec: FigureOne) -> tuple[list[Any], list[str]]:
    scores = spec.scores or []
    n = spec.a.num_layers
    if len(scores) != n:
        raise InputError(f"figure: {len(scores)} scores for {n} layers")
    ax2 = ax.twinx()
    ax2.plot(list(range(n)), list(scores), color="#d62728", marker="o", markersize=3, linewidth=1.4, label=spec.score_label)
    smax = max(max(float(x) for x in scores), 1e-12)
    ax2.set_ylim(0 if min(float(x) for x in scores) >= 0 else None, smax * 1.45)
    ax2.set_ylabel(spec.score_label, color="#d62728")
    ax2.tick_params(axis="y", colors="#d62728")
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    return ax2.get_legend_handles_labels()
