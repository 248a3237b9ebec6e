"""The bootstrap of an allocation against one full AP pass, side by side, on stored neuron activations.

    .venv/bin/python benchmarks/bench_bootstrap.py --neurons outputs/neurons [--per-language 200] \\
        [--replicates 100] [--repeats 3] [--brute 10] [--json out.json]

One *AP pass* is what ``neuronmoe neurons`` does after collecting: the AP of every unit for every language
(``average_precision`` layer by layer). The *bootstrap* is what ``allocate --bootstrap N`` does for the pair
allocation en -> el: N stratified resamples, replicate AP of the candidate units, the verification replicate over
every unit, selection and allocation per replicate (``neuronmoe.allocation.resample``). Both run ``--repeats``
times, interleaved (AP pass, bootstrap, AP pass, ...) on the same data; the script reports every timing, the
medians, the ratio of the medians and the range of the per-repeat ratios, the load average around each run and
the CPU. ``--brute`` replicates are then recomputed by brute force (the resampled rows materialised, AP over every
unit with the neuron stage's own function, selection, allocation) and compared with the bootstrap's: selections
and allocations must be identical. ``--per-language`` keeps the first N stored sentences of each language.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import torch


def _cpu() -> dict:
    out = {"torch_threads": torch.get_num_threads(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cores": os.cpu_count(), "machine": platform.machine()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        out["model"] = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), None)
        flags = next((ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags")), [])
        out["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "sse4", "fma")))
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def _subset(stored, per_language: int | None):
    if not per_language:
        return replace(stored, layers=[np.asarray(x) for x in stored.layers])
    rows = np.concatenate([np.flatnonzero(stored.labels == i)[:per_language] for i in range(len(stored.languages))])
    return replace(stored, labels=stored.labels[rows], layers=[np.asarray(x[rows]) for x in stored.layers])


def ap_pass(stored) -> np.ndarray:
    """The neuron stage's scoring step: AP of every unit for every language, layer by layer."""
    from neuronmoe.neuron_analysis.ap import average_precision

    L = len(stored.languages)
    return np.concatenate([average_precision(x, stored.labels, num_labels=L) for x in stored.layers]).astype(np.float32)


def bootstrap(stored, rule, replicates: int, seed: int = 0):
    """``allocate --bootstrap``'s work: resample, replicate AP, verify, select, allocate."""
    from neuronmoe.allocation.resample import Pass, Sweep, allocation_of, resample_weights, run_passes
    from neuronmoe.allocation.stability import margin_at

    n = min(int((stored.labels == i).sum()) for i in range(len(stored.languages)))
    p = Pass("bootstrap", None, resample_weights(stored.labels, replicates, seed), margin_at(0.25, n))
    sels = run_passes(Sweep(stored, rule, verify=1, device=torch.device("cpu")), [p])["bootstrap"]
    return p, sels, [allocation_of(rule, s, stored.unit_layer, stored.num_layers) for s in sels]


def brute(stored, rule, weights: np.ndarray):
    from neuronmoe.allocation.resample import allocation_of, select
    from neuronmoe.neuron_analysis.ap import average_precision

    rows = np.repeat(np.arange(len(stored.labels)), weights)
    L = len(stored.languages)
    ap = np.concatenate([average_precision(x[rows], stored.labels[rows], num_labels=L) for x in stored.layers]).astype(np.float32)
    units = np.arange(stored.num_units)
    sel = {lang: select(ap[:, stored.languages.index(lang)], units, rule.top_k, rule.ap_threshold) for lang in rule.languages}
    return sel, allocation_of(rule, sel, stored.unit_layer, stored.num_layers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", required=True, help="a neurons/ folder of `neuronmoe neurons` (with activations/)")
    ap.add_argument("--per-language", type=int, default=None, help="keep the first N stored sentences of each language")
    ap.add_argument("--replicates", type=int, default=100, help="bootstrap replicates")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of both timings")
    ap.add_argument("--brute", type=int, default=10, help="replicates checked against brute force")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    ap.add_argument("--source", default="en", help="source language of the pair allocation")
    ap.add_argument("--target", default="el", help="target language of the pair allocation")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from neuronmoe.allocation.resample import Rule, resample_weights
    from neuronmoe.neuron_analysis.stored import load_stored

    stored = _subset(load_stored(args.neurons, verify=False), args.per_language)
    n_per = {lang: int((stored.labels == i).sum()) for i, lang in enumerate(stored.languages)}
    rule = Rule("pair", args.source, (args.target,), 1, 6, "floor", stored.top_k, stored.ap_threshold)
    runs = []
    for _ in range(args.repeats):
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        full = ap_pass(stored)
        t_ap = time.perf_counter() - t
        stored = replace(stored, ap=full)
        load1 = os.getloadavg()[0]
        t = time.perf_counter()
        p, sels, allocs = bootstrap(stored, rule, args.replicates)
        t_boot = time.perf_counter() - t
        runs.append({"ap_pass_s": round(t_ap, 2), "bootstrap_s": round(t_boot, 2), "ratio": round(t_boot / t_ap, 3),
                     "load_before_ap": load0, "load_before_bootstrap": load1, "load_after": os.getloadavg()[0]})
        print(json.dumps(runs[-1]), flush=True)
    w = resample_weights(stored.labels, args.replicates, 0)
    same_alloc = same_sel = 0
    t = time.perf_counter()
    for r in range(args.brute):
        sel, alloc = brute(stored, rule, w[r])
        same_alloc += alloc == allocs[r]
        same_sel += all(np.array_equal(sel[k], sels[r][k]) for k in sel)
    t_brute = (time.perf_counter() - t) / max(1, args.brute)
    med_ap, med_boot = statistics.median(r["ap_pass_s"] for r in runs), statistics.median(r["bootstrap_s"] for r in runs)
    out = {"neurons": args.neurons, "sentences_per_language": n_per, "units": stored.num_units,
           "replicates": args.replicates, "rule": rule.__dict__ | {"targets": list(rule.targets)},
           "candidates": int(len(p.cand)), "candidate_margin": p.margin, "widened_from": p.widened, "runs": runs,
           "median_ap_pass_s": med_ap, "median_bootstrap_s": med_boot, "ratio_of_medians": round(med_boot / med_ap, 3),
           "ratio_range": [min(r["ratio"] for r in runs), max(r["ratio"] for r in runs)],
           "brute_force": {"replicates": args.brute, "identical_allocations": same_alloc, "identical_selections": same_sel,
                           "seconds_per_replicate": round(t_brute, 2)},
           "p_equal_trained": float(np.mean([a == _trained(stored, rule) for a in allocs])),
           "cpu": _cpu()}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0 if same_alloc == same_sel == args.brute else 1


def _trained(stored, rule) -> list[int]:
    from neuronmoe.allocation.resample import allocation_of, full_selection

    return allocation_of(rule, full_selection(stored, rule), stored.unit_layer, stored.num_layers)


if __name__ == "__main__":
    sys.exit(main())
