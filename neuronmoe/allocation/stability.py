"""How much to trust an allocation: bootstrap stability, sample-size curves and threshold sensitivity.

``neuronmoe allocate ... --bootstrap N [--sample-sizes 50,100,200,500] [--sensitivity]`` writes
``allocation/<name>.stability.json`` beside the allocation (docs/allocation.md, "Stability"):

* ``bootstrap``: each language's analysis sentences resampled with replacement N times; per replicate AP,
  selection and allocation are recomputed from the neuron stage's stored activations (no forward pass,
  :mod:`neuronmoe.allocation.resample`). Per layer: the distribution of expert counts (mode, share at the mode,
  share equal to the trained count, 90 % interval); the total's distribution; the probability that the whole
  allocation equals the trained one (with a 90 % Wilson interval); per layer, the share of the selected units
  that are selected in >= 90 % of replicates.
* ``sample_sizes``: the same at ``n`` sentences per language drawn without replacement, against the full-sample
  allocation: share of replicates equal to it and the mean absolute change of experts per layer.
* ``sensitivity``: the allocation recomputed from the full sample over a grid of top-k and AP thresholds.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from neuronmoe.allocation.resample import Rule
from neuronmoe.errors import InputError

if TYPE_CHECKING:
    from neuronmoe.allocation.settings import AllocateSettings
    from neuronmoe.neuron_analysis.stored import StoredNeurons

#: two-sided mass of the intervals reported
INTERVAL = 0.9
#: a unit counts as stable when a replicate selects it at least this often
STABLE_SHARE = 0.9
#: z of the two-sided 90 % normal interval (Wilson's interval of a proportion)
Z90 = 1.6448536269514722


def stability_path(allocation_json: str | Path) -> Path:
    """``<name>.stability.json`` beside ``<name>.json``."""
    p = Path(allocation_json)
    return p.with_name(p.name[: -len(".json")] + ".stability.json" if p.name.endswith(".json") else p.name + ".stability.json")


# ------------------------------------------------------------------------------------------------ statistics
def wilson(k: int, n: int, z: float = Z90) -> list[float]:
    """Wilson score interval of the proportion k/n (90 % by default)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [max(0.0, mid - half), min(1.0, mid + half)]


def interval(values: np.ndarray) -> list[int]:
    """The central 90 % interval of integer values: the 5 % and 95 % quantiles (observed values)."""
    lo, hi = np.quantile(values, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2], method="inverted_cdf")
    return [int(lo), int(hi)]


def distribution(values: np.ndarray) -> dict[str, int]:
    vals, counts = np.unique(values, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(vals, counts)}


def layer_stats(experts: np.ndarray, reference: Sequence[int]) -> list[dict[str, Any]]:
    """Per layer: reference count, mode, share at the mode, share equal to the reference, 90 % interval, counts."""
    out = []
    for li in range(experts.shape[1]):
        col = experts[:, li]
        vals, counts = np.unique(col, return_counts=True)
        mode = int(vals[np.argmax(counts)])  # the smallest of equally frequent values
        lo, hi = interval(col)
        out.append({"layer": li, "trained": int(reference[li]), "mode": mode,
                    "share_at_mode": float(counts.max() / len(col)), "p_trained": float(np.mean(col == reference[li])),
                    "interval90": [lo, hi], "uncertain": bool(lo != hi or mode != int(reference[li])),
                    "counts": distribution(col)})
    return out


def total_stats(totals: np.ndarray, reference: int) -> dict[str, Any]:
    return {"trained": int(reference), "mean": float(totals.mean()), "sd": float(totals.std(ddof=1)) if len(totals) > 1 else 0.0,
            "median": float(np.median(totals)), "interval90": interval(totals), "counts": distribution(totals)}


def agreement(experts: np.ndarray, reference: Sequence[int]) -> dict[str, Any]:
    """Share of replicates whose whole allocation equals ``reference`` (with its 90 % Wilson interval) and the mean
    absolute change of experts per layer (with its standard error over replicates)."""
    ref = np.asarray(reference)
    equal = int((experts == ref[None, :]).all(axis=1).sum())
    change = np.abs(experts - ref[None, :]).mean(axis=1)
    r = len(experts)
    return {"p_equal": equal / r, "p_equal_interval90": wilson(equal, r), "equal": equal,
            "mean_abs_change": float(change.mean()),
            "mean_abs_change_se": float(change.std(ddof=1) / math.sqrt(r)) if r > 1 else 0.0}


