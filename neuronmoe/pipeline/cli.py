"""``neuronmoe pipeline`` and ``neuronmoe reproduce-paper``: argparse and environment defaults only."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from neuronmoe.budget import hook
from neuronmoe.cli_common import add_model_arg, add_output_dir_arg, env, source_lang_default, split_langs

DEFAULT_NEG_LANGS = "tr,hu,de,es,fr,ja,zh"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run the miniature reproduction end to end (skips complete stages)",
                       description="Runs every stage as its own `python -m neuronmoe <stage>` process, in order, and writes "
                       "$OUTPUT_DIR/report.md; a rerun skips complete stages (see docs/pipeline.md).")
    add_output_dir_arg(p)
    add_model_arg(p)
    p.add_argument("--source", default=source_lang_default() or "en",
                   help="old (source) language (env SOURCE_LANG, else the first of OLD_LANGS; default en)")
    p.add_argument("--target", default=env("NEW_LANGS", "el", command="pipeline"),
                   help="new (target) language, one (env NEW_LANGS; default el)")
    p.add_argument("--old-langs", default=env("OLD_LANGS"),
                   help="old languages kept: replay data, stage-2 replay, LayerMoE's old group (env OLD_LANGS; default: the source)")
    p.add_argument("--neg-langs", default=env("NEG_LANGS"),
                   help="extra neuron-analysis languages (negatives), comma separated, or 'none' (env NEG_LANGS, else "
                   f"LANGUAGES minus the new and old ones; default {DEFAULT_NEG_LANGS})")
    p.add_argument("--num-sentences", type=int, default=env("NUM_SENTENCES", "200"),
                   help="neuron-analysis sentences per language (env NUM_SENTENCES; default 200 for the 30-minute budget)")
    p.add_argument("--profile", default=env("TRAIN_PROFILE", "auto"), choices=["auto", "paper", "cpu"],
                   help="training profile: auto = cpu profile without a GPU (env TRAIN_PROFILE)")
    p.add_argument("--eval-suite", default=env("EVAL_SUITE", "local"), help="evaluation suite (env EVAL_SUITE; default local, offline)")
    p.add_argument("--analysis-limit", type=int, default=env("ANALYSIS_LIMIT", "0"),
                   help="samples per language for the expert analysis, 0 = all (env ANALYSIS_LIMIT)")
    add_stability_args(p)
    p.add_argument("--only", default=env("PIPELINE_ONLY"), help="run only these stages, comma separated (env PIPELINE_ONLY)")
    p.add_argument("--rerun", default=env("PIPELINE_RERUN"),
                   help="run these stages even if complete, comma separated; their dependants follow (env PIPELINE_RERUN). "
                   "Needed after changing a setting given through a stage's environment variable, which the fingerprints do not see")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the stages that would run, run nothing")
    p.add_argument("--report-only", action="store_true", help="only (re)write $OUTPUT_DIR/report.md from the outputs present")
    p.set_defaults(func=run_cli, report_env=False)  # the pipeline reports the environment itself (its stages read it)

    r = sub.add_parser("reproduce-paper",
        help="the paper-scale run (Llama-3.2-3B, el/tr/hu, DeepSpeed ZeRO-2): --dry-run validates and prints it")
    r.add_argument("--output-dir", default=env("OUTPUT_DIR", "outputs/paper"), help="output root (env OUTPUT_DIR; default outputs/paper)")
    r.add_argument("--experiment", default=env("PAPER_EXPERIMENT"),
                   help="plan one named experiment of the paper (--list names them), outputs under $OUTPUT_DIR/<name>/ "
                   "(env PAPER_EXPERIMENT; default: the el/tr/hu plan)")
    r.add_argument("--list", action="store_true", help="list the named experiments (model, languages, runs, tables, figures) and exit")
    r.add_argument("--report", action="store_true",
                   help="with --experiment: write $OUTPUT_DIR/<name>/report.md from the outputs present, and exit")
    r.add_argument("--model-config", default=env("PAPER_MODEL_CONFIG"),
                   help="shipped model config used for the checks and parameter budgets (env PAPER_MODEL_CONFIG; "
                   "default llama-3.2-3b, or the experiment's)")
    r.add_argument("--model", default=env("BASE_MODEL_PATH", command="reproduce-paper"),
                   help="the model the commands train (hub id or local folder) (env BASE_MODEL_PATH; default "
                   "meta-llama/Llama-3.2-3B, or the experiment's)")
    r.add_argument("--allocations", default=env("PAPER_ALLOCATIONS", "computed"), choices=["computed", "published"],
                   help="computed: run the method (neuron analysis -> allocation); published: train the paper's own "
                   "allocations (Tables 2, 8, 9) (env PAPER_ALLOCATIONS; default computed)")
    r.add_argument("--print-commands", action="store_true", help="print only the commands, one per line (for scripts)")
    r.add_argument("--targets", default=env("NEW_LANGS", command="reproduce-paper"),
                   help="new languages (env NEW_LANGS; default el,tr,hu, or the experiment's)")
    r.add_argument("--nproc", type=int, default=env("NPROC", "8", command="reproduce-paper"),
                   help="GPUs per node for torchrun (env NPROC; default 8)")
    r.add_argument("--deepspeed", default=env("DEEPSPEED_CONFIG", "zero2"),
        help="DeepSpeed config for training (env DEEPSPEED_CONFIG; default zero2)")
    r.add_argument("--dry-run", action="store_true",
        help="validate every config and print the exact commands; needs no GPU, weights or data")
    r.add_argument("--json", action="store_true", help="print the dry-run facts as JSON")
    hook.add_arguments(r)  # --gpu, --gpu-memory, --mfu, --check, --accept-allocation-diff (issue 22)
    r.set_defaults(func=run_reproduce, report_env=False)  # reported with the variables its commands read


def add_stability_args(p: argparse.ArgumentParser) -> None:
    """How much to trust the NeuronMoE allocation (docs/allocation.md, "Stability")."""
    p.add_argument("--bootstrap", type=int, default=100,
                   help="replicates of the NeuronMoE allocation's stability analysis (allocate --bootstrap; 0 = none; "
                   "default 100)")
    p.add_argument("--sample-sizes", default="50,100",
                   help="sentences per language of its sample-size curve (allocate --sample-sizes; 'none' = none; "
                   "default 50,100)")


def config_from_args(args: argparse.Namespace):
    from neuronmoe.pipeline.plan import PipelineConfig

    targets = split_langs(args.target)
    if len(targets) != 1:
        raise ValueError(f"--target {args.target!r} (env NEW_LANGS): the miniature pipeline extends the model to one "
                         f"language; run it once per language with its own OUTPUT_DIR")
    old = split_langs(args.old_langs) or None
    neg = args.neg_langs if str(args.neg_langs or "").strip() else None  # "" = unset, as NEG_LANGS=''; 'none' = no
    if neg is None and env("LANGUAGES"):
        neg = ",".join(x for x in split_langs(env("LANGUAGES")) if x not in targets and x not in [args.source, *(old or [])])
    neg = DEFAULT_NEG_LANGS if neg is None else neg
    neg_langs = [] if str(neg).strip().lower() == "none" else split_langs(neg)
    sizes = [] if str(args.sample_sizes).strip().lower() in ("", "none") else [int(x) for x in split_langs(args.sample_sizes)]
    return PipelineConfig(output_dir=args.output_dir, model=args.model, source=args.source, target=targets[0],
                          old_langs=old, neg_langs=neg_langs, num_sentences=args.num_sentences, profile=args.profile,
                          eval_suite=args.eval_suite, analysis_limit=args.analysis_limit, bootstrap=args.bootstrap,
                          sample_sizes=sizes)


def run_cli(args: argparse.Namespace) -> int:
    from neuronmoe.envvars import SCRIPT, report
    from neuronmoe.pipeline.plan import plan
    from neuronmoe.pipeline.report import write_report
    from neuronmoe.pipeline.run import honoured_variables, preflight, run_pipeline

    cfg = config_from_args(args)
    preflight(cfg)  # every argument checked before anything runs
    stages = plan(cfg)
    report("pipeline", script=os.environ.get(SCRIPT) or None, honoured=honoured_variables(stages))
    print(f"[pipeline] model {cfg.model}; new language {cfg.target}; old {','.join(cfg.old)} (source {cfg.source}); "
          f"neuron-analysis languages {','.join(cfg.languages)}; profile {cfg.profile}; output {cfg.output_dir}", flush=True)
    if args.report_only:
        tp = Path(cfg.output_dir) / "pipeline" / "timings.json"
        print(write_report(cfg, json.loads(tp.read_text()) if tp.exists() else None))
        return 0
    run_pipeline(cfg, dry_run=args.dry_run, only=split_langs(args.only) or None, rerun=split_langs(args.rerun) or None)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from neuronmoe.envvars import REPORTED, SCRIPT, report
    from neuronmoe.pipeline import experiments as ex
    from neuronmoe.pipeline.paper_check import check_table, format_table, honoured_variables
    from neuronmoe.utils.checks import check_range

    check_range("--nproc", args.nproc, 1)
    if args.list:
        print("\n".join(ex.list_lines()))
        return 0
    if args.report and not args.experiment:
        raise ValueError("--report: give --experiment NAME (the el/tr/hu plan's report is `neuronmoe report`)")
    if args.report:
        print(ex.write_report(ex.get_experiment(args.experiment), args.output_dir))
        return 0
    facts = ex.reproduce_facts(args.experiment, split_langs(args.targets) or None, args.model_config, args.model,
                               args.output_dir, args.deepspeed, args.nproc, args.allocations,
                               accept_allocation_diff=args.accept_allocation_diff)
    hook.attach(facts, args)  # tokens, FLOPs, GPU-hours, memory per device, disk (and access with --check)
    targets, model_config, model = facts["targets"], facts["model_config"], facts["model"]
    if os.environ.get(REPORTED) != "1":  # variables set but read neither here nor by any command of the plan
        report("reproduce-paper", script=os.environ.get(SCRIPT) or None, honoured=honoured_variables(facts["commands"]))
    if args.print_commands:
        check_table(facts["settings"])  # never hand a plan that differs from the paper to the runner
        hook.final_checks(facts, args, strict_disk=True)  # ... nor one that does not fit a device or the disk
        print("\n".join(facts["commands"]))
        return 0
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
    else:
        if args.experiment:
            e = facts["experiment"]
            print(f"# experiment {e['name']}: {e['title']}")
            for k, v in {**e["tables"], **e["figures"]}.items():
                print(f"#   {k}: {v}")
        print(f"# the plan against the paper ({args.nproc} processes; neuronmoe/configs/paper_protocol.yaml, docs/training.md):")
        print(format_table(facts["settings"]))
        print("\n".join(hook.lines(facts)))
        print(f"# paper-scale plan for {model_config} ({facts['dims']['num_layers']} layers): model {model}, "
              f"targets {','.join(targets)}, {args.nproc} processes per node")
        for c in facts["checks"]:
            print(f"# ok: {c}")
        print_allocations(facts)
        for c in facts["commands"]:
            print(c)
    check_table(facts["settings"])  # an undocumented difference from the paper: exit 2 after the table
    hook.final_checks(facts, args)  # a run that does not fit its device (with --check: access, disk): exit 2
    if not args.dry_run:
        print("# validated; run these commands on the GPU cluster (scripts/reproduce_paper.sh runs them in order)", file=sys.stderr)
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
