"""The stability of an allocation in words, tables and a figure (for the terminal, report.md and docs).

:func:`stability_markdown` is the report section of one ``<name>.stability.json``; :func:`report_section`
collects those of the allocations a report shows; :func:`plot_sample_sizes` draws the sample-size figure;
:func:`published_sensitivity` is the threshold table on the paper's published counts (Table 5), where the
counts allow, with :func:`count_margins` (how many units each layer could lose or gain before the
allocation changes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _p_equal(d: dict[str, Any]) -> str:
    lo, hi = d["p_equal_interval90"]
    return f"{100 * d['p_equal']:.0f}% (90% CI {100 * lo:.0f}-{100 * hi:.0f}%, {d['equal']}/{d['replicates']})"


def summary_lines(stab: dict[str, Any]) -> list[str]:
    """The headline numbers, one line each (printed by ``neuronmoe allocate``)."""
    out = []
    boot = stab.get("bootstrap")
    if boot:
        t = boot["total"]
        out.append(f"bootstrap ({boot['replicates']} replicates): P(allocation = trained) = {_p_equal(boot)}; total "
                   f"experts {t['trained']} trained, 90% interval {t['interval90'][0]}-{t['interval90'][1]}; uncertain "
                   f"layers: {', '.join(map(str, boot['uncertain_layers'])) or 'none'}; stable units "
                   f"{_pct(boot['units']['stable_share'])}")
    for row in stab.get("sample_sizes") or []:
        out.append(f"{row['n']} sentences per language: P(= full-sample allocation) = {_p_equal(row)}; mean |change| "
                   f"{row['mean_abs_change']:.3f} ± {row['mean_abs_change_se']:.3f} experts per layer")
    return out


def _layer_table(boot: dict[str, Any]) -> list[str]:
    rows = [x for x in boot["layers"] if x["uncertain"]]
    if not rows:
        return ["Every layer's expert count is the same in at least 90 % of the replicates (90 % interval of one value).", ""]
    out = ["| layer | trained | mode (share) | P(= trained) | 90% interval | counts |", "|---:|---:|---:|---:|---:|---|"]
    for x in rows:
        counts = ", ".join(f"{k}: {v}" for k, v in x["counts"].items())
        out.append(f"| {x['layer']} | {x['trained']} | {x['mode']} ({_pct(x['share_at_mode'])}) | {_pct(x['p_trained'])} | "
                   f"{x['interval90'][0]}-{x['interval90'][1]} | {counts} |")
    return out + [""]


def _sizes_table(stab: dict[str, Any]) -> list[str]:
    rows = stab.get("sample_sizes") or []
    if not rows:
        return []
    out = ["| sentences per language | P(= full-sample allocation) | mean abs. change per layer | total experts (90% interval) |",
           "|---:|---:|---:|---:|"]
    for r in rows:
        t = r["total"]
        out.append(f"| {r['n']} | {_p_equal(r)} | {r['mean_abs_change']:.3f} ± {r['mean_abs_change_se']:.3f} | "
                   f"{t['median']:.0f} ({t['interval90'][0]}-{t['interval90'][1]}) |")
    for r in stab.get("sample_sizes_skipped") or []:
        out.append(f"| {r['n']} | skipped: {r['reason']} | | |")
    return out + [""]


def sensitivity_table(sens: dict[str, Any]) -> list[str]:
    """Rows top-k, columns AP threshold: total experts and the layers that change (vs the trained allocation)."""
    cells = {(c["top_k"], c["ap_threshold"]): c for c in sens["cells"]}
    head = "| top-k \\ AP threshold | " + " | ".join(f"{t:g}" for t in sens["ap_thresholds"]) + " |"
    out = [head, "|---:|" + "---|" * len(sens["ap_thresholds"])]
    trained = sens.get("trained") or {}
    for k in sens["top_k"]:
        row = []
        for t in sens["ap_thresholds"]:
            c = cells[(k, t)]
            mark = " (trained)" if (k, t) == (trained.get("top_k"), trained.get("ap_threshold")) else ""
            row.append(_cell(c) + mark)
        out.append(f"| {k} | " + " | ".join(row) + " |")
    return out + [""]


def _cell(c: dict[str, Any]) -> str:
    if c.get("note"):
        return c["note"]
    if c["total_experts"] is None:
        return "no unit selected"
    ch = c["changed_layers"]
    return f"{c['total_experts']} ({'no layer changes' if not ch else 'layers ' + ','.join(map(str, ch)) + ' change'})"


def stability_markdown(stab: dict[str, Any], figure_prefix: str = "figures/") -> str:
    """The report section of one stability file: the trained allocation's probability, the layers whose count is
    uncertain, unit stability, the sample-size table and figure, the threshold grid."""
    name = stab["allocation"]
    lines = [f"### How stable is `{name}`?", ""]
    boot = stab.get("bootstrap")
    n = stab.get("sentences_per_language") or {}
    if boot:
        t = boot["total"]
        lines += [f"Bootstrap over the analysis sentences ({boot['replicates']} replicates, each language's "
                  f"{min(n.values()) if n else '?'}-{max(n.values()) if n else '?'} sentences drawn with replacement; "
                  f"AP, selection and allocation recomputed from the stored activations): the whole allocation equals "
                  f"the trained one in **{_p_equal(boot)}** of the replicates; total experts {t['trained']} trained, "
                  f"replicates {t['median']:.0f} (90 % interval {t['interval90'][0]}-{t['interval90'][1]}). "
                  f"{_pct(boot['units']['stable_share'])} of the selected units are selected in at least 90 % of the "
                  "replicates. Layers whose count is uncertain (90 % interval wider than one value, or a mode other "
                  "than the trained count):", ""]
        lines += _layer_table(boot)
    if stab.get("sample_sizes"):
        lines += ["Fewer sentences (each language subsampled without replacement, same number of replicates):", ""]
        lines += _sizes_table(stab)
        lines += [f"![sample sizes]({figure_prefix}{Path(f).name})" for f in stab.get("figures", []) if f.endswith(".png")]
        lines += [""]
    if stab.get("sensitivity"):
        lines += ["Thresholds (full sample; total experts, and the layers whose count differs from the trained "
                  "allocation):", ""]
        lines += sensitivity_table(stab["sensitivity"])
    return "\n".join(lines)


def report_section(out_dir: str | Path, names: Sequence[str]) -> list[str]:
    """Markdown lines: the stability of each named allocation under ``out_dir/allocation/`` that has one."""
    from neuronmoe.allocation.stability import load_stability
    from neuronmoe.layout import Layout

    out: list[str] = []
    for name in names:
        stab = load_stability(Layout(out_dir).allocation(name))
        if stab:
            out += [stability_markdown(stab), ""]
    return (["## How much to trust the allocations (docs/allocation.md, Stability)", "", *out] if out else [])


def plot_sample_sizes(stab: dict[str, Any], stem: str | Path) -> list[Path]:
    """Share of replicates equal to the full-sample allocation (90 % Wilson intervals) and the mean absolute
    change of experts per layer (± one standard error), against sentences per language; the bootstrap at the
    full sample size as a separate marker."""
    import logging

    from neuronmoe.plotting import new_figure, save_figure

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
    rows = sorted(stab.get("sample_sizes") or [], key=lambda r: r["n"])
    pts = [(r["n"], r) for r in rows]
    boot = stab.get("bootstrap")
    full_n = min((stab.get("sentences_per_language") or {"": 0}).values())
    fig, ax = new_figure(6.4, 4.2)
    ax2 = ax.twinx()
    if pts:
        xs = [n for n, _ in pts]
        p = [r["p_equal"] for _, r in pts]
        err = [[r["p_equal"] - r["p_equal_interval90"][0] for _, r in pts], [r["p_equal_interval90"][1] - r["p_equal"] for _, r in pts]]
        ax.errorbar(xs, p, yerr=err, marker="o", color="#1f77b4", capsize=3, label="P(allocation = full-sample one)")
        ax2.errorbar(xs, [r["mean_abs_change"] for _, r in pts], yerr=[r["mean_abs_change_se"] for _, r in pts],
                     marker="s", color="#d62728", capsize=3, label="mean |change| of experts per layer")
    if boot:
        lo, hi = boot["p_equal_interval90"]
        ax.errorbar([full_n], [boot["p_equal"]], yerr=[[boot["p_equal"] - lo], [hi - boot["p_equal"]]], marker="D",
                    color="#2ca02c", capsize=3, linestyle="none", label=f"bootstrap at {full_n} (with replacement)")
        ax2.errorbar([full_n], [boot["mean_abs_change"]], yerr=[boot["mean_abs_change_se"]], marker="D", color="#ff7f0e",
                     capsize=3, linestyle="none", label="bootstrap: mean |change|")
    ax.set_xlabel("sentences per language")
    ax.set_ylabel("share of replicates", color="#1f77b4")
    ax.set_ylim(-0.02, 1.05)
    ax2.set_ylabel("experts per layer", color="#d62728")
    ax2.set_ylim(bottom=0)
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=7)
    ax.set_title(f"How many sentences does `{stab['allocation']}` need?")
    return save_figure(fig, stem)


# ------------------------------------------------------------------------------------------------ published counts
def count_margins(scores: Sequence[float], e_min: int = 1, e_max: int = 6, rounding: str = "floor") -> list[dict[str, Any]]:
    """Per layer: how many units its score could lose, and gain, (the others unchanged) before the allocation
    changes; None when no change of that layer's score alone changes it (within [0, 2 x the largest score])."""
    from neuronmoe.allocation.core import allocate

    base = allocate(scores, e_min, e_max, rounding)
    top = int(2 * max(scores)) + 1

    def first(li: int, steps: range) -> int | None:
        for d in steps:
            trial = list(scores)
            trial[li] = scores[li] + d
            if allocate(trial, e_min, e_max, rounding) != base:
                return abs(d)
        return None

    return [{"layer": li, "score": sv, "experts": base[li], "lose": first(li, range(-1, -int(sv) - 1, -1)),
             "gain": first(li, range(1, top))} for li, sv in enumerate(scores)]