def unit_stats(sels: Sequence[dict[str, np.ndarray]], full: dict[str, np.ndarray], unit_layer: np.ndarray,
               n_layers: int) -> dict[str, Any]:
    """Of the units the full sample selects (the union over the allocation's languages), per layer the share
    that at least ``STABLE_SHARE`` of the replicates select too; and the same per language overall."""
    def union(sel: dict[str, np.ndarray]) -> np.ndarray:
        return np.unique(np.concatenate(list(sel.values())))

    full_u = union(full)
    hits = np.zeros(len(full_u), dtype=np.int64)
    per_lang = {lang: np.zeros(len(u), dtype=np.int64) for lang, u in full.items()}
    for sel in sels:
        hits += np.isin(full_u, union(sel))
        for lang in full:
            per_lang[lang] += np.isin(full[lang], sel[lang])
    stable = hits >= STABLE_SHARE * len(sels)
    layer = unit_layer[full_u]
    n_sel = np.bincount(layer, minlength=n_layers)
    n_stable = np.bincount(layer[stable], minlength=n_layers)
    return {"selected_per_layer": n_sel.tolist(), "stable_per_layer": n_stable.tolist(),
            "stable_share_per_layer": [float(s / n) if n else None for s, n in zip(n_stable, n_sel)],
            "stable_share": float(stable.mean()) if len(stable) else None,
            "stable_share_per_language": {lang: float((h >= STABLE_SHARE * len(sels)).mean()) if len(h) else None
                                          for lang, h in per_lang.items()}}


# ------------------------------------------------------------------------------------------------ the run
def rule_of(s: AllocateSettings, stored: StoredNeurons) -> Rule:
    """The trained allocation's rule: the settings' mapping, the neuron stage's top-k and threshold."""
    return Rule(mode=s.mode, source=s.source_lang, targets=tuple(s.targets), e_min=s.e_min, e_max=s.e_max,
                rounding=s.rounding, top_k=stored.top_k, ap_threshold=stored.ap_threshold)


def margin_at(margin: float, sentences: int) -> float:
    """The candidate margin at ``sentences`` per language: ``margin`` is the one at 100 sentences, and the spread
    of AP over resamples shrinks as 1/sqrt(sentences)."""
    return min(1.0, margin * math.sqrt(100.0 / max(1, sentences)))


def check_stability_inputs(s: AllocateSettings, record: dict[str, Any], neurons_dir: Path) -> StoredNeurons:
    """The stored activations exist, are unchanged since the neuron stage (sha256) and give the allocation of
    its selected_<lang>.csv files: checked before the allocation is written."""
    from neuronmoe.allocation.resample import allocation_of, full_selection
    from neuronmoe.neuron_analysis.stored import load_stored

    stored = load_stored(neurons_dir)
    rule = rule_of(s, stored)
    missing = [lang for lang in rule.languages if lang not in stored.languages]
    if missing:
        raise InputError(f"{neurons_dir}: no stored activations of {', '.join(missing)}")
    plain = allocation_of(rule, full_selection(stored, rule), stored.unit_layer, stored.num_layers)
    if plain != list(record["experts_per_layer"]):
        raise InputError(f"{neurons_dir}: ap.npy selects units that give {plain}, not the allocation of the "
                         f"selected_<lang>.csv files ({record['experts_per_layer']}); rerun `neuronmoe neurons`")
    return stored


def usable_sizes(sizes: Sequence[int], stored: StoredNeurons) -> tuple[list[int], list[dict[str, Any]]]:
    """(sizes smaller than every language's stored sample, the others with the reason they are skipped)."""
    fewest = min(int((stored.labels == i).sum()) for i in range(len(stored.languages)))
    lang = stored.languages[int(np.argmin([(stored.labels == i).sum() for i in range(len(stored.languages))]))]
    keep = [n for n in sizes if n < fewest]
    skipped = [{"n": n, "reason": f"the stored sample has {fewest} sentences of {lang}: a subsample of {n} without "
                               f"replacement is {'the whole sample' if n == fewest else 'impossible'}"}
               for n in sizes if n >= fewest]
    return keep, skipped


def run_stability(s: AllocateSettings, stored: StoredNeurons, json_path: Path) -> dict[str, Any]:
    """Compute and write ``<name>.stability.json`` (+ the sample-size figure) for the allocation at ``json_path``
    (checked by :func:`check_stability_inputs`); returns its content."""
    from neuronmoe.allocation.resample import Pass, Sweep, allocation_of, full_selection, resample_weights, run_passes
    from neuronmoe.utils.device import resolve_device
    from neuronmoe.utils.io import read_json

    t0 = time.perf_counter()
    record = read_json(json_path)
    rule = rule_of(s, stored)
    full = full_selection(stored, rule)
    plain = list(record["experts_per_layer"])
    sizes, skipped = usable_sizes(s.sample_sizes or [], stored)
    n_full = {lang: int(len(stored.rows_of(lang))) for lang in stored.languages}
    passes = ([Pass("bootstrap", None, resample_weights(stored.labels, s.bootstrap, s.stability_seed),
                    margin_at(s.bootstrap_margin, min(n_full.values())))] if s.bootstrap else [])
    passes += [Pass(f"n={n}", n, resample_weights(stored.labels, s.bootstrap, s.stability_seed, n),
                    margin_at(s.bootstrap_margin, n)) for n in sizes]
    t_load = time.perf_counter()
    sels = run_passes(Sweep(stored, rule, s.bootstrap_verify, resolve_device(s.device), s.progress), passes) if passes else {}
    t_sweep = time.perf_counter()
    out = {"allocation": record["name"], "experts_per_layer": list(record["experts_per_layer"]),
           "rule": {**rule.__dict__, "targets": list(rule.targets)}, "neurons_dir": str(stored.folder),
           "inputs_sha256": stored.inputs, "sentences_per_language": n_full, "interval": INTERVAL,
           "stable_share": STABLE_SHARE, "seed": s.stability_seed}
    for p in passes:
        experts = np.asarray([allocation_of(rule, sel, stored.unit_layer, stored.num_layers) for sel in sels[p.key]])
        summary = summarise(experts, plain, p, s.bootstrap_verify)
        if p.size is None:
            out["bootstrap"] = {**summary, "units": unit_stats(sels[p.key], full, stored.unit_layer, stored.num_layers)}
        else:
            out.setdefault("sample_sizes", []).append({"n": p.size, **summary})
    if s.sample_sizes:
        out["sample_sizes_skipped"] = skipped
    out["sensitivity"] = sensitivity(stored, rule, s.grid_top_k, s.grid_ap_thresholds, plain)
    out["timings"] = {"load_s": round(t_load - t0, 2), "replicates_s": round(t_sweep - t_load, 2),
                      "total_s": round(time.perf_counter() - t0, 2)}
    return write_stability(s, out, json_path)


