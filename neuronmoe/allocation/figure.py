"""The paper's Figure 1 for any two allocations: experts per layer as bars, the per-layer
neuron score as a line, totals and the reduction in the legend (PNG + PDF)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from neuronmoe.allocation.store import Allocation


def _as_alloc(a: Any, default_name: str) -> Allocation:
    if isinstance(a, Allocation):
        return a
    if isinstance(a, (list, tuple)):
        return Allocation(experts_per_layer=[int(x) for x in a], name=default_name)
    from neuronmoe.allocation.store import load_allocation

    return load_allocation(a)


def plot_allocation_comparison(
    allocation: Allocation | Sequence[int] | str,
    reference: Allocation | Sequence[int] | str,
    stem: str | Path,
    *,
    scores: Sequence[float] | None = None,
    labels: tuple[str, str] | None = None,
    score_label: str = "unique language-specific neurons",
    params_change: float | None = None,
    title: str | None = None,
) -> list[Path]:
    """Draw Figure 1 for ``allocation`` vs ``reference`` and save ``stem.png`` + ``stem.pdf``.

    ``scores`` (default: the allocation's recorded scores) is drawn as a line on a second axis.
    The legend gives each total and the change of ``allocation`` vs ``reference`` in experts
    (and in parameters when ``params_change`` is given, e.g. the record's
    ``reference.moe_ffn_params_change``).
    """
    import logging

    from neuronmoe.plotting import new_figure, save_figure

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
    a = _as_alloc(allocation, "allocation")
    r = _as_alloc(reference, "reference")
    if a.num_layers != r.num_layers:
        raise ValueError(f"figure: {a.name} has {a.num_layers} layers, {r.name} has {r.num_layers}")
    la, lr = labels or (a.label, r.label)
    if scores is None:
        scores = a.scores
    n = a.num_layers
    xs = list(range(n))
    width = 0.4
    change = a.total_experts / r.total_experts - 1.0 if r.total_experts else 0.0
    fig, ax = new_figure(width=max(7.0, 0.28 * n), height=3.4)
    extra = f", {params_change * 100:+.1f}% params" if params_change is not None else ""
    ax.bar([x - width / 2 for x in xs], a.experts_per_layer, width, color="#1f77b4",
           label=f"{la}: {a.total_experts} experts ({change * 100:+.1f}% experts{extra} vs {lr})")
    ax.bar([x + width / 2 for x in xs], r.experts_per_layer, width, color="#9e9e9e", label=f"{lr}: {r.total_experts} experts")
    ax.set_xlabel("layer")
    ax.set_ylabel("experts per layer (incl. original MLP)")
    ax.set_xticks(xs if n <= 40 else xs[:: max(1, n // 20)])
    top = max(max(a.experts_per_layer), max(r.experts_per_layer))
    ax.set_ylim(0, top * 1.45 + 1.0)  # head room for the legend
    handles, hlabels = ax.get_legend_handles_labels()
    if scores is not None:
        if len(scores) != n:
            raise ValueError(f"figure: {len(scores)} scores for {n} layers")
        ax2 = ax.twinx()
        ax2.plot(xs, list(scores), color="#d62728", marker="o", markersize=3, linewidth=1.4, label=score_label)
        smax = max(max(float(x) for x in scores), 1e-12)
        ax2.set_ylim(0 if min(float(x) for x in scores) >= 0 else None, smax * 1.45)
        ax2.set_ylabel(score_label, color="#d62728")
        ax2.tick_params(axis="y", colors="#d62728")
        ax2.grid(False)
        ax2.spines["right"].set_visible(True)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, hlabels = handles + h2, hlabels + l2
    ax.legend(handles, hlabels, loc="upper center", ncol=1)
    ax.set_title(title or f"Expert allocation: {la} vs {lr}")
    stem = Path(stem)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    return save_figure(fig, stem)