def published_sensitivity(grid_k: Sequence[int] = (500, 1000, 2000), grid_thr: Sequence[float] = (0.3, 0.5, 0.7),
                          counts: Sequence[float] | None = None) -> dict[str, Any]:
    """The threshold grid on the paper's Table 5 counts (EN+EL, Llama-3.2-3B), where the counts allow: the paper
    publishes the counts of one cell only (top 1,000, AP > 0.5), so every other cell says why it is empty."""
    from neuronmoe.allocation.core import allocate

    if counts is None:
        from neuronmoe.allocation.store import load_allocation

        counts = load_allocation("llama-3.2-3b-el-neuronmoe").scores
    assert counts is not None
    e = allocate(counts)
    cells = []
    for k in grid_k:
        for t in grid_thr:
            if (k, t) == (1000, 0.5):
                cells.append({"top_k": k, "ap_threshold": t, "experts_per_layer": e, "total_experts": sum(e), "changed_layers": []})
            else:
                cells.append({"top_k": k, "ap_threshold": t, "experts_per_layer": None, "total_experts": None,
                              "changed_layers": None, "note": "not published"})
    return {"top_k": list(grid_k), "ap_thresholds": list(grid_thr), "trained": {"top_k": 1000, "ap_threshold": 0.5},
            "cells": cells, "margins": count_margins(counts)}
