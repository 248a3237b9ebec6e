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
    p.add_argument("--adapter", default=env("PEFT_MODEL_PATH"), help="MoE adapter folder (adapter_config.json); omit for the dense base (env PEFT_MODEL_PATH)")
    add_output_dir_arg(p)
    p.add_argument("--suite", default=env("EVAL_SUITE"), help="suite from neuronmoe/configs/eval_suites.yaml: paper (hub datasets) or local (offline, built from $OUTPUT_DIR/data) (env EVAL_SUITE; default local unless --tasks)")
    p.add_argument("--tasks", default=env("EVAL_TASKS"), help="comma-separated lm-eval task/group names instead of (or with --suite, in addition to) a suite (env EVAL_TASKS)")
    p.add_argument("--languages", default=env("EVAL_LANGUAGES"), help="ISO 639-1 codes for the suite, e.g. en,el (env EVAL_LANGUAGES; default: the suite's list)")
    p.add_argument("--num-fewshot", type=int, default=env("EVAL_NUM_FEWSHOT"), help="override every task's number of shots (env EVAL_NUM_FEWSHOT; default: the suite's per-benchmark shots, else the task's own)")
    p.add_argument("--batch-size", default=env("EVAL_BATCH_SIZE", "8"), help="lm-eval batch size: an int, or auto / auto:N (env EVAL_BATCH_SIZE; default 8)")
    add_device_args(p)
    p.add_argument("--limit", type=float, default=env("EVAL_LIMIT"), help="at most this many documents per task (a fraction if < 1); for smoke tests only (env EVAL_LIMIT)")
    p.add_argument("--run-name", default=env("EVAL_RUN_NAME"), help="run folder under $OUTPUT_DIR/eval/ (env EVAL_RUN_NAME; default <adapter's run>-<suite> or base-<suite>)")
    p.add_argument("--results-dir", default=env("OUTPUT_PATH"), help="write results.json + manifest.json here instead of $OUTPUT_DIR/eval/<run> (env OUTPUT_PATH)")
    p.add_argument("--label", default=env("EVAL_LABEL"), help="model name shown by `neuronmoe report` (env EVAL_LABEL; default the run name)")
    p.add_argument("--seed", type=int, default=env("EVAL_SEED", "1234", command="evaluate"), help="lm-eval seeds (python, numpy, torch, few-shot sampling) (env EVAL_SEED; default 1234)")
    p.add_argument("--local-sizes", default=env("EVAL_LOCAL_SIZES"), help="local suite sizes as key=value,... e.g. cloze_items=40,heldout_docs=8 (env EVAL_LOCAL_SIZES; defaults in eval_suites.yaml)")
    p.add_argument("--include-path", action="append", default=[], help="extra folder of lm-eval task YAMLs (repeatable)")
    p.add_argument("--log-samples", action="store_true", help="keep per-document outputs in results.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder's results")
    p.add_argument("--check", action="store_true", help="resolve the tasks, list the hub datasets they need and whether each is cached, then exit (no model is loaded)")
    p.add_argument("--prefetch", action="store_true", help="with --check: download those datasets into the datasets cache (needs network)")
    p.set_defaults(func=run_evaluate)

    r = sub.add_parser(
        "report",
        help="turn evaluation runs into the paper's Table 1 (Markdown + CSV)",
        description="Collect results.json of several runs into one table: model, #experts, added parameters, "
        "each benchmark for English and the target language(s).",
    )
    r.add_argument("runs", nargs="*", help="run folders or results.json files (default: every $OUTPUT_DIR/eval/*/results.json)")
    add_output_dir_arg(r)
    r.add_argument("--out", default=env("REPORT_PATH"), help="output stem: writes STEM.md and STEM.csv (env REPORT_PATH; default $OUTPUT_DIR/eval/table)")
    r.add_argument("--relative-to", default=None, help="label of the run whose #experts the others are compared with (default: the MoE run with most experts)")
    r.set_defaults(func=run_report)


