"""The two commands of the evaluation stage, on resolved settings (no argument parsing here):

* :func:`evaluate_main` (``neuronmoe evaluate``): resolve the cells (:func:`plan_run`: a suite and/or lm-eval
  tasks, the local suite built from ``$OUTPUT_DIR/data``), then either ``--check`` them (:func:`check_main`, no
  model) or evaluate them (:func:`neuronmoe.evaluation.runner.evaluate`);
* :func:`report_main` (``neuronmoe report``): Table 1 of the given runs as Markdown + CSV.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from neuronmoe.errors import MissingInputError
from neuronmoe.evaluation.runner import EvalPlan
from neuronmoe.evaluation.settings import EvaluateSettings, ReportSettings
from neuronmoe.layout import Layout

log = logging.getLogger("neuronmoe.evaluation")


def plan_run(s: EvaluateSettings) -> EvalPlan:
    """The cells of this run (task specs), the extra task folders and where the run is written; builds the
    local suite's task files when the suite is generated."""
    from neuronmoe.evaluation.local_tasks import build_local_tasks
    from neuronmoe.evaluation.suites import get_suite, resolve_suite, specs_from_tasks

    suite = s.effective_suite
    specs: list[Any] = []
    include = list(s.include_path)
    task_dirs = None
    if suite:
        spec = get_suite(suite)
        specs = resolve_suite(suite, s.languages or None, profile=s.profile, shots=s.shots)
        if not s.tasks and spec.get("lm_eval_task_dirs") is not None:  # + the families' folders of a new language
            from neuronmoe.evaluation.families import suite_task_dirs

            task_dirs = suite_task_dirs(spec, [x.lang for x in specs])
        if spec.get("generated"):
            sizes = {**(spec.get("sizes") or {}), **s.local_sizes}
            langs = list(dict.fromkeys(x.lang for x in specs if x.lang))
            include.append(str(build_local_tasks(s.output_dir, langs, sizes)))
    if s.tasks:
        specs += specs_from_tasks(list(s.tasks), s.num_fewshot)
    run_name = s.run_name or s.default_run_name()
    run_dir = Path(s.results_dir) if s.results_dir else Layout(s.output_dir).eval_run(run_name, "--run-name")
    return EvalPlan(specs=specs, run_name=run_name, run_dir=run_dir, include_paths=include, suite=suite, task_dirs=task_dirs)


def evaluate_main(s: EvaluateSettings) -> int:
    """``neuronmoe evaluate``: check the inputs that need no data, plan the cells, then check or evaluate them."""
    from neuronmoe.evaluation.runner import check_adapter, evaluate, read_adapter_config, task_manager_for_plan
    from neuronmoe.evaluation.taskindex import check_tasks

    if s.dataset_replicas and not Path(s.dataset_replicas).is_dir():
        raise MissingInputError(f"--dataset-replicas {s.dataset_replicas}: no such folder")
    if not s.check_only:  # the model and adapter are checked before plan_run writes the local task files
        from neuronmoe.models import load_config

        base = load_config(s.model)
        if s.adapter:
            check_adapter(read_adapter_config(s.adapter), base, s.adapter)
    plan = plan_run(s)
    tm = task_manager_for_plan(plan)
    check_tasks(list(dict.fromkeys(x.task for x in plan.specs)), tm)
    if s.check_only:
        return check_main(s, plan, tm)
    out = evaluate(s, plan, tm)
    if out is not None:
        print(out)
    return 0


