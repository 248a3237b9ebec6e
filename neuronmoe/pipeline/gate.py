"""The allocation gate of a paper run (``neuronmoe allocation-gate``): before any training, every computed
allocation is compared layer by layer with the paper's (Table 2: LayerMoE 84, NeuronMoE 49, NeuronMoE-EN 37;
Table 8: Turkish 50, Hungarian 47; Table 9: Qwen), and the run stops with the per-layer difference unless the
difference is accepted (``--accept-allocation-diff``). The decision is written to
``$OUTPUT_DIR/pipeline/allocation_gate.json``, and the reports say which allocation was trained and how it differs.

Where the paper publishes no allocation for a (model, kind, language) (Table 11's Bengali and Nepali, any other
model), the record says ``no paper reference`` and the gate lets it through.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from neuronmoe.errors import ConfigError, MissingInputError, StateError

MATCHES, DIFFERS, NO_REFERENCE = "matches the paper", "differs from the paper", "no paper reference"


def parse_item(item: str) -> tuple[str, str, str]:
    """``NAME=KIND/TARGET`` (``neuronmoe-el=neuronmoe/el``) -> (name, kind, target)."""
    from neuronmoe.layout import check_name
    from neuronmoe.pipeline.paper import RUN_KINDS

    name, _, rest = str(item).partition("=")
    kind, _, target = rest.partition("/")
    if not name or kind not in RUN_KINDS or not target:
        raise ConfigError(f"--allocations {item!r}: expected NAME=KIND/TARGET with KIND one of {', '.join(RUN_KINDS)} "
                          "(e.g. neuronmoe-el=neuronmoe/el)")
    return check_name(name, "--allocations"), kind, target


def paper_reference(model_config: str, kind: str, target: str) -> tuple[list[int], str] | None:
    """The paper's allocation for (model, kind, language) and its label, from the shipped published allocations
    (:func:`neuronmoe.pipeline.paper.published_allocation`); None where the paper publishes none."""
    from neuronmoe.allocation import load_allocation
    from neuronmoe.pipeline.paper import published_allocation

    name = published_allocation(model_config, kind, target)
    if name is None:
        return None
    rec = load_allocation(name)
    return list(rec.experts_per_layer), f"{name}: {rec.data.get('published', 'published')}"


def compare(computed: Sequence[int], reference: Sequence[int] | None) -> dict[str, Any]:
    """Status, totals and the layers where ``computed`` differs from the paper's ``reference``."""
    out: dict[str, Any] = {"computed": list(computed), "computed_total": int(sum(computed))}
    if reference is None:
        return {**out, "status": NO_REFERENCE, "paper": None, "paper_total": None, "differences": []}
    if len(reference) != len(computed):  # another model than --model-config's: nothing layer by layer to compare
        return {**out, "status": DIFFERS, "paper": list(reference), "paper_total": int(sum(reference)),
                "differences": [], "note": f"{len(computed)} layers vs the paper's {len(reference)}: another model?"}
    diffs = [{"layer": i, "computed": int(c), "paper": int(r), "diff": int(c) - int(r)}
             for i, (c, r) in enumerate(zip(computed, reference)) if c != r]
    return {**out, "status": DIFFERS if diffs else MATCHES, "paper": list(reference),
            "paper_total": int(sum(reference)), "differences": diffs}


def describe(name: str, rec: dict[str, Any]) -> str:
    """One phrase: ``neuronmoe-el: 50 experts vs the paper's 49 (...): layer 0 6 vs 5 (+1), ...``."""
    if rec["status"] != DIFFERS:
        return f"{name}: {rec['computed_total']} experts, {rec['status']}" + (f" ({rec['reference']})" if rec.get("reference") else "")
    layers = rec.get("note") or ", ".join(f"layer {d['layer']} {d['computed']} vs {d['paper']} ({d['diff']:+d})"
                                          for d in rec["differences"])
    return (f"{name}: {rec['computed_total']} experts vs the paper's {rec['paper_total']} ({rec['reference']}), "
            f"{len(rec['differences']) or 'every'} layer(s) differ: {layers}")


