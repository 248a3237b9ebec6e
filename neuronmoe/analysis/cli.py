"""``neuronmoe analyze-experts`` (per-expert AP after MoE training) and ``neuronmoe figures``."""
from __future__ import annotations

import argparse

from neuronmoe.cli_common import add_device_args, add_model_arg, add_output_dir_arg, env


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze-experts",
        help="routing-aware per-expert AP of a trained MoE adapter (paper eq. 5-6, Tables 4/10, Figure 3)",
        description="Runs the neuron-analysis samples through base + adapter, pools every expert's units "
        "(gate pre-activation, up, down) over the tokens routed to it per sentence, computes AP per unit "
        "and language, and writes high-AP counts per layer and expert (CSV, Markdown, JSON) and a heatmap.",
    )
    add_output_dir_arg(p)
    add_model_arg(p)
    p.add_argument("--run", default=env("ANALYSIS_RUN", "neuronmoe-s1"),
                   help="training run whose adapter is analysed: $OUTPUT_DIR/train/<run>/adapter (env ANALYSIS_RUN; default neuronmoe-s1)")
    p.add_argument("--adapter", default=env("ANALYSIS_ADAPTER"),
                   help="adapter folder (overrides --run); 'none' analyses the dense base model, every MLP as a single 'base' expert "
                        "(env ANALYSIS_ADAPTER)")
    p.add_argument("--languages", default=env("ANALYSIS_LANGUAGES"),
                   help="languages whose samples are ranked, e.g. 'en,el' (env ANALYSIS_LANGUAGES; default: every "
                        "data/samples/<lang>.jsonl)")
    p.add_argument("--target", default=env("NEW_LANGS", command="analyze-experts"),
                   help="language of the tables and heatmap (env NEW_LANGS, one language; default: the adapter's new language from its "
                        "allocation, else the last language)")
    p.add_argument("--threshold", type=float, default=float(env("ANALYSIS_AP_THRESHOLD", "0.9")),
                   help="high-AP threshold, AP >= this (env ANALYSIS_AP_THRESHOLD; default 0.9 as in the paper)")
    p.add_argument("--no-token", dest="no_token", choices=["exclude", "bottom", "zero"], default=env("ANALYSIS_NO_TOKEN", "exclude"),
                   help="sentences that routed no token to an expert: exclude them from its ranking (default), rank them "
                   "below every other sentence, or score them 0 (env ANALYSIS_NO_TOKEN); see docs/analysis.md")
    p.add_argument("--dense-layers", action=argparse.BooleanOptionalAction, default=env("ANALYSIS_DENSE_LAYERS", "1") == "1",
                   help="also analyse single-expert (dense) layers, the MLP as 'base' (env ANALYSIS_DENSE_LAYERS=1|0; default on)")
    p.add_argument("--batch-size", type=int, default=env("ANALYSIS_BATCH_SIZE", "8"),
        help="sentences per forward pass (env ANALYSIS_BATCH_SIZE; default 8)")
    p.add_argument("--max-length", type=int, default=env("ANALYSIS_MAX_LENGTH", "256"),
        help="truncate sentences to this many tokens (env ANALYSIS_MAX_LENGTH; default 256)")
    p.add_argument("--limit", type=int, default=env("ANALYSIS_LIMIT", "0"),
        help="use at most this many samples per language, 0 = all (env ANALYSIS_LIMIT)")
    p.add_argument("--keep-activations", action="store_true", default=env("ANALYSIS_KEEP_ACTIVATIONS", "0") == "1",
                   help="keep the pooled-activation memmaps under analysis/activations/ (env ANALYSIS_KEEP_ACTIVATIONS=1)")
    p.add_argument("--force", action="store_true", help="recompute even if analysis/manifest.json says the outputs are up to date")
    add_device_args(p)
    p.set_defaults(func=run)

    f = sub.add_parser("figures", help="draw every figure that the stage outputs under --output-dir allow (PNG + PDF)")
    add_output_dir_arg(f)
    f.add_argument("--figures-dir", default=env("FIGURES_DIR"), help="where to write (env FIGURES_DIR; default $OUTPUT_DIR/figures)")
    f.add_argument("--target", default=env("NEW_LANGS", command="figures"),
        help="language of the expert heatmap (env NEW_LANGS, one language; default: the one analysed)")
    f.set_defaults(func=run_figures)


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from neuronmoe.analysis.stage import ExpertAnalysisOptions, run_expert_analysis

    run_expert_analysis(ExpertAnalysisOptions(**{f.name: getattr(args, f.name) for f in fields(ExpertAnalysisOptions)}))
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from neuronmoe.analysis.stage import run_figures as figures

    figures(args.output_dir, args.figures_dir, args.target)
    return 0