def check_main(s: EvaluateSettings, plan: EvalPlan, tm: Any) -> int:
    """``--check``: build every cell (no model), print the table; 1 if a cell fails."""
    from neuronmoe.evaluation.cells import check_table, plan_cells
    from neuronmoe.evaluation.suites import load_dataset_pins
    from neuronmoe.evaluation.taskindex import hub_reachable, is_offline_env, offline_mode

    specs = [replace(x, shots=s.num_fewshot) for x in plan.specs] if s.num_fewshot is not None else plan.specs
    cells = plan_cells(specs, tm, load_dataset_pins(), s.dataset_replicas)
    online = bool(not s.dataset_replicas and any(c.dataset for c in cells) and not is_offline_env() and hub_reachable())
    where = (("local replicas in " + s.dataset_replicas) if s.dataset_replicas
             else ("the hub" if online else "the local cache only (hub unreachable)"))
    print(f"{len(cells)} cell(s) of {plan.suite or '--tasks'}" + (f", profile {s.profile}" if s.profile else "") + f"; data from {where}")
    # offline: fail fast from the local cache instead of retrying the hub for every cell
    with contextlib.nullcontext() if online or s.dataset_replicas else offline_mode():
        table, ok = check_table(cells, tm, resolve=online)
    sys.stdout.write(table)
    print("all cells ok" if ok else "some cells FAIL (see notes)")
    return 0 if ok else 1


def complete_runs(paths: list[Path], explicit: bool) -> tuple[list[Path], list[Path]]:
    """(results.json of complete runs, of partial ones). A run of ``neuronmoe evaluate`` is complete when its
    ``manifest.json`` exists, and its results are then checked against the manifest's sha256; a folder without
    one (a killed evaluation's ``results.json`` is rewritten after every cell) is partial, listed, never a row.
    An explicitly given results.json of another tool (no ``cells/`` beside it) is read as it is."""
    from neuronmoe.utils.checks import verify_inputs

    complete, partial = [], []
    for p in paths:
        f = p / "results.json" if p.is_dir() else p
        if (f.parent / "manifest.json").is_file():
            verify_inputs(f.parent, [f])
            complete.append(p)
        elif explicit and not (f.parent / "cells").is_dir():
            complete.append(p)
        else:
            partial.append(f)
    for f in partial:
        log.warning("%s: partial evaluation (no manifest.json: killed or still running); listed, not a row", f.parent)
    if not complete:
        raise MissingInputError(f"no complete evaluation: {', '.join(str(f.parent) for f in partial)} "
                                f"{'is' if len(partial) == 1 else 'are'} partial (no manifest.json); rerun "
                                f"`neuronmoe evaluate` for {'it' if len(partial) == 1 else 'them'} to finish")
    return complete, partial


def report_main(s: ReportSettings) -> int:
    """``neuronmoe report``: Table 1 of the runs (default every ``$OUTPUT_DIR/eval/*/results.json``) as STEM.md + .csv."""
    from neuronmoe.evaluation.report import estimates, report_markdown
    from neuronmoe.evaluation.table import load_run, to_csv
    from neuronmoe.pipeline.gate import report_lines
    from neuronmoe.utils.io import atomic_write_text

    layout = Layout(s.output_dir)
    paths = [Path(p) for p in s.runs] or sorted(layout.eval.glob("*/results.json"))
    if not paths:
        raise MissingInputError(f"no runs given and none under {layout.eval}/*/results.json")
    paths, partial = complete_runs(paths, explicit=bool(s.runs))
    runs = [load_run(p) for p in paths]
    md, table = report_markdown(runs, relative_to=s.relative_to, baselines=tuple(s.baselines), with_paper=s.paper)
    if partial:
        md += "\n".join(["", "Partial evaluations (killed or still running: no manifest.json; not in the table):",
                         *(f"- {p.parent}" for p in partial), ""])
    gate = report_lines(s.output_dir)  # a paper run: which allocations were trained vs the paper's
    md += "\n".join(["", *gate]) if gate else ""
    stem = Path(s.out) if s.out else layout.eval / "table"
    atomic_write_text(stem.with_suffix(".md"), md)
    est = estimates(table, runs)
    atomic_write_text(stem.with_suffix(".csv"), to_csv(table, {k: e.se for k, e in est.items()}))
    sys.stdout.write(md)
    print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.csv')}")
    return 0
