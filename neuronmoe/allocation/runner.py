"""The ``neuronmoe allocate`` stage: per-layer scores -> experts per layer -> ``allocation/<name>.json``.

:func:`compute` validates everything and builds the record without writing (one scoring function
per mode in :data:`SCORERS`); :func:`run_allocation` writes the JSON + ``.env``, with ``--bootstrap`` (and
``--sample-sizes``, ``--sensitivity``) the stability file beside it (:mod:`neuronmoe.allocation.stability`)
and, with ``compare_with``, the paper's Figure 1. Settings: :class:`~neuronmoe.allocation.settings.AllocateSettings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from neuronmoe.allocation.settings import NEURON_MODES
from neuronmoe.errors import ConfigError, InputError

if TYPE_CHECKING:
    from neuronmoe.allocation.settings import AllocateSettings

DEFAULT_NAMES = {
    "pair": "neuronmoe",
    "multi": "neuronmoe-multi",
    "source-only": "neuronmoe-en",
    "similarity": "layermoe",
}
LABELS = {"pair": "NeuronMoE", "source-only": "NeuronMoE-EN", "multi": "NeuronMoE-multi",
          "similarity": "LayerMoE", "uniform": "Uniform"}


@dataclass
class Scored:
    """What a mode's scorer returns: experts per layer and the record fields it decides."""

    experts: list[int]
    scores: list[float] | None
    e_min: int | None
    e_max: int | None
    rounding: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def main(settings: AllocateSettings) -> int:
    """``neuronmoe allocate``."""
    run_allocation(settings)
    return 0


def run_allocation(s: AllocateSettings) -> dict[str, Any]:
    """Compute, write ``<name>.json`` + ``.env`` (and the stability file when asked), print the summary and draw
    Figure 1 when asked."""
    from neuronmoe.allocation.store import write_allocation

    record, out, compare, ctx = compute(s)
    stability = stored = None
    if s.stability_requested:
        from neuronmoe.allocation.stability import check_stability_inputs

        stored = check_stability_inputs(s, record, ctx.neurons_dir)  # before anything is written
    json_path, _ = write_allocation(record, out)
    print(summary_line(json_path, record))
    if stored is not None:
        from neuronmoe.allocation.stability import run_stability

        stability = run_stability(s, stored, json_path)
    if compare is not None:
        draw_comparison(s, record, json_path, compare, stability)
    return record


def compute(s: AllocateSettings) -> tuple[dict[str, Any], Path, Any, Inputs]:
    """Validate everything and build the record; writes nothing. Returns (record, out path, compare-with, inputs)."""
    from neuronmoe.allocation.store import RecordFields, make_record
    from neuronmoe.layout import Layout

    ctx = Inputs.gather(s)
    scored = SCORERS[s.mode](s, ctx)
    name = s.name or (
        f"uniform-{scored.experts[0]}" if s.mode == "uniform"
        else f"scores-{Path(str(s.scores_csv)).stem}" if s.mode == "scores-csv"
        else DEFAULT_NAMES[s.mode]
    )
    reference, compare = references(s, len(scored.experts))
    fields = RecordFields(name=name, mode=s.mode, source=s.source_lang, targets=list(s.targets), e_min=scored.e_min,
                          e_max=scored.e_max, rounding=scored.rounding, scores=scored.scores, model=ctx.model_spec,
                          extra={"label": LABELS.get(s.mode, name), **scored.extra})
    record = make_record(scored.experts, fields, ctx.config, reference)
    out = Path(s.out) if s.out else Layout(s.output_dir).allocation(name, "--name")
    return record, out, compare, ctx


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
    def gather(cls, s: AllocateSettings) -> Inputs:
        """The model comes from --model, else from the manifest of the stage the mode reads."""
        from neuronmoe.allocation import inputs
        from neuronmoe.layout import Layout

        paths = Layout(s.output_dir)
        ctx = cls(neurons_dir=Path(s.neurons_dir) if s.neurons_dir else paths.neurons,
                  sim_dir=Path(s.similarity_dir) if s.similarity_dir else paths.similarity, model_spec=s.model)
        if s.mode in NEURON_MODES:
            ctx.neuron_manifest = inputs.read_neuron_manifest(ctx.neurons_dir)
            ctx.model_spec = ctx.model_spec or (ctx.neuron_manifest.get("config") or {}).get("model")
        elif s.mode == "similarity":
            from neuronmoe.utils.manifest import load_manifest

            ctx.model_spec = ctx.model_spec or (load_manifest(ctx.sim_dir).get("config") or {}).get("model")
        if ctx.model_spec:
            from neuronmoe.models import load_config, num_layers

            ctx.config = load_config(ctx.model_spec)
            ctx.n_layers = num_layers(ctx.config)
        return ctx


def neuron_layers(ctx: Inputs) -> int:
    """The layer count of the neuron results (which must equal --model's when given)."""
    from neuronmoe.allocation import inputs

    nd = ctx.neurons_dir
    n_neurons = inputs.neurons_num_layers(nd, ctx.neuron_manifest or {})
    if ctx.n_layers is not None and n_neurons is not None and n_neurons != ctx.n_layers:
        raise InputError(f"{nd}: neuron results cover {n_neurons} layers, but --model {ctx.model_spec} has {ctx.n_layers}")
    n_layers = ctx.n_layers or n_neurons
    if n_layers is None:
        raise InputError(f"{nd}: manifest records no num_layers; give --model")
    return n_layers


