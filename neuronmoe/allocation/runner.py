"""The ``neuronmoe allocate`` stage: per-layer scores -> experts per layer -> ``allocation/<name>.json``.

:func:`compute` validates everything and builds the record without writing (one scoring function
per mode in :data:`SCORERS`); :func:`run_allocation` writes the JSON + ``.env`` and, with
``compare_with``, the paper's Figure 1. Options are the resolved dict of
:func:`neuronmoe.allocation.cli.resolve_options`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DEFAULT_NAMES = {
    "pair": "neuronmoe",
    "multi": "neuronmoe-multi",
    "source-only": "neuronmoe-en",
    "similarity": "layermoe",
}
LABELS = {"pair": "NeuronMoE", "source-only": "NeuronMoE-EN", "multi": "NeuronMoE-multi",
          "similarity": "LayerMoE", "uniform": "Uniform"}
NEURON_MODES = ("pair", "multi", "source-only")


@dataclass
class Scored:
    """What a mode's scorer returns: experts per layer and the record fields it decides."""

    experts: list[int]
    scores: list[float] | None
    e_min: int | None
    e_max: int | None
    rounding: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def run_allocation(opts: dict[str, Any]) -> dict[str, Any]:
    """Compute, write ``<name>.json`` + ``.env``, print the summary and draw Figure 1 when asked."""
    from neuronmoe.allocation.store import write_allocation

    record, out, compare = compute(opts)
    json_path, _ = write_allocation(record, out)
    print(summary_line(json_path, record))
    if compare is not None:
        draw_comparison(opts, record, json_path, compare)
    return record


def compute(opts: dict[str, Any]) -> tuple[dict[str, Any], Path, Any]:
    """Validate everything and build the record; writes nothing. Returns (record, out path, compare-with)."""
    from neuronmoe.allocation.store import build_record

    mode = opts["mode"]
    source, targets = check_languages(opts)
    ctx = Inputs.gather(opts)
    scored = SCORERS[mode](opts, ctx, source, targets)
    name = opts.get("name") or (
        f"uniform-{scored.experts[0]}" if mode == "uniform"
        else f"scores-{Path(opts['scores_csv']).stem}" if mode == "scores-csv"
        else DEFAULT_NAMES[mode]
    )
    reference, compare = references(opts, len(scored.experts))
    record = build_record(
        scored.experts, name=name, mode=mode, source=source, targets=targets, e_min=scored.e_min, e_max=scored.e_max,
        rounding=scored.rounding, scores=scored.scores, model=ctx.model_spec, config=ctx.config, reference=reference,
        extra={"label": LABELS.get(mode, name), **scored.extra},
    )
    out = Path(opts["out"]) if opts.get("out") else Path(opts["output_dir"]) / "allocation" / f"{name}.json"
    return record, out, compare


def check_languages(opts: dict[str, Any]) -> tuple[str, list[str]]:
    from neuronmoe.allocation import core
    from neuronmoe.languages import get_language

    core.check_bounds(opts["e_min"], opts["e_max"])
    source, targets = opts["source"], list(opts["targets"] or [])
    get_language(source, "--source")
    for t in targets:
        get_language(t, "--targets")
    if source in targets:
        raise ValueError(f"--targets: the source language {source!r} cannot also be a target")
    return source, targets


@dataclass
class Inputs:
    """The model (spec, config, layer count) and the folders a mode reads."""

    neurons_dir: Path
    sim_dir: Path
    model_spec: str | None = None
    config: Any = None
    n_layers: int | None = None
    neuron_manifest: dict[str, Any] | None = None

    @classmethod
    def gather(cls, opts: dict[str, Any]) -> "Inputs":
        """The model comes from --model, else from the manifest of the stage the mode reads."""
        from neuronmoe.allocation import inputs

        out_root = Path(opts["output_dir"])
        ctx = cls(neurons_dir=Path(opts["neurons_dir"]) if opts.get("neurons_dir") else out_root / "neurons",
                  sim_dir=Path(opts["similarity_dir"]) if opts.get("similarity_dir") else out_root / "similarity",
                  model_spec=opts.get("model"))
        if opts["mode"] in NEURON_MODES:
            ctx.neuron_manifest = inputs.read_neuron_manifest(ctx.neurons_dir)
            ctx.model_spec = ctx.model_spec or (ctx.neuron_manifest.get("config") or {}).get("model")
        elif opts["mode"] == "similarity":
            from neuronmoe.utils.manifest import load_manifest

            ctx.model_spec = ctx.model_spec or (load_manifest(ctx.sim_dir).get("config") or {}).get("model")
        if ctx.model_spec:
            from neuronmoe.models import load_config, num_layers

            ctx.config = load_config(ctx.model_spec)
            ctx.n_layers = num_layers(ctx.config)
        return ctx