def evaluate_gate(items: Sequence[str], model_config: str, allocation_dir: Path) -> dict[str, dict[str, Any]]:
    """Every named allocation of ``allocation_dir`` compared with the paper's (a missing one is an error)."""
    from neuronmoe.allocation import load_allocation

    out = {}
    for item in items:
        name, kind, target = parse_item(item)
        path = allocation_dir / f"{name}.json"
        if not path.exists():
            raise MissingInputError(f"allocation gate: {path} does not exist; run the allocation (or similarity) "
                                    "command of the plan first")
        ref = paper_reference(model_config, kind, target)
        rec = compare(list(load_allocation(str(path)).experts_per_layer), ref[0] if ref else None)
        out[name] = {**rec, "kind": kind, "target": target, "reference": ref[1] if ref else None, "path": str(path)}
    return out


def decide(records: dict[str, dict[str, Any]], accept: bool) -> dict[str, Any]:
    """The gate's record; ``decision``: passed (nothing differs), accepted (differences let through) or stopped."""
    differ = [n for n, r in records.items() if r["status"] == DIFFERS]
    decision = "passed" if not differ else ("accepted" if accept else "stopped")
    return {"decision": decision, "accept_allocation_diff": bool(accept), "differ": differ, "allocations": records}


def run_gate(s: Any) -> int:
    """``neuronmoe allocation-gate``: compare, write the record, stop (exit 2) on an unaccepted difference."""
    from neuronmoe.layout import Layout
    from neuronmoe.utils.io import atomic_write_json

    lay = Layout(s.output_dir)
    record = decide(evaluate_gate(s.allocations, s.model_config, lay.allocations), s.accept_allocation_diff)
    record["model_config"] = s.model_config
    atomic_write_json(lay.allocation_gate(), record)
    for name, rec in record["allocations"].items():
        print(f"[allocation-gate] {describe(name, rec)}")
    if record["decision"] == "stopped":
        raise StateError("allocation gate: " + "; ".join(describe(n, record["allocations"][n]) for n in record["differ"])
                         + ". No training has started: rerun with --accept-allocation-diff (env ACCEPT_ALLOCATION_DIFF=1) "
                         "to train the computed allocations, or PAPER_ALLOCATIONS=published to train the paper's")
    print(f"[allocation-gate] {record['decision']}; record: {lay.allocation_gate()}")
    return 0


def report_lines(output_dir: str | Path) -> list[str]:
    """The report's section on the gate: which allocation each run trained and how it differs from the paper."""
    from neuronmoe.layout import Layout

    path = Layout(output_dir).allocation_gate()
    if not path.exists():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    how = {"passed": "every computed allocation equals the paper's",
           "accepted": "trained although they differ from the paper's (--accept-allocation-diff)",
           "stopped": "the gate stopped the run before training"}[record["decision"]]
    lines = ["## Allocations trained vs the paper's", "", f"Allocation gate ({path.name}): {how}.", ""]
    lines += [f"- {describe(n, r)}" for n, r in record["allocations"].items()]
    return [*lines, ""]


def gate_command(output_dir: str, model_config: str, names: dict[tuple[str, str], str], accept: bool = False) -> list[str]:
    """The plan's ``allocation-gate`` command for its computed allocations (``{(kind, target): name}``), each
    allocation once."""
    first: dict[str, str] = {}  # LayerMoE's one G1 allocation serves every target: checked once
    for (kind, target), name in names.items():
        first.setdefault(name, f"{name}={kind}/{target}")
    from neuronmoe.pipeline.commands import argv

    return ["neuronmoe", *argv("allocation-gate", output_dir=output_dir, model_config=model_config,
                               allocations=list(first.values()), accept_allocation_diff=accept or None)]