def read_units(s: AllocateSettings, ctx: Inputs) -> tuple[list[Any], dict[str, list[Any]]]:
    """The selected units of the source and (unless source-only) of every target; none selected is an error."""
    from neuronmoe.allocation import inputs

    nd, targets = ctx.neurons_dir, list(s.targets)
    if s.mode == "pair" and len(targets) != 1:
        raise ConfigError(f"--targets: pair mode (paper eq. 2) takes exactly one target language, got "
                          f"{', '.join(targets) or 'none'}; use --mode multi for several")
    if s.mode == "multi" and not targets:
        raise ConfigError("--targets: multi mode needs at least one target language")
    src = inputs.read_selected(nd, s.source_lang, "source language", ctx.neuron_manifest)
    tgt = {} if s.mode == "source-only" else {t: inputs.read_selected(nd, t, "target language", ctx.neuron_manifest)
                                              for t in targets}
    empty = [lang for lang, units in [(s.source_lang, src), *tgt.items()] if not units]
    if empty:
        thr = ((ctx.neuron_manifest or {}).get("config") or {}).get("ap_threshold")
        raise InputError(f"{nd}: no selected units for {', '.join(empty)} (neurons ran with ap_threshold {thr}), so the "
                         f"allocation would be dense; rerun `neuronmoe neurons` with a lower --ap-threshold")
    return src, tgt


def score_neurons(s: AllocateSettings, ctx: Inputs) -> Scored:
    """pair (paper eq. 2), multi (published '3lang') and source-only (NeuronMoE-EN) from neuron results."""
    from neuronmoe.allocation import core

    n_layers = neuron_layers(ctx)
    src, tgt = read_units(s, ctx)
    if s.mode == "pair":
        scores = core.pair_scores(src, tgt[s.targets[0]], n_layers)
    elif s.mode == "multi":
        scores = core.multi_scores(src, tgt, n_layers)
    else:
        scores = core.source_only_scores(src, n_layers)
    experts = core.allocate(scores, s.e_min, s.e_max, s.rounding)
    return Scored(experts, scores, s.e_min, s.e_max, s.rounding, {"inputs": {"neurons_dir": str(ctx.neurons_dir)}})


def score_csv(s: AllocateSettings, ctx: Inputs) -> Scored:
    from neuronmoe.allocation import core, inputs

    scores = inputs.read_scores_csv(str(s.scores_csv), ctx.n_layers)
    experts = core.allocate(scores, s.e_min, s.e_max, s.rounding)
    return Scored(experts, scores, s.e_min, s.e_max, s.rounding, {"inputs": {"scores_csv": str(s.scores_csv)}})


def score_similarity(s: AllocateSettings, ctx: Inputs) -> Scored:
    """LayerMoE from the scores of ``neuronmoe similarity``: E_l = ceil((1/S_l)/sum(1/S) * B)."""
    from neuronmoe.allocation import core, inputs
    from neuronmoe.utils.checks import verify_inputs

    verify_inputs(ctx.sim_dir, [ctx.sim_dir / "scores.csv"], what="similarity scores")  # vs similarity/manifest.json
    scores = inputs.read_scores_csv(ctx.sim_dir / "scores.csv", ctx.n_layers, flag="similarity scores")
    budget = s.budget if s.budget is not None else round(float(s.budget_per_layer) * len(scores))
    return Scored(core.layermoe_allocate(scores, budget), scores, 1, None, "ceil",
                  {"budget": budget, "inputs": {"similarity_dir": str(ctx.sim_dir)}})


def score_uniform(s: AllocateSettings, ctx: Inputs) -> Scored:
    from neuronmoe.allocation import core

    if ctx.n_layers is None:
        raise ConfigError("--mode uniform: needs --model (the layer count comes from the model)")
    k = s.uniform_experts if s.uniform_experts is not None else s.e_max
    return Scored(core.uniform_allocation(ctx.n_layers, k), None, k, k, None)


#: mode -> scorer
SCORERS: dict[str, Callable[[AllocateSettings, Inputs], Scored]] = {
    "pair": score_neurons, "multi": score_neurons, "source-only": score_neurons,
    "scores-csv": score_csv, "similarity": score_similarity, "uniform": score_uniform,
}


def references(s: AllocateSettings, n_layers: int) -> tuple[Any, Any]:
    """(the allocation parameters are compared with, the allocation Figure 1 is drawn against)."""
    from neuronmoe.allocation.store import load_allocation

    out_root = Path(s.output_dir)
    ref_spec = s.reference or s.compare_with
    reference = load_allocation(ref_spec, output_dir=out_root, flag="--reference") if ref_spec else None
    cw = s.compare_with
    compare = (reference if cw and cw == ref_spec
               else load_allocation(cw, output_dir=out_root, flag="--compare-with") if cw else None)
    if compare is not None and compare.num_layers != n_layers:
        raise InputError(f"--compare-with {cw}: {compare.num_layers} layers, allocation has {n_layers}")
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


def draw_comparison(s: AllocateSettings, record: dict[str, Any], json_path: Path, compare: Any,
                    stability: dict[str, Any] | None = None) -> None:
    """The paper's Figure 1: this allocation against ``compare`` (PNG + PDF), with the bootstrap's per-layer
    90 % intervals when ``stability`` holds them."""
    from neuronmoe.allocation.figure import plot_allocation_comparison
    from neuronmoe.allocation.stability import layer_intervals
    from neuronmoe.allocation.store import Allocation
    from neuronmoe.layout import Layout

    ref = record.get("reference") or {}
    stem = (Path(s.figure) if s.figure
            else Layout(s.output_dir).figures / f"allocation_{record['name']}_vs_{compare.name}")
    alloc = Allocation(experts_per_layer=record["experts_per_layer"], name=record["name"], path=json_path, data=record)
    pchange = ref.get("moe_ffn_params_change") if ref.get("name") == compare.name else None
    paths = plot_allocation_comparison(alloc, compare, stem, params_change=pchange, score_label=score_label(record),
                                       intervals=layer_intervals(stability))
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