def summarise(experts: np.ndarray, reference: Sequence[int], p: Any, verify: int) -> dict[str, Any]:
    """One pass's statistics against ``reference`` (the trained, i.e. full-sample, allocation)."""
    layers = layer_stats(experts, reference)
    return {"replicates": int(len(experts)), **agreement(experts, reference),
            "total": total_stats(experts.sum(axis=1), int(sum(reference))), "layers": layers,
            "uncertain_layers": [x["layer"] for x in layers if x["uncertain"]],
            "method": {"candidate_margin": p.margin, "candidates": int(len(p.cand)), "widened_from": p.widened,
                       "exact": p.exact, "verified_replicates": 0 if p.exact else int(verify)}}


def sensitivity(stored: StoredNeurons, rule: Rule, grid_k: Sequence[int], grid_thr: Sequence[float],
                trained: Sequence[int]) -> dict[str, Any]:
    """The allocation from the full sample at every (top-k, AP threshold) of the grid: total experts and the
    layers whose count differs from the trained allocation."""
    from neuronmoe.allocation.resample import allocation_of, full_selection

    cells = []
    for k in grid_k:
        for thr in grid_thr:
            r = rule.with_thresholds(k, thr)
            sel = full_selection(stored, r)
            if not all(len(u) for u in sel.values()):
                cells.append({"top_k": int(k), "ap_threshold": float(thr), "experts_per_layer": None,
                              "total_experts": None, "changed_layers": None, "selected": {x: int(len(u)) for x, u in sel.items()}})
                continue
            e = allocation_of(r, sel, stored.unit_layer, stored.num_layers)
            cells.append({"top_k": int(k), "ap_threshold": float(thr), "experts_per_layer": e, "total_experts": int(sum(e)),
                          "changed_layers": [i for i, (a, b) in enumerate(zip(e, trained)) if a != b],
                          "selected": {x: int(len(u)) for x, u in sel.items()}})
    return {"top_k": [int(k) for k in grid_k], "ap_thresholds": [float(t) for t in grid_thr],
            "trained": {"top_k": rule.top_k, "ap_threshold": rule.ap_threshold}, "cells": cells}


def write_stability(s: AllocateSettings, out: dict[str, Any], json_path: Path) -> dict[str, Any]:
    """The figure(s), then ``<name>.stability.json`` (atomic); prints where they are and the headline numbers."""
    from neuronmoe.layout import Layout
    from neuronmoe.utils.io import atomic_write_json

    figs: list[Path] = []
    if out.get("sample_sizes"):
        from neuronmoe.allocation.stability_report import plot_sample_sizes

        figs = plot_sample_sizes(out, Layout(s.output_dir).figures / f"allocation_{out['allocation']}_sample_sizes")
    out["figures"] = [str(f) for f in figs]
    out["settings"] = {k: s.to_dict()[k] for k in ("bootstrap", "sample_sizes", "grid_top_k", "grid_ap_thresholds",
                                                   "stability_seed", "bootstrap_margin", "bootstrap_verify")}
    path = atomic_write_json(stability_path(json_path), out)
    from neuronmoe.allocation.stability_report import summary_lines

    for line in summary_lines(out):
        print(line)
    print(f"stability: {path}" + (f"; figure: {', '.join(str(f) for f in figs)}" if figs else ""))
    return out


def layer_intervals(stability: dict[str, Any] | None) -> list[tuple[int, int]] | None:
    """The bootstrap's per-layer 90 % intervals (for Figure 1), or None."""
    boot = (stability or {}).get("bootstrap")
    return [tuple(x["interval90"]) for x in boot["layers"]] if boot else None  # type: ignore[misc]


def load_stability(allocation_json: str | Path) -> dict[str, Any] | None:
    """The stability file beside an allocation, or None."""
    from neuronmoe.utils.io import read_json

    p = stability_path(allocation_json)
    if not p.is_file():
        return None
    d = read_json(p)
    if not isinstance(d, dict) or "experts_per_layer" not in d:
        raise InputError(f"{p}: not a stability file (no experts_per_layer)")
    return d

