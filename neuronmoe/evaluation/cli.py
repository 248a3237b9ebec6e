"""``neuronmoe evaluate`` and ``neuronmoe report`` (docs/evaluation.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neuronmoe.cli_common import add_device_args, add_model_arg, add_output_dir_arg, env, split_langs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a base model or base + MoE adapter with lm-eval (suites: paper, local)",
        description="Evaluate a dense base or base + NeuronMoE adapter in-process through lm-eval; writes "
        "$OUTPUT_DIR/eval/<run>/results.json (lm-eval JSON) and manifest.json.",
    )
    add_model_arg(p)
    p.add_argument("--adapter", default=env("PEFT_MODEL_PATH"),
        help="MoE adapter folder (adapter_config.json); omit for the dense base (env PEFT_MODEL_PATH)")
    add_output_dir_arg(p)
    p.add_argument("--suite", default=env("EVAL_SUITE"),
        help="suite from neuronmoe/configs/eval_suites.yaml: paper (hub datasets) or local (offline, built from $OUTPUT_DIR/data) (env "
             "EVAL_SUITE; default local unless --tasks)")
    p.add_argument("--tasks", default=env("EVAL_TASKS"),
        help="comma-separated lm-eval task/group names instead of (or with --suite, in addition to) a suite (env EVAL_TASKS)")
    p.add_argument("--languages", default=env("EVAL_LANGUAGES"),
        help="ISO 639-1 codes for the suite, e.g. en,el (env EVAL_LANGUAGES; default: the suite's list)")
    p.add_argument("--num-fewshot", type=int, default=env("EVAL_NUM_FEWSHOT"),
        help="override every task's number of shots (env EVAL_NUM_FEWSHOT; default: the suite's shots per benchmark and language, else "
             "the task's own)")
    p.add_argument("--profile", default=env("EVAL_PROFILE"),
        help="shots profile of the suite: paper (the paper's text, default) or published-script (10-shot HellaSwag, 5-shot Belebele, "
             "4-shot tr/hu MMLU) (env EVAL_PROFILE)")
    p.add_argument("--shots", default=env("EVAL_SHOTS"),
        help="shots per benchmark or cell after the profile, e.g. hellaswag=10,mmlu/tr=5@validation (@split: draw them from that split) "
             "(env EVAL_SHOTS)")
    p.add_argument("--allow-unpinned", action="store_true", default=env("EVAL_ALLOW_UNPINNED", "0") == "1",
        help="let the paper suite load datasets whose revision eval_suites.yaml does not pin (the hub's current main; its commit goes "
             "into the manifest) (env EVAL_ALLOW_UNPINNED=1)")
    p.add_argument("--batch-size", default=env("EVAL_BATCH_SIZE", "8"),
        help="lm-eval batch size: an int, or auto / auto:N (env EVAL_BATCH_SIZE; default 8)")
    add_device_args(p)
    p.add_argument("--limit", type=float, default=env("EVAL_LIMIT"),
        help="at most this many documents per task (a fraction if < 1); for smoke tests only (env EVAL_LIMIT)")
    p.add_argument("--run-name", default=env("EVAL_RUN_NAME"),
        help="run folder under $OUTPUT_DIR/eval/ (env EVAL_RUN_NAME; default <adapter's run>-<suite> or base-<suite>)")
    p.add_argument("--results-dir", default=env("OUTPUT_PATH"),
        help="write results.json + manifest.json here instead of $OUTPUT_DIR/eval/<run> (env OUTPUT_PATH)")
    p.add_argument("--label", default=env("EVAL_LABEL"),
        help="model name shown by `neuronmoe report` (env EVAL_LABEL; default the run name)")
    p.add_argument("--seed", type=int, default=env("EVAL_SEED", "1234", command="evaluate"),
        help="lm-eval seeds (python, numpy, torch, few-shot sampling) (env EVAL_SEED; default 1234)")
    p.add_argument("--local-sizes", default=env("EVAL_LOCAL_SIZES"),
        help="local suite sizes as key=value,... e.g. cloze_items=40,heldout_docs=8 (env EVAL_LOCAL_SIZES; defaults in eval_suites.yaml)")
    p.add_argument("--include-path", action="append", default=[], help="extra folder of lm-eval task YAMLs (repeatable)")
    p.add_argument("--log-samples", action="store_true",
        help="also keep lm-eval's full per-document samples in <run>/samples/ (per-item scores are always kept in <run>/items/)")
    p.add_argument("--overwrite", action="store_true",
        help="replace results in the run folder made with other inputs (cells whose inputs are unchanged are reused either way)")
    p.add_argument("--max-length", type=int, default=None,
        help="lm-eval max_length: prompts longer than this many tokens are cut from the left (default: the model's context; for smoke "
             "tests)")
    p.add_argument("--check", action="store_true",
        help="load every cell's data (network or cache), check fields, few-shot rows, few-shot/test overlap, item counts and revisions, "
             "print one table and exit (no model is loaded; exit 1 if a cell fails)")
    p.add_argument("--dataset-replicas", default=None,
        help="TESTS ONLY: read every hub dataset from the local replicas in this folder (tests/evaluation/replicas.py builds them); "
             "results are marked as replica data")
    p.set_defaults(func=run_evaluate)

    r = sub.add_parser(
        "report",
        help="turn evaluation runs into the paper's Table 1 (Markdown + CSV)",
        description="Collect results.json of several runs into one table: model, #experts, added parameters, "
        "each benchmark for English and the target language(s).",
    )
    r.add_argument("runs", nargs="*", help="run folders or results.json files (default: every $OUTPUT_DIR/eval/*/results.json)")
    add_output_dir_arg(r)
    r.add_argument("--out", default=env("REPORT_PATH"),
        help="output stem: writes STEM.md and STEM.csv (env REPORT_PATH; default $OUTPUT_DIR/eval/table)")
    r.add_argument("--relative-to", default=None,
        help="label of the run whose #experts the others are compared with (default: the MoE run with most experts)")
    r.add_argument("--baselines", default=env("REPORT_BASELINES", "Dense,LayerMoE-S1"),
        help="labels of the runs every other run is tested against, paired on the same items (env REPORT_BASELINES; default "
             "Dense,LayerMoE-S1)")
    r.add_argument("--paper", action="store_true",
        help="also put the paper's Table 1 / 3 / 11 values beside ours, with the difference in standard errors")
    r.set_defaults(func=run_report)


def _parse_sizes(text: str | None) -> dict[str, int]:
    from neuronmoe.evaluation.suites import key_value_pairs

    out: dict[str, int] = {}
    for k, v in key_value_pairs(text, "--local-sizes"):
        try:
            out[k] = int(v)
        except ValueError:
            raise ValueError(f"--local-sizes: {k} must be an integer, got {v!r}") from None
    return out


def _default_run_name(args: argparse.Namespace, suite: str | None) -> str:
    what = suite or "tasks"
    if args.adapter:
        a = Path(args.adapter).resolve()
        base = a.parent.name if a.name == "adapter" else a.name
        return f"{base}-{what}"
    return f"base-{what}"


def resolve_specs(args: argparse.Namespace) -> tuple[list, list[str], str | None]:
    """(task specs, extra include paths, suite name) from the flags; builds the local suite if asked.

    Sets ``args.lm_eval_task_dirs``: the lm-eval task folders the suite lives in (None: index all).
    """
    from neuronmoe.evaluation.local_tasks import build_local_tasks
    from neuronmoe.evaluation.suites import get_suite, resolve_suite, specs_from_tasks

    tasks = split_langs(args.tasks)
    suite = args.suite or (None if tasks else "local")
    langs = split_langs(args.languages) or None
    specs = []
    include = list(args.include_path or [])
    args.lm_eval_task_dirs = None
    if suite:
        s = get_suite(suite)
        if not tasks and s.get("lm_eval_task_dirs") is not None:
            args.lm_eval_task_dirs = list(s["lm_eval_task_dirs"])
        specs = resolve_suite(suite, langs, profile=args.profile, shots=args.shots)
        if s.get("generated"):
            sizes = dict(s.get("sizes") or {})
            sizes.update(_parse_sizes(args.local_sizes))
            use_langs = sorted({sp.lang for sp in specs if sp.lang}, key=[x.lang for x in specs].index)
            include.append(str(build_local_tasks(args.output_dir, use_langs, sizes)))
    else:
        if args.local_sizes:
            raise ValueError("--local-sizes applies to --suite local only")
        if args.profile or args.shots:
            raise ValueError("--profile and --shots apply to a --suite; with --tasks use --num-fewshot")
    if tasks:
        specs += specs_from_tasks(tasks, args.num_fewshot)
    return specs, include, suite


def run_evaluate(args: argparse.Namespace) -> int:
    from neuronmoe.evaluation.runner import EvalRequest, evaluate
    from neuronmoe.evaluation.taskindex import check_tasks, task_manager_for

    if args.limit is not None and args.limit <= 0:
        raise ValueError("--limit must be > 0")
    if args.max_length is not None and args.max_length < 16:
        raise ValueError("--max-length must be at least 16 tokens")
    if args.dataset_replicas and not Path(args.dataset_replicas).is_dir():
        raise FileNotFoundError(f"--dataset-replicas {args.dataset_replicas}: no such folder")
    check_eval_numbers(args)
    if not args.check:  # the model and adapter are checked before resolve_specs writes the local task files
        from neuronmoe.evaluation.runner import check_adapter, read_adapter_config
        from neuronmoe.models import load_config

        base = load_config(args.model)
        if args.adapter:
            check_adapter(read_adapter_config(args.adapter), base, args.adapter)
    specs, include, suite = resolve_specs(args)
    names = list(dict.fromkeys(s.task for s in specs))
    tm = task_manager_for(names, include, args.lm_eval_task_dirs)
    check_tasks(names, tm)
    if args.check:
        return _check(args, specs, tm, suite)
    run_name = args.run_name or _default_run_name(args, suite)
    req = EvalRequest(
        model=args.model, specs=specs, output_dir=args.output_dir, run_name=run_name, adapter=args.adapter,
        label=args.label, include_paths=include, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
        dtype=args.dtype, device=args.device, limit=args.limit, seed=args.seed, overwrite=args.overwrite,
        log_samples=args.log_samples, run_dir=args.results_dir, suite=suite, profile=args.profile,
        require_pins=suite == "paper", allow_unpinned=args.allow_unpinned, replicas=args.dataset_replicas,
        max_length=args.max_length,
    )
    out = evaluate(req, tm)
    if out is not None:
        print(out)
    return 0


def check_eval_numbers(args: argparse.Namespace) -> None:
    """--num-fewshot >= 0; --batch-size an int >= 1, or auto / auto:N."""
    from neuronmoe.utils.checks import check_range

    check_range("--num-fewshot", args.num_fewshot, 0)
    bs = str(args.batch_size)
    if not (bs == "auto" or (bs.startswith("auto:") and bs[5:].isdigit() and int(bs[5:]) >= 1)):
        try:
            check_range("--batch-size", int(bs), 1)
        except ValueError as e:
            if "out of range" in str(e):
                raise
            raise ValueError(f"--batch-size: expected an int >= 1, auto or auto:N, got {bs!r}") from None


def _check(args: argparse.Namespace, specs: list, tm, suite: str | None) -> int:
    """``--check``: build every cell (no model), print the table; 1 if a cell fails."""
    import contextlib
    from dataclasses import replace

    from neuronmoe.evaluation.cells import check_table, plan_cells
    from neuronmoe.evaluation.suites import load_dataset_pins
    from neuronmoe.evaluation.taskindex import hub_reachable, is_offline_env, offline_mode

    if args.num_fewshot is not None:
        specs = [replace(s, shots=args.num_fewshot) for s in specs]
    cells = plan_cells(specs, tm, load_dataset_pins(), args.dataset_replicas)
    online = bool(not args.dataset_replicas and any(c.dataset for c in cells) and not is_offline_env() and hub_reachable())
    where = (("local replicas in " + args.dataset_replicas) if args.dataset_replicas
             else ("the hub" if online else "the local cache only (hub unreachable)"))
    print(f"{len(cells)} cell(s) of {suite or '--tasks'}" + (f", profile {args.profile}" if args.profile else "") + f"; data from {where}")
    # offline: fail fast from the local cache instead of retrying the hub for every cell
    with contextlib.nullcontext() if online or args.dataset_replicas else offline_mode():
        table, ok = check_table(cells, tm, resolve=online)
    sys.stdout.write(table)
    print("all cells ok" if ok else "some cells FAIL (see notes)")
    return 0 if ok else 1


def run_report(args: argparse.Namespace) -> int:
    from neuronmoe.evaluation.report import estimates, report_markdown
    from neuronmoe.evaluation.table import load_run, to_csv
    from neuronmoe.utils.io import atomic_write_text

    paths = [Path(p) for p in args.runs] or sorted((Path(args.output_dir) / "eval").glob("*/results.json"))
    if not paths:
        raise FileNotFoundError(f"no runs given and none under {Path(args.output_dir) / 'eval'}/*/results.json")
    runs = [load_run(p) for p in paths]
    baselines = tuple(b.strip() for b in (args.baselines or "").split(",") if b.strip())
    md, table = report_markdown(runs, relative_to=args.relative_to, baselines=baselines, with_paper=args.paper)
    from neuronmoe.pipeline.gate import report_lines  # a paper run: which allocations were trained vs the paper's

    md += "\n".join(["", *report_lines(args.output_dir)]) if report_lines(args.output_dir) else ""
    stem = Path(args.out) if args.out else Path(args.output_dir) / "eval" / "table"
    atomic_write_text(stem.with_suffix(".md"), md)
    est = estimates(table, runs)
    atomic_write_text(stem.with_suffix(".csv"), to_csv(table, {k: e.se for k, e in est.items()}))
    sys.stdout.write(md)
    print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.csv')}")
    return 0
