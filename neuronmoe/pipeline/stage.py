"""The two orchestration commands on resolved settings (no argument parsing here):

* :func:`pipeline_main` (``neuronmoe pipeline``): plan the miniature reproduction, check it, run (or print) the
  stages that are not complete, write ``report.md``;
* :func:`reproduce_main` (``neuronmoe reproduce-paper``): the paper-scale plan's dry run (settings table against
  the paper, budget, allocations, commands), ``--list``, an experiment's ``--report``, ``--print-commands``.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from neuronmoe.budget import hook
from neuronmoe.pipeline.settings import PipelineSettings, ReproduceSettings


def pipeline_main(s: PipelineSettings) -> int:
    from neuronmoe.envvars import SCRIPT, report
    from neuronmoe.layout import Layout
    from neuronmoe.pipeline.plan import plan
    from neuronmoe.pipeline.report import write_report
    from neuronmoe.pipeline.run import honoured_variables, preflight, run_pipeline

    preflight(s)  # every argument checked before anything runs
    stages = plan(s)
    report("pipeline", script=os.environ.get(SCRIPT) or None, honoured=honoured_variables(stages))
    print(f"[pipeline] model {s.model}; new language {s.target}; old {','.join(s.old)} (source {s.source}); "
          f"neuron-analysis languages {','.join(s.languages)}; profile {s.profile}; output {s.output_dir}", flush=True)
    if s.report_only:
        tp = Layout(s.output_dir).pipeline / "timings.json"
        print(write_report(s, json.loads(tp.read_text()) if tp.exists() else None))
        return 0
    run_pipeline(s, dry_run=s.dry_run, only=s.only or None, rerun=s.rerun or None)
    return 0


def reproduce_main(s: ReproduceSettings) -> int:
    from neuronmoe.envvars import REPORTED, SCRIPT, report
    from neuronmoe.pipeline import experiments as ex
    from neuronmoe.pipeline.paper_check import check_table, honoured_variables

    if s.list_experiments:
        print("\n".join(ex.list_lines()))
        return 0
    if s.report:
        print(ex.write_report(ex.get_experiment(s.experiment), s.output_dir))
        return 0
    facts = ex.reproduce_facts(s.experiment, s.targets or None, s.model_config, s.model, s.output_dir, s.deepspeed,
                               s.nproc, s.allocations, accept_allocation_diff=s.accept_allocation_diff)
    budget = s.budget_args()
    hook.attach(facts, budget)  # tokens, FLOPs, GPU-hours, memory per device, disk (and access with --check)
    if os.environ.get(REPORTED) != "1":  # variables set but read neither here nor by any command of the plan
        report("reproduce-paper", script=os.environ.get(SCRIPT) or None, honoured=honoured_variables(facts["commands"]))
    if s.print_commands or s.run:
        check_table(facts["settings"])  # never hand a plan that differs from the paper to the runner
        hook.final_checks(facts, budget, strict_disk=True)  # ... nor one that does not fit a device or the disk
        if s.run:
            return run_paper_stages(facts["commands"], s)
        print("\n".join(facts["commands"]))
        return 0
    if s.as_json:
        print(json.dumps(facts, indent=2, default=str))
    else:
        print_plan(s, facts)
    check_table(facts["settings"])  # an undocumented difference from the paper: exit 2 after the table
    hook.final_checks(facts, budget)  # a run that does not fit its device (with --check: access, disk): exit 2
    if not s.dry_run:
        print("# validated; run these commands on the GPU cluster (scripts/reproduce_paper.sh runs them in order)", file=sys.stderr)
    return 0


def print_plan(s: ReproduceSettings, facts: dict[str, Any]) -> None:
    """The dry run as text: the experiment, the settings table, the budget, the checks, the evaluation coverage,
    allocations, commands."""
    from neuronmoe.pipeline.new_language import coverage_lines
    from neuronmoe.pipeline.paper_check import format_table

    if s.experiment:
        e = facts["experiment"]
        print(f"# experiment {e['name']}: {e['title']}")
        for k, v in {**e["tables"], **e["figures"]}.items():
            print(f"#   {k}: {v}")
    print(f"# the plan against the paper ({s.nproc} processes; neuronmoe/configs/paper_protocol.yaml, docs/training.md):")
    print(format_table(facts["settings"]))
    print("\n".join(hook.lines(facts)))
    print(f"# paper-scale plan for {facts['model_config']} ({facts['dims']['num_layers']} layers): model {facts['model']}, "
          f"targets {','.join(facts['targets'])}, {s.nproc} processes per node")
    for c in facts["checks"]:
        print(f"# ok: {c}")
    for line in coverage_lines(facts):  # benchmark x language, for a language without the paper's cells
        print(line)
    print_allocations(facts)
    for c in facts["commands"]:
        print(c)


def run_paper_stages(commands: list[str], s: ReproduceSettings) -> int:
    """``reproduce-paper --run``: the plan's commands as stages of the pipeline's runner."""
    from pathlib import Path

    from neuronmoe.pipeline.paper_stages import paper_stages, plan_output_dir
    from neuronmoe.pipeline.run import run_stages

    out = plan_output_dir(commands)
    run_stages(paper_stages(commands, out), Path(out), dry_run=s.dry_run, only=s.only or None, rerun=s.rerun or None)
    return 0


def print_allocations(facts: dict) -> None:
    print("# allocations (experts incl. the original MLP; MoE-FFN params vs LayerMoE):")
    for name, a in facts["allocations"].items():
        if a["experts_per_layer"] is None:
            print(f"#   {name:14s} ---  [{a['source']}]")
            continue
        change = a["moe_ffn_change_vs_layermoe"]
        print(f"#   {name:14s} {a['total_experts']:3d} experts, added {a['params']['added_params'] / 1e9:.2f}B params, "
              + (f"MoE-FFN {100 * change:+.1f}%" if change is not None else "no LayerMoE to compare with")
              + f"  [{a['source']}]")