def _parse_sizes(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"--local-sizes: expected key=value, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = int(v)
        except ValueError:
            raise ValueError(f"--local-sizes: {k.strip()} must be an integer, got {v!r}") from None
    return out


def _default_run_name(args: argparse.Namespace, suite: str | None) -> str:
    what = suite or "tasks"
    if args.adapter:
        a = Path(args.adapter).resolve()
        base = a.parent.name if a.name == "adapter" else a.name
        return f"{base}-{what}"
    return f"base-{what}"


def resolve_specs(args: argparse.Namespace) -> tuple[list, list[str], str | None]:
    """(task specs, extra include paths, suite name) from the flags; builds the local suite if asked."""
    from neuronmoe.evaluation.local_tasks import build_local_tasks
    from neuronmoe.evaluation.suites import get_suite, resolve_suite, specs_from_tasks

    tasks = split_langs(args.tasks)
    suite = args.suite or (None if tasks else "local")
    langs = split_langs(args.languages) or None
    specs = []
    include = list(args.include_path or [])
    if suite:
        s = get_suite(suite)
        specs = resolve_suite(suite, langs)
        if s.get("generated"):
            sizes = dict(s.get("sizes") or {})
            sizes.update(_parse_sizes(args.local_sizes))
            use_langs = sorted({sp.lang for sp in specs if sp.lang}, key=[x.lang for x in specs].index)
            include.append(str(build_local_tasks(args.output_dir, use_langs, sizes)))
    elif args.local_sizes:
        raise ValueError("--local-sizes applies to --suite local only")
    if tasks:
        specs += specs_from_tasks(tasks, args.num_fewshot)
    return specs, include, suite


def run_evaluate(args: argparse.Namespace) -> int:
    from neuronmoe.evaluation.runner import EvalRequest, evaluate
    from neuronmoe.evaluation.taskindex import check_network, check_tasks, datasets_needed, dataset_cached, format_datasets, prefetch, task_manager

    if args.prefetch and not args.check:
        raise ValueError("--prefetch goes with --check")
    if args.limit is not None and args.limit <= 0:
        raise ValueError("--limit must be > 0")
    specs, include, suite = resolve_specs(args)
    tm = task_manager(include)
    names = list(dict.fromkeys(s.task for s in specs))
    check_tasks(names, tm)
    needed = datasets_needed(names, tm)
    if args.check:
        print(f"{len(names)} task(s): {', '.join(names)}")
        if not needed:
            print("no hub dataset needed (runs offline)")
        for d in needed:
            state = "cached" if dataset_cached(d["path"]) else "NOT cached"
            print(f"{state:10s} {format_datasets([d]).strip()}")
        if args.prefetch:
            prefetch(needed)
            print("prefetched.")
        return 0
    check_network(needed)
    run_name = args.run_name or _default_run_name(args, suite)
    req = EvalRequest(
        model=args.model, specs=specs, output_dir=args.output_dir, run_name=run_name, adapter=args.adapter,
        label=args.label, include_paths=include, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
        dtype=args.dtype, device=args.device, limit=args.limit, seed=args.seed, overwrite=args.overwrite,
        log_samples=args.log_samples, run_dir=args.results_dir,
    )
    out = evaluate(req, tm)
    if out is not None:
        print(out)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from neuronmoe.evaluation.table import build_table, load_run, to_csv, to_markdown
    from neuronmoe.utils.io import atomic_write_text

    paths = [Path(p) for p in args.runs] or sorted((Path(args.output_dir) / "eval").glob("*/results.json"))
    if not paths:
        raise FileNotFoundError(f"no runs given and none under {Path(args.output_dir) / 'eval'}/*/results.json")
    table = build_table([load_run(p) for p in paths], relative_to=args.relative_to)
    md = to_markdown(table)
    stem = Path(args.out) if args.out else Path(args.output_dir) / "eval" / "table"
    atomic_write_text(stem.with_suffix(".md"), md)
    atomic_write_text(stem.with_suffix(".csv"), to_csv(table))
    sys.stdout.write(md)
    print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.csv')}")
    return 0
