"""``neuronmoe allocate``: per-layer scores -> ``$OUTPUT_DIR/allocation/<name>.json`` + ``.env``."""
from __future__ import annotations

import argparse
import logging
from typing import Any

from neuronmoe.cli_common import add_output_dir_arg, env, source_lang_default

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from neuronmoe.allocation.core import MODES, ROUNDING_CHOICES

    p = sub.add_parser(
        "allocate",
        help="experts per layer from neuron counts (NeuronMoE), similarity (LayerMoE), a CSV or uniform",
        description="Turn per-layer scores into experts per layer (E counts the frozen original MLP as "
        "expert 0) and write $OUTPUT_DIR/allocation/<name>.json and <name>.env.",
    )
    p.add_argument("--mode", default=env("MODE"), choices=[m for m in MODES if m != "scores-csv"],
                   help="pair: |source U target| per layer (paper eq. 2); multi: |source| + mean |target| "
                   "(published '3lang'); source-only: NeuronMoE-EN ablation; uniform: N experts everywhere; "
                   "similarity: LayerMoE from `neuronmoe similarity` scores (env MODE; default pair)")
    p.add_argument("--source", default=source_lang_default(),
        help="source language (env SOURCE_LANG, else the first of OLD_LANGS; default en)")
    p.add_argument("--targets", default=env("NEW_LANGS", command="allocate"),
                   help="target language(s), comma/space separated; pair mode takes one (env NEW_LANGS; default el)")
    p.add_argument("--e-min", type=int, default=env("E_MIN"), help="fewest experts per layer, >= 1 (env E_MIN; default 1)")
    p.add_argument("--e-max", type=int, default=env("E_MAX"), help="most experts per layer (env E_MAX; default 6)")
    p.add_argument("--rounding", default=env("ROUNDING"), choices=list(ROUNDING_CHOICES),
                   help="floor (truncation, reproduces the published allocations) or round (half up, the paper's "
                   "eq. 4 text) (env ROUNDING; default floor)")
    p.add_argument("--scores-csv", default=env("SCORES_CSV"),
                   help="allocate from a CSV with columns layer,score instead (--model optional) (env SCORES_CSV)")
    p.add_argument("--num-experts", type=int, default=env("NUM_EXPERTS"),
                   help="--mode uniform: experts in every layer (env NUM_EXPERTS; default E_MAX)")
    p.add_argument("--budget", type=float, default=env("BUDGET"),
                   help="--mode similarity: LayerMoE budget B in E_l = ceil((1/S_l)/sum(1/S) * B) "
                   "(env BUDGET; default 2.5 x layers, i.e. 70 for 28 layers)")
    p.add_argument("--model", default=env("BASE_MODEL_PATH"),
                   help="base model (alias, folder, hub id or shipped config such as llama-3.2-3b): checks the "
                   "layer count and counts parameters; default: the model recorded by the neuron stage "
                   "(env BASE_MODEL_PATH)")
    add_output_dir_arg(p)
    p.add_argument("--neurons-dir", default=env("NEURONS_DIR"),
        help="neuron-analysis results (env NEURONS_DIR; default $OUTPUT_DIR/neurons)")
    p.add_argument("--similarity-dir", default=env("SIMILARITY_DIR"),
        help="--mode similarity: results of `neuronmoe similarity` (env SIMILARITY_DIR; default $OUTPUT_DIR/similarity)")
    p.add_argument("--name", default=env("ALLOCATION_NAME"),
                   help="allocation name (env ALLOCATION_NAME; default neuronmoe / neuronmoe-en / neuronmoe-multi / layermoe / uniform-N)")
    p.add_argument("--out", default=env("ALLOCATION_OUT"),
        help="output JSON file (env ALLOCATION_OUT; default $OUTPUT_DIR/allocation/<name>.json)")
    p.add_argument("--reference", default=env("REFERENCE_ALLOCATION"),
                   help="allocation (name or file) to compare parameters with, e.g. layermoe or a shipped one "
                   "such as llama-3.2-3b-el-layermoe (env REFERENCE_ALLOCATION)")
    p.add_argument("--compare-with", default=env("COMPARE_WITH"),
                   help="draw the paper's Figure 1 against this allocation (name or file); also the --reference "
                   "when none is given (env COMPARE_WITH)")
    p.add_argument("--figure", default=env("ALLOCATION_FIGURE"),
                   help="figure path stem (PNG + PDF) (env ALLOCATION_FIGURE; default $OUTPUT_DIR/figures/allocation_<name>_vs_<other>)")
    p.add_argument("--config", default=None, help="YAML file overriding neuronmoe/configs/allocation.yaml")
    p.set_defaults(func=run)


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """YAML defaults < --config < environment / flags."""
    from neuronmoe.cli_common import split_langs
    from neuronmoe.config import layered

    cli = {
        "mode": args.mode, "source": args.source,
        "targets": split_langs(args.targets) if args.targets else None,
        "e_min": args.e_min, "e_max": args.e_max, "rounding": args.rounding,
        "uniform_experts": args.num_experts,
    }
    opts = layered("allocation", args.config, cli)
    if isinstance(opts.get("targets"), str):
        opts["targets"] = split_langs(opts["targets"])
    opts.update(budget=args.budget, scores_csv=args.scores_csv, model=args.model, output_dir=args.output_dir,
                neurons_dir=args.neurons_dir, similarity_dir=args.similarity_dir, name=args.name, out=args.out,
                reference=args.reference, compare_with=args.compare_with, figure=args.figure)
    if args.scores_csv:
        if args.mode not in (None, "scores-csv"):
            raise ValueError(f"--scores-csv: give either --scores-csv or --mode {args.mode}, not both")
        opts["mode"] = "scores-csv"
    return opts


def run(args: argparse.Namespace) -> int:
    from neuronmoe.allocation.runner import run_allocation

    run_allocation(resolve_options(args))
    return 0
