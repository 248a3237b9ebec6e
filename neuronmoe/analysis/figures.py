"""Figures drawn from stage outputs (never static images), in the shared style of ``neuronmoe.plotting``.

* :func:`neuron_counts_figure`  per-language language-specific units per layer (paper Table 6 as bars)
* :func:`allocation_figure`     allocation comparison (paper Figure 1), drawn by the allocation stage's
  own plotting function when it is installed
* :func:`expert_heatmap_figure` high-AP ratio per layer and expert (paper Figure 3)
* :func:`training_curves_figure` LM / balance / LPR losses against the step, one line per run
* :func:`make_figures`          everything that the outputs under ``$OUTPUT_DIR`` allow
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from neuronmoe.errors import InputError

log = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting is chatty at INFO

LOSS_KEYS = (("lm_loss", "LM loss"), ("aux_loss", "load-balancing loss"), ("lpr_loss", "LPR loss"))


def neuron_counts_figure(counts: Mapping[str, Any], stem: str | Path, languages: Sequence[str] | None = None) -> list[Path]:
    """Grouped bars: language-specific units per layer, one bar per language (``neurons/counts.json``)."""
    from neuronmoe.plotting import lang_color, new_figure, save_figure

    per_layer = counts["per_layer"]
    langs = list(languages or counts.get("languages") or per_layer)
    n_layers = int(counts.get("num_layers") or len(next(iter(per_layer.values()))))
    x = np.arange(n_layers)
    width = 0.8 / max(1, len(langs))
    fig, ax = new_figure(max(6.0, 0.28 * n_layers + 2), 3.2)
    for i, lang in enumerate(langs):
        vals = np.asarray(per_layer[lang], dtype=float)
        if vals.shape[0] != n_layers:
            raise InputError(f"counts.json: {lang} has {vals.shape[0]} layers, expected {n_layers}")
        ax.bar(x + (i - (len(langs) - 1) / 2) * width, vals, width, label=lang, color=lang_color(lang, i))
    ax.set_xlabel("layer")
    ax.set_ylabel("language-specific units")
    ax.set_title("Language-specific units per layer (top-K by AP)")
    ax.set_xticks(x[:: max(1, n_layers // 15)])
    ax.legend(ncol=min(4, len(langs)))
    return save_figure(fig, stem)


def allocation_figure(allocation: str | Path, reference: str | Path, stem: str | Path) -> list[Path]:
    """Figure 1: ``allocation`` vs ``reference`` (allocation JSON files), drawn by the allocation stage's
    own ``neuronmoe.allocation.plot_allocation_comparison`` (experts per layer + the neuron score line)."""
    from neuronmoe.allocation import plot_allocation_comparison

    return [Path(p) for p in plot_allocation_comparison(str(allocation), str(reference), stem)]


def pick_allocation_pair(alloc_dir: str | Path) -> tuple[Path, Path] | None:
    """(NeuronMoE, LayerMoE) allocation files for Figure 1: the pair-mode one vs the similarity one."""
    files = sorted(Path(alloc_dir).glob("*.json"))
    modes = {}
    for f in files:
        try:
            modes[f] = json.loads(f.read_text()).get("mode")
        except (OSError, json.JSONDecodeError):
            continue
    pair = [f for f, m in modes.items() if m == "pair"] or [f for f in files if f.stem == "neuronmoe"]
    sim = [f for f, m in modes.items() if m == "similarity"] or [f for f in files if f.stem == "layermoe"]
    if not pair or not sim:
        return None
    pick = lambda fs, name: next((f for f in fs if f.stem == name), fs[0])  # noqa: E731
    return pick(pair, "neuronmoe"), pick(sim, "layermoe")


def expert_heatmap_figure(summary: Sequence[Mapping[str, Any]], target: str, stem: str | Path, threshold: float = 0.9) -> list[Path]:
    """Figure 3: ratio (%) of high-AP units for ``target``, layers x experts; blank = no such expert."""
    from matplotlib import colormaps

    from neuronmoe.analysis.expert_ap import heatmap_matrix
    from neuronmoe.plotting import new_figure, save_figure

    mat, layers, names = heatmap_matrix(summary, target)
    fig, ax = new_figure(max(3.5, 0.75 * len(names) + 2.2), max(3.0, 0.22 * len(layers) + 1.2))
    cmap = colormaps["coolwarm"].with_extremes(bad="#eeeeee")
    vmax = float(np.nanmax(mat)) if np.isfinite(mat).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", cmap=cmap, vmin=0.0, vmax=max(vmax, 1e-6))
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(layers)), [str(x) for x in layers])
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.grid(False)
    if mat.size <= 400:
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if not math.isnan(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(f"High-AP (>= {threshold:g}) units for {target}, % of expert units")
    fig.colorbar(im, ax=ax, label="ratio (%)")
    return save_figure(fig, stem)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a line cut by a kill is skipped)."""
    from neuronmoe.utils.io import iter_jsonl

    return [rec for _, rec in iter_jsonl(path, skip_invalid=True)]


def training_curves_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], stem: str | Path) -> list[Path]:
    """LM, balance and LPR losses against the step; one line per run, one panel per loss present."""
    from neuronmoe.plotting import PALETTE, new_figure, save_figure

    keys = [(k, t) for k, t in LOSS_KEYS if any(k in r and r[k] is not None for rows in runs.values() for r in rows)]
    if not keys:
        keys = [("loss", "loss")]
    fig, axes = new_figure(3.2 * len(keys) + 0.6, 3.0, ncols=len(keys), squeeze=False)
    for j, (k, title) in enumerate(keys):
        ax = axes[0][j]
        for i, (run, rows) in enumerate(sorted(runs.items())):
            pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None and r.get("step") is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=run, color=PALETTE[i % len(PALETTE)], marker="." if len(pts) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        if j == 0:
            ax.legend()
    return save_figure(fig, stem)


def make_figures(output_dir: str | Path, figures_dir: str | Path | None = None, target: str | None = None) -> dict[str, list[str]]:
    """Draw every figure whose inputs exist under ``output_dir``; returns ``{name: [files]}``."""
    from neuronmoe.layout import Layout

    out = Layout(output_dir)
    fig_dir = Path(figures_dir) if figures_dir else out.figures
    made: dict[str, list[str]] = {}

    counts = out.neurons / "counts.json"
    if counts.exists():
        made["neuron_counts"] = [str(p) for p in neuron_counts_figure(json.loads(counts.read_text()), fig_dir / "neuron_counts")]

    alloc_dir = out.allocations
    pair = pick_allocation_pair(alloc_dir) if alloc_dir.is_dir() else None
    if pair:
        try:
            made["allocation"] = [str(p) for p in allocation_figure(pair[0], pair[1], fig_dir / "allocation")]
        except (ValueError, FileNotFoundError) as e:  # e.g. allocations for different models
            log.warning("allocation figure skipped: %s", e)

    summ = out.analysis / "expert_ap.json"
    if summ.exists():
        data = json.loads(summ.read_text())
        tgt = target or data["target"]
        made["expert_heatmap"] = [
            str(p) for p in expert_heatmap_figure(data["experts"], tgt, fig_dir / "expert_heatmap", data.get("threshold", 0.9))
        ]

    runs = {}
    train_dir = out.train
    if train_dir.is_dir():
        for m in sorted(train_dir.glob("*/metrics.jsonl")):
            rows = read_metrics(m)
            if rows:
                runs[m.parent.name] = rows
    if runs:
        made["training_curves"] = [str(p) for p in training_curves_figure(runs, fig_dir / "training_curves")]
    return made