def score_neurons(opts: dict[str, Any], ctx: Inputs, source: str, targets: list[str]) -> Scored:
    """pair (paper eq. 2), multi (published '3lang') and source-only (NeuronMoE-EN) from neuron results."""
    from neuronmoe.allocation import core, inputs

    mode, nd = opts["mode"], ctx.neurons_dir
    n_neurons = inputs.neurons_num_layers(nd, ctx.neuron_manifest)
    if ctx.n_layers is not None and n_neurons is not None and n_neurons != ctx.n_layers:
        raise ValueError(f"{nd}: neuron results cover {n_neurons} layers, but --model {ctx.model_spec} has {ctx.n_layers}")
    n_layers = ctx.n_layers or n_neurons
    if n_layers is None:
        raise ValueError(f"{nd}: manifest records no num_layers; give --model")
    if mode == "pair" and len(targets) != 1:
        raise ValueError(f"--targets: pair mode (paper eq. 2) takes exactly one target language, got "
                         f"{', '.join(targets) or 'none'}; use --mode multi for several")
    if mode == "multi" and not targets:
        raise ValueError("--targets: multi mode needs at least one target language")
    src = inputs.read_selected(nd, source, "source language", ctx.neuron_manifest)
    tgt = {} if mode == "source-only" else {t: inputs.read_selected(nd, t, "target language", ctx.neuron_manifest)
                                            for t in targets}
    if mode == "pair":
        scores = core.pair_scores(src, tgt[targets[0]], n_layers)
    elif mode == "multi":
        scores = core.multi_scores(src, tgt, n_layers)
    else:
        scores = core.source_only_scores(src, n_layers)
    experts = core.allocate(scores, opts["e_min"], opts["e_max"], opts["rounding"])
    return Scored(experts, scores, opts["e_min"], opts["e_max"], opts["rounding"], {"inputs": {"neurons_dir": str(nd)}})


def score_csv(opts: dict[str, Any], ctx: Inputs, source: str, targets: list[str]) -> Scored:
    from neuronmoe.allocation import core, inputs

    scores = inputs.read_scores_csv(opts["scores_csv"], ctx.n_layers)
    experts = core.allocate(scores, opts["e_min"], opts["e_max"], opts["rounding"])
    return Scored(experts, scores, opts["e_min"], opts["e_max"], opts["rounding"],
                  {"inputs": {"scores_csv": str(opts["scores_csv"])}})


def score_similarity(opts: dict[str, Any], ctx: Inputs, source: str, targets: list[str]) -> Scored:
    """LayerMoE from the scores of ``neuronmoe similarity``: E_l = ceil((1/S_l)/sum(1/S) * B)."""
    from neuronmoe.allocation import core, inputs

    scores = inputs.read_scores_csv(ctx.sim_dir / "scores.csv", ctx.n_layers, flag="similarity scores")
    budget = opts["budget"] if opts.get("budget") is not None else round(float(opts["budget_per_layer"]) * len(scores))
    return Scored(core.layermoe_allocate(scores, budget), scores, 1, None, "ceil",
                  {"budget": budget, "inputs": {"similarity_dir": str(ctx.sim_dir)}})


def score_uniform(opts: dict[str, Any], ctx: Inputs, source: str, targets: list[str]) -> Scored:
    from neuronmoe.allocation import core

    if ctx.n_layers is None:
        raise ValueError("--mode uniform: needs --model (the layer count comes from the model)")
    k = opts["uniform_experts"] if opts["uniform_experts"] is not None else opts["e_max"]
    return Scored(core.uniform_allocation(ctx.n_layers, k), None, k, k, None)


#: mode -> scorer
SCORERS: dict[str, Callable[[dict[str, Any], Inputs, str, list[str]], Scored]] = {
    "pair": score_neurons, "multi": score_neurons, "source-only": score_neurons,
    "scores-csv": score_csv, "similarity": score_similarity, "uniform": score_uniform,
}


def references(opts: dict[str, Any], n_layers: int) -> tuple[Any, Any]:
    """(the allocation parameters are compared with, the allocation Figure 1 is drawn against)."""
    from neuronmoe.allocation.store import load_allocation

    out_root = Path(opts["output_dir"])
    ref_spec = opts.get("reference") or opts.get("compare_with")
    reference = load_allocation(ref_spec, output_dir=out_root, flag="--reference") if ref_spec else None
    cw = opts.get("compare_with")
    compare = (reference if cw and cw == ref_spec
               else load_allocation(cw, output_dir=out_root, flag="--compare-with") if cw else None)
    if compare is not None and compare.num_layers != n_layers:
        raise ValueError(f"--compare-with {cw}: {compare.num_layers} layers, allocation has {n_layers}")
    return reference, compare


def summary_line(json_path: Path, record: dict[str, Any]) -> str:
    ref = record.get("reference") or {}
    msg = f"{json_path}: {record['total_experts']} experts ({record['new_experts']} new) {record['experts_per_layer']}"
    if ref:
        msg += f"; vs {ref['name']} ({ref['total_experts']}): {ref['experts_change'] * 100:+.1f}% experts"
        if "moe_ffn_params_change" in ref:
            msg += (f", {ref['moe_ffn_params_change'] * 100:+.1f}% MoE-FFN params, "
                    f"{ref['added_params_change'] * 100:+.1f}% added params")
    return msg


def draw_comparison(opts: dict[str, Any], record: dict[str, Any], json_path: Path, compare: Any) -> None:
    """The paper's Figure 1: this allocation against ``compare`` (PNG + PDF)."""
    from neuronmoe.allocation.figure import plot_allocation_comparison
    from neuronmoe.allocation.store import Allocation

    ref = record.get("reference") or {}
    stem = (Path(opts["figure"]) if opts.get("figure")
            else Path(opts["output_dir"]) / "figures" / f"allocation_{record['name']}_vs_{compare.name}")
    alloc = Allocation(experts_per_layer=record["experts_per_layer"], name=record["name"], path=json_path, data=record)
    pchange = ref.get("moe_ffn_params_change") if ref.get("name") == compare.name else None
    paths = plot_allocation_comparison(alloc, compare, stem, params_change=pchange, score_label=score_label(record))
    print("figure: " + ", ".join(str(p) for p in paths))


def score_label(record: dict[str, Any]) -> str:
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
