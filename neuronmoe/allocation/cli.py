"""``neuronmoe allocate``: per-layer scores -> ``$OUTPUT_DIR/allocation/<name>.json`` + ``.env``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from neuronmoe.cli_common import add_output_dir_arg, env

log = logging.getLogger(__name__)

DEFAULT_NAMES = {
    "pair": "neuronmoe",
    "multi": "neuronmoe-multi",
    "source-only": "neuronmoe-en",
    "similarity": "layermoe",
}


def _int_or_none(v: str | None) -> int | None:
    return None if v in (None, "") else int(v)


def _float_or_none(v: str | None) -> float | None:
    return None if v in (None, "") else float(v)


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
    p.add_argument("--source", default=env("SOURCE_LANG"), help="source language (env SOURCE_LANG; default en)")
    p.add_argument("--targets", default=env("TARGET_LANGS"),
                   help="target language(s), comma/space separated; pair mode takes one (env TARGET_LANGS; default el)")
    p.add_argument("--e-min", type=int, default=_int_or_none(env("E_MIN")), help="fewest experts per layer, >= 1 (env E_MIN; default 1)")
    p.add_argument("--e-max", type=int, default=_int_or_none(env("E_MAX")), help="most experts per layer (env E_MAX; default 6)")
    p.add_argument("--rounding", default=env("ROUNDING"), choices=list(ROUNDING_CHOICES),
                   help="floor (truncation, reproduces the published allocations) or round (half up, the paper's "
                   "eq. 4 text) (env ROUNDING; default floor)")
    p.add_argument("--scores-csv", default=env("SCORES_CSV"),
                   help="allocate from a CSV with columns layer,score instead (--model optional) (env SCORES_CSV)")
    p.add_argument("--num-experts", type=int, default=_int_or_none(env("NUM_EXPERTS")),
                   help="--mode uniform: experts in every layer (env NUM_EXPERTS; default E_MAX)")
    p.add_argument("--budget", type=float, default=_float_or_none(env("BUDGET")),
                   help="--mode similarity: LayerMoE budget B in E_l = ceil((1/S_l)/sum(1/S) * B) "
                   "(env BUDGET; default 2.5 x layers, i.e. 70 for 28 layers)")
    p.add_argument("--model", default=env("BASE_MODEL_PATH"),
                   help="base model (alias, folder, hub id or shipped config such as llama-3.2-3b): checks the "
                   "layer count and counts parameters; default: the model recorded by the neuron stage "
                   "(env BASE_MODEL_PATH)")
    add_output_dir_arg(p)
    p.add_argument("--neurons-dir", default=env("NEURONS_DIR"), help="neuron-analysis results (env NEURONS_DIR; default $OUTPUT_DIR/neurons)")
    p.add_argument("--similarity-dir", default=env("SIMILARITY_DIR"), help="--mode similarity: results of `neuronmoe similarity` (env SIMILARITY_DIR; default $OUTPUT_DIR/similarity)")
    p.add_argument("--name", default=env("ALLOCATION_NAME"),
                   help="allocation name (env ALLOCATION_NAME; default neuronmoe / neuronmoe-en / neuronmoe-multi / layermoe / uniform-N)")
    p.add_argument("--out", default=env("ALLOCATION_OUT"), help="output JSON file (env ALLOCATION_OUT; default $OUTPUT_DIR/allocation/<name>.json)")
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
    from neuronmoe.config import check_keys, load_yaml, merge

    base = load_yaml("allocation")
    user = load_yaml(args.config) if args.config else None
    if user:
        check_keys(user, set(base), args.config)
    cli = {
        "mode": args.mode, "source": args.source,
        "targets": split_langs(args.targets) if args.targets else None,
        "e_min": args.e_min, "e_max": args.e_max, "rounding": args.rounding,
        "uniform_experts": args.num_experts,
    }
    opts = merge(base, user, cli)
    if isinstance(opts.get("targets"), str):
        opts["targets"] = split_langs(opts["targets"])
    opts["budget"] = args.budget
    if args.scores_csv:
        if args.mode not in (None, "scores-csv"):
            raise ValueError(f"--scores-csv: give either --scores-csv or --mode {args.mode}, not both")
        opts["mode"] = "scores-csv"
    return opts


def compute(args: argparse.Namespace) -> tuple[dict[str, Any], Path, Any]:
    """Validate everything and build the record; writes nothing. Returns (record, out path, compare-with)."""
    from neuronmoe.allocation import core, inputs
    from neuronmoe.allocation.store import build_record, load_allocation
    from neuronmoe.languages import get_language

    opts = resolve_options(args)
    mode = opts["mode"]
    e_min, e_max, rounding = opts["e_min"], opts["e_max"], opts["rounding"]
    core.check_bounds(e_min, e_max)
    source, targets = opts["source"], list(opts["targets"] or [])
    get_language(source, "--source")
    for t in targets:
        get_language(t, "--targets")
    if source in targets:
        raise ValueError(f"--targets: the source language {source!r} cannot also be a target")
    out_root = Path(args.output_dir)
    neurons_dir = Path(args.neurons_dir) if args.neurons_dir else out_root / "neurons"
    sim_dir = Path(args.similarity_dir) if args.similarity_dir else out_root / "similarity"

    # which model, how many layers
    model_spec = args.model
    nman = None
    if mode in ("pair", "multi", "source-only"):
        nman = inputs.read_neuron_manifest(neurons_dir)
        model_spec = model_spec or (nman.get("config") or {}).get("model")
    elif mode == "similarity":
        from neuronmoe.utils.manifest import load_manifest

        sman = load_manifest(sim_dir)
        model_spec = model_spec or (sman.get("config") or {}).get("model")
    config = None
    if model_spec:
        from neuronmoe.models import load_config, num_layers

        config = load_config(model_spec)
        n_layers: int | None = num_layers(config)
    else:
        n_layers = None

    extra: dict[str, Any] = {}
    scores: list[float] | None
    if mode in ("pair", "multi", "source-only"):
        n_neurons = inputs.neurons_num_layers(neurons_dir, nman)
        if n_layers is not None and n_neurons is not None and n_neurons != n_layers:
            raise ValueError(
                f"{neurons_dir}: neuron results cover {n_neurons} layers, but --model {model_spec} has {n_layers}"
            )
        n_layers = n_layers or n_neurons
        if n_layers is None:
            raise ValueError(f"{neurons_dir}: manifest records no num_layers; give --model")
        if mode == "pair" and len(targets) != 1:
            raise ValueError(
                f"--targets: pair mode (paper eq. 2) takes exactly one target language, got "
                f"{', '.join(targets) or 'none'}; use --mode multi for several"
            )
        if mode == "multi" and not targets:
            raise ValueError("--targets: multi mode needs at least one target language")
        src_units = inputs.read_selected(neurons_dir, source, "source language", nman)
        tgt_units = {} if mode == "source-only" else {
            t: inputs.read_selected(neurons_dir, t, "target language", nman) for t in targets}
        if mode == "pair":
            scores = core.pair_scores(src_units, tgt_units[targets[0]], n_layers)
        elif mode == "multi":
            scores = core.multi_scores(src_units, tgt_units, n_layers)
        else:
            scores = core.source_only_scores(src_units, n_layers)
        experts = core.allocate(scores, e_min, e_max, rounding)
        extra["inputs"] = {"neurons_dir": str(neurons_dir)}
    elif mode == "scores-csv":
        scores = inputs.read_scores_csv(args.scores_csv, n_layers)
        n_layers = len(scores)
        experts = core.allocate(scores, e_min, e_max, rounding)
        extra["inputs"] = {"scores_csv": str(args.scores_csv)}
    elif mode == "similarity":
        scores = inputs.read_scores_csv(sim_dir / "scores.csv", n_layers, flag="similarity scores")
        n_layers = len(scores)
        budget = args.budget if args.budget is not None else round(float(opts["budget_per_layer"]) * n_layers)
        experts = core.layermoe_allocate(scores, budget)
        e_min, e_max, rounding = 1, None, "ceil"
        extra["budget"] = budget
        extra["inputs"] = {"similarity_dir": str(sim_dir)}
    elif mode == "uniform":
        if n_layers is None:
            raise ValueError("--mode uniform: needs --model (the layer count comes from the model)")
        k = opts["uniform_experts"] if opts["uniform_experts"] is not None else e_max
        experts = core.uniform_allocation(n_layers, k)
        scores, rounding = None, None
        e_min = e_max = k
    else:  # pragma: no cover - argparse choices
        raise ValueError(f"--mode: unknown mode {mode!r}")

    name = args.name or (
        f"uniform-{experts[0]}" if mode == "uniform"
        else f"scores-{Path(args.scores_csv).stem}" if mode == "scores-csv"
        else DEFAULT_NAMES[mode]
    )
    ref_spec = args.reference or args.compare_with
    reference = load_allocation(ref_spec, output_dir=out_root, flag="--reference") if ref_spec else None
    compare = (
        reference if args.compare_with and args.compare_with == ref_spec
        else load_allocation(args.compare_with, output_dir=out_root, flag="--compare-with") if args.compare_with
        else None
    )
    if compare is not None and compare.num_layers != len(experts):
        raise ValueError(f"--compare-with {args.compare_with}: {compare.num_layers} layers, allocation has {len(experts)}")
    label = {"pair": "NeuronMoE", "source-only": "NeuronMoE-EN", "multi": "NeuronMoE-multi",
             "similarity": "LayerMoE", "uniform": "Uniform"}.get(mode, name)
    extra = {"label": label, **extra}
    record = build_record(
        experts, name=name, mode=mode, source=source, targets=targets, e_min=e_min, e_max=e_max,
        rounding=rounding, scores=scores, model=model_spec, config=config, reference=reference, extra=extra,
    )
    out = Path(args.out) if args.out else out_root / "allocation" / f"{name}.json"
    return record, out, compare


def run(args: argparse.Namespace) -> int:
    from neuronmoe.allocation.store import Allocation, write_allocation

    record, out, compare = compute(args)
    json_path, env_path = write_allocation(record, out)
    ref = record.get("reference") or {}
    msg = f"{json_path}: {record['total_experts']} experts ({record['new_experts']} new) {record['experts_per_layer']}"
    if ref:
        msg += f"; vs {ref['name']} ({ref['total_experts']}): {ref['experts_change'] * 100:+.1f}% experts"
        if "moe_ffn_params_change" in ref:
            msg += f", {ref['moe_ffn_params_change'] * 100:+.1f}% MoE-FFN params, {ref['added_params_change'] * 100:+.1f}% added params"
    print(msg)
    if compare is not None:
        from neuronmoe.allocation.figure import plot_allocation_comparison

        stem = Path(args.figure) if args.figure else Path(args.output_dir) / "figures" / f"allocation_{record['name']}_vs_{compare.name}"
        alloc = Allocation(experts_per_layer=record["experts_per_layer"], name=record["name"], path=json_path, data=record)
        pchange = ref.get("moe_ffn_params_change") if ref.get("name") == compare.name else None
        paths = plot_allocation_comparison(alloc, compare, stem, params_change=pchange,
                                           score_label=_score_label(record))
        print("figure: " + ", ".join(str(p) for p in paths))
    return 0


def _score_label(record: dict[str, Any]) -> str:
    mode = record.get("mode")
    if mode == "pair":
        return f"unique language-specific units ({record['source']}+{'+'.join(record['targets'])})"
    if mode == "source-only":
        return f"language-specific units ({record['source']})"
    if mode == "multi":
        return "|source| + mean |target| units"
    if mode == "similarity":
        return "cross-lingual similarity"
    return "layer score"
