"""A paper-scale plan for a language the paper never ran (``NEW_LANGS=sw bash scripts/reproduce_paper.sh``).

* Runs: a language outside the paper's (el, tr, hu; Table 11's bn, ne) gets the Greek plan: LayerMoE and NeuronMoE
  stage 1, NeuronMoE-EN, and both stage-2 runs (:func:`default_runs`).
* LayerMoE: the paper's baseline is measured in LayerMoE's G1 setting (el, hu, tr new; en, es, zh old). A target
  outside G1 gets its own measurement with G1's settings (training documents, 100k tokens, BOS, B = 70) and G1's
  old languages, itself the only new language: with no new-new pair, LayerMoE's layer score is the mean of its
  similarities to en, es and zh (:func:`layermoe_plan`, :data:`ONE_NEW_SETTING`).
* Evaluation: the paper suite's cells where the language has them, else the benchmark families of
  ``eval_families.yaml`` (:func:`check_eval_coverage` prints the coverage table).
* No paper reference: no published allocation or score exists for such a language; the plan says so, and the
  allocation gate is left out when no allocation of the plan has a paper reference (:func:`gate_applies`).
"""
from __future__ import annotations

from typing import Any, Sequence

#: the paper's languages and the runs the default plan gives each (el: Table 1; tr, hu: Table 3; bn, ne: Table 11)
STAGE1_ONLY = ("tr", "hu", "bn", "ne")
FULL_RUNS = ["layermoe-s1", "neuronmoe-s1", "neuronmoe-en-s1", "layermoe-s2", "neuronmoe-s2"]
NO_REFERENCE = "no paper reference"
ONE_NEW_SETTING = ("LayerMoE's G1 measurement (training documents, 100k tokens, BOS, B=70) with {t} the only new "
                   "language against G1's old languages {old}: no new-new pair, so the layer score is the mean of "
                   "{t}'s similarities to {old}")


def default_runs(target: str) -> list[str]:
    """The training runs of ``target`` in the default plan: stage 1 only for the paper's tr/hu/bn/ne, else the
    full Greek plan (a new language gets both stages and the NeuronMoE-EN ablation)."""
    return ["layermoe-s1", "neuronmoe-s1"] if target in STAGE1_ONLY else list(FULL_RUNS)


def layermoe_plan(targets: Sequence[str], g1_new: Sequence[str], g1_old: Sequence[str], common: list[str],
                  options: list[str]) -> tuple[list[str], dict[str, str], list[list[str]]]:
    """``(extra new languages to prepare, {target: LayerMoE allocation}, similarity commands)``: one G1 measurement
    (``layermoe``) shared by the targets in G1, and one ``layermoe-<t>`` per target outside it."""
    in_g1 = [t for t in targets if t in g1_new]
    names: dict[str, str] = {}
    cmds: list[list[str]] = []
    extra: list[str] = []
    if in_g1:  # the languages are named too: NEW_LANGS / OLD_LANGS in the environment must not replace G1's
        cmds.append(["neuronmoe", "similarity", *common, "--setting", "g1", "--targets", ",".join(g1_new),
                     "--old-langs", ",".join(g1_old), "--name", "layermoe", *options])
        extra = [x for x in g1_new if x not in targets]
        names.update({t: "layermoe" for t in in_g1})
    for t in targets:
        if t not in in_g1:
            cmds.append(["neuronmoe", "similarity", *common, "--setting", "g1", "--targets", t,
                         "--old-langs", ",".join(g1_old), "--name", f"layermoe-{t}", *options])
            names[t] = f"layermoe-{t}"
    return extra, names, cmds


def gate_applies(model_config: str, names: dict[tuple[str, str], str]) -> bool:
    """Whether any allocation of the plan has a paper reference (else the allocation gate does not apply)."""
    from neuronmoe.pipeline.paper import published_allocation

    return any(published_allocation(model_config, kind, t) is not None for kind, t in names)


def check_eval_coverage(facts: dict[str, Any], targets: Sequence[str], source: str = "en") -> None:
    """The ``paper`` suite for the source and every target: the paper's cells, or the families' for a language
    without them (``facts["eval_coverage"]``, printed as a table); a language with no benchmark at all is an error
    (with the lm-eval tasks that mention it)."""
    from neuronmoe.evaluation.families import coverage

    langs = list(dict.fromkeys([source, *targets]))
    cov = coverage("paper", langs)
    facts["eval_coverage"] = cov
    facts["eval_suite"] = {r["benchmark"]: {x: c["task"] for x, c in r["cells"].items() if c} for r in cov["rows"]}
    facts["eval_shots"] = {r["benchmark"]: next(c["shots"] for c in r["cells"].values() if c) for r in cov["rows"]}
    fam = cov["from_families"]
    if not fam:
        facts["checks"].append("paper evaluation suite has every cell for " + ",".join(langs))
        return
    missing = "; ".join(f"{x}: no {', '.join(m)} benchmark in lm-eval" for x, m in cov["missing"].items())
    facts["checks"].append(f"evaluation of {','.join(fam)} (no paper cells, {NO_REFERENCE}): benchmarks lm-eval ships, "
                           "chosen by neuronmoe/configs/eval_families.yaml" + (f" ({missing})" if missing else ""))


def coverage_lines(facts: dict[str, Any]) -> list[str]:
    """The dry run's coverage table (only when a language is evaluated on the families' benchmarks)."""
    from neuronmoe.evaluation.families import format_coverage

    cov = facts.get("eval_coverage")
    if not cov or not cov.get("from_families"):
        return []
    return ["# evaluation coverage (benchmark x language: task (dataset, shots, metric, revision); "
            "neuronmoe/configs/eval_families.yaml, docs/evaluation.md):", *format_coverage(cov)]
