"""The paper-scale run (``neuronmoe reproduce-paper``): by default Llama-3.2-3B extended to el/tr/hu with
Table 7's settings. :func:`paper_plan` is the exact command list; :func:`paper_dry_run` validates every
config here (no weights, no data) and returns the facts, the settings table against the paper and the
commands. The paper's named experiments (:mod:`.experiments`) are these two functions with other
settings (model, languages, runs)."""
from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any, Sequence

from neuronmoe.errors import ConfigError
from neuronmoe.pipeline.commands import argv
from neuronmoe.pipeline.settings import PaperPlan

PAPER_TARGETS = ["el", "tr", "hu"]
#: Table 5: unique EN+EL language-specific units per layer of Llama-3.2-3B
TABLE5_EN_EL = [342, 79, 11, 18, 15, 11, 8, 7, 8, 8, 7, 6, 9, 14, 9, 18, 81, 20, 19, 28, 38, 232, 51, 208, 114, 111, 238, 223]
#: per-layer unit counts the paper publishes, by (model config, target): only Table 5 (Llama-3.2-3B, EN+EL)
PUBLISHED_COUNTS = {("llama-3.2-3b", "el"): ("Table 5 (EN+EL unique units)", TABLE5_EN_EL)}
#: run kinds of a plan: the allocation each trains, and its label in the tables (stage 1, stage 2)
RUN_KINDS = {"layermoe": ("LayerMoE-S1", "LayerMoE"), "neuronmoe": ("NeuronMoE-S1", "NeuronMoE"),
             "neuronmoe-en": ("NeuronMoE-EN", None)}


def published_allocation(model_config: str, kind: str, target: str) -> str | None:
    """The shipped allocation the paper publishes for (model, run kind, target), or None.

    ``{model}-{target}-{kind}`` (Tables 2, 8, 9); LayerMoE's Greek allocation stands for every
    language of Table 3 (the paper trains LayerMoE's 84 experts for el, tr and hu)."""
    from neuronmoe.allocation import shipped_allocations

    names = shipped_allocations()
    cands = [f"{model_config}-{target}-{kind}"]
    if kind == "layermoe" and target in PAPER_TARGETS:
        cands.append(f"{model_config}-el-layermoe")
    return next((n for n in cands if n in names), None)


def plan_runs(targets: Sequence[str], runs: Sequence[str] | None = None) -> list[tuple[str, int, str]]:
    """``(kind, stage, target)`` of every training run, stage-1 runs first.

    ``runs`` (e.g. ``["layermoe-s1", "neuronmoe-s2"]``) applies to every target; None is the el/tr/hu
    plan: LayerMoE and NeuronMoE stage 1 for every target, NeuronMoE-EN and stage 2 for Greek only."""
    if runs is None:  # a language the paper never ran gets Greek's full plan (neuronmoe.pipeline.new_language)
        from neuronmoe.pipeline.new_language import default_runs

        runs_of = {t: default_runs(t) for t in targets}
    else:
        runs_of = {t: list(runs) for t in targets}
    out = []
    for t in targets:
        for r in runs_of[t]:
            kind, _, stage = r.rpartition("-s")
            if kind not in RUN_KINDS or stage not in ("1", "2") or (stage == "2" and RUN_KINDS[kind][1] is None):
                raise ConfigError(f"run {r!r}: expected one of {', '.join(all_run_names())}")
            out.append((kind, int(stage), t))
    order = {k: i for i, k in enumerate(RUN_KINDS)}
    return sorted(out, key=lambda x: (x[1], list(targets).index(x[2]), order[x[0]]))


def all_run_names() -> list[str]:
    return [f"{k}-s{s}" for k, labels in RUN_KINDS.items() for s in (1, 2) if labels[s - 1]]


def run_label(kind: str, stage: int, target: str) -> str:
    """Table label of a run: Greek runs as in Table 1, others with the language (``NeuronMoE-S1 (tr)``)."""
    return RUN_KINDS[kind][stage - 1] + ("" if target == "el" else f" ({target})")


#: Appendix D's data sources (:attr:`neuronmoe.pipeline.settings.PaperPlan.data_source`)
PAPER_DATA_SOURCE = PaperPlan.data_source


def g1_languages() -> tuple[list[str], list[str]]:
    """LayerMoE's G1 languages (new, old) from neuronmoe/configs/similarity.yaml ``settings.g1``."""
    from neuronmoe.config import load_yaml

    g1 = load_yaml("similarity")["settings"]["g1"]
    return list(g1["targets"]), list(g1["old_langs"])


def paper_plan(options: PaperPlan | None = None, /, **kw: Any) -> list[list[str]]:
    """The exact commands of a paper-scale run (default: Llama-3.2-3B, en -> el/tr/hu, Table 7 settings), each
    rendered from its stage's settings (:func:`neuronmoe.pipeline.commands.argv`).

    ``options`` (:class:`~neuronmoe.pipeline.settings.PaperPlan`, or its fields as keywords): ``allocations``
    ``computed`` runs the method (neuron analysis -> pair allocation per target; LayerMoE from similarity in
    LayerMoE's G1 setting, whose new languages are then prepared too); ``published`` trains the paper's own
    allocations (shipped under neuronmoe/configs/allocations: Tables 2, 8 and 9; :func:`published_allocation`), to
    reproduce its exact expert counts. Training commands give no batch size: the profile's effective batch (32) is
    split over the ``nproc`` processes by the trainer. The allocation gate (computed mode: every computed
    allocation against the paper's, before any training) stops on a difference unless ``accept_allocation_diff``.
    """
    given = PaperPlan.of(**kw)
    p = dataclasses.replace(options or PaperPlan(), **{k: getattr(given, k) for k in kw})
    planned = plan_runs(p.targets, p.runs)
    kinds = {(k, t) for k, _, t in planned}
    layermoe = p.allocations != "published" and any(k == "layermoe" for k, _ in kinds)
    g1_new, g1_old = g1_languages()
    from neuronmoe.pipeline.new_language import layermoe_plan

    options = [*(["--budget", f"{p.layermoe_budget:g}"] if p.layermoe_budget is not None else []),
               *(["--capture-site", p.capture_site] if p.capture_site else [])]
    g1_extra, layer_of, similarity_cmds = layermoe_plan(p.targets, g1_new, g1_old,
                                                        ["--output-dir", p.output_dir, "--model", p.model], options)
    new = [*p.targets, *g1_extra] if layermoe else list(p.targets)
    negs = [x for x in p.neg_langs if x not in p.old and x not in new]
    langs = [*p.old, *new, *negs]
    cmds = _preparation(p, new, negs, langs)
    if layermoe:  # LayerMoE's baseline: measured in its G1 setting (84 experts for Llama-3.2-3B); a target outside G1
        cmds += similarity_cmds  # gets its own measurement with G1's settings (neuronmoe.pipeline.new_language)
    names = _allocation_names(p, kinds, layer_of)
    cmds += _allocation_commands(p, kinds, names)
    cmds += [[*p.launch, *cmd] for cmd in _training_commands(p, planned, names)]
    cmds += _evaluation_commands(p, planned)
    common = dict(output_dir=p.output_dir, model=p.model)
    if p.expert_analysis and ("neuronmoe", 1, "el") in planned:
        cmds.append(["neuronmoe", *argv("analyze-experts", **common, run="neuronmoe-el-s1", target="el", languages=langs)])
    cmds.append(["neuronmoe", *argv("figures", output_dir=p.output_dir, target="el" if "el" in p.targets else None)])
    cmds.append(["neuronmoe", *argv("report", output_dir=p.output_dir)])
    return cmds


def _preparation(p: PaperPlan, new: list[str], negs: list[str], langs: list[str]) -> list[list[str]]:
    """prepare-data and neurons."""
    common = dict(output_dir=p.output_dir, model=p.model)
    return [["neuronmoe", *argv("prepare-data", **common, source=p.data_source, new_langs=new, old_langs=p.old,
                                neg_langs=negs, num_samples=500, max_tokens=2_000_000_000, replay_docs=50000)],
            ["neuronmoe", *argv("neurons", **common, languages=langs, top_k=1000, ap_threshold=0.5)]]


def _allocation_names(p: PaperPlan, kinds: set[tuple[str, str]], layer_of: dict[str, str]) -> dict[tuple[str, str], str]:
    """``{(kind, target): allocation name}``: the shipped ones (``published``) or the names the plan computes
    (``layer_of``: each target's LayerMoE allocation)."""
    names: dict[tuple[str, str], str] = {}
    for kind, t in sorted(kinds, key=lambda x: (list(p.targets).index(x[1]), list(RUN_KINDS).index(x[0]))):
        if p.allocations == "published":
            name = published_allocation(p.model_config, kind, t)
            if name is None:
                raise ConfigError(f"--allocations published: the paper publishes no {RUN_KINDS[kind][0]} allocation for "
                                  f"{p.model_config} / {t} (shipped: {', '.join(_shipped_for(p.model_config)) or 'none'}); "
                                  "use --allocations computed")
            names[(kind, t)] = name
        else:
            names[(kind, t)] = {"layermoe": layer_of.get(t, "layermoe"), "neuronmoe": f"neuronmoe-{t}",
                                "neuronmoe-en": "neuronmoe-en" if t == "el" else f"neuronmoe-en-{t}"}[kind]
    return names


def _allocation_commands(p: PaperPlan, kinds: set[tuple[str, str]], names: dict[tuple[str, str], str]) -> list[list[str]]:
    """Computed mode: the NeuronMoE allocations of every target, then the allocation gate (issue 22) where an
    allocation of the plan has a paper reference."""
    from neuronmoe.pipeline.new_language import gate_applies

    if p.allocations == "published":
        return []
    common = dict(output_dir=p.output_dir, model=p.model)
    cmds = []
    for t in p.targets:
        layer = names.get(("layermoe", t))
        if ("neuronmoe", t) in kinds:
            cmds.append(["neuronmoe", *argv("allocate", **common, mode="pair", source_lang=p.source, targets=[t],
                                            name=names[("neuronmoe", t)], compare_with=layer)])
        if ("neuronmoe-en", t) in kinds:
            cmds.append(["neuronmoe", *argv("allocate", **common, mode="source-only", source_lang=p.source, targets=[t],
                                            name=names[("neuronmoe-en", t)], reference=layer)])
    if names and gate_applies(p.model_config, names):  # before any training: computed vs the paper's
        from neuronmoe.pipeline.gate import gate_command

        cmds.append(gate_command(p.output_dir, p.model_config, names, p.accept_allocation_diff))
    return cmds


def _training_commands(p: PaperPlan, planned: list[tuple[str, int, str]],
                       names: dict[tuple[str, str], str]) -> list[list[str]]:
    """Every training run (after ``torchrun ... -m neuronmoe``); stage 2 with replay + LPR (Greek only in the paper)."""
    cmds = []
    for kind, stage, t in planned:
        run = f"{kind}-{t}-s{stage}"
        two = dict(init_adapter=f"{p.output_dir}/train/{kind}-{t}-s1/adapter") if stage == 2 else {}
        cmds.append(argv("train", stage=stage, output_dir=p.output_dir, model=p.model, allocation=names[(kind, t)],
                         run_name=run, **two, languages=[t], replay_languages=p.old if stage == 2 else None,
                         profile="paper", deepspeed=p.deepspeed, resume=True))
    return cmds


def _evaluation_commands(p: PaperPlan, planned: list[tuple[str, int, str]]) -> list[list[str]]:
    """The dense model on every language, then every run on English and its own language."""
    common = dict(output_dir=p.output_dir, model=p.model, suite="paper")
    cmds = [["neuronmoe", *argv("evaluate", **common, languages=[p.source, *p.targets], run_name="dense", label="Dense")]]
    for kind, stage, t in planned:
        run = f"{kind}-{t}-s{stage}"
        cmds.append(["neuronmoe", *argv("evaluate", **common, languages=[p.source, t],
                                        adapter=f"{p.output_dir}/train/{run}/adapter", run_name=run,
                                        label=run_label(kind, stage, t))])
    return cmds


def _shipped_for(model_config: str) -> list[str]:
    from neuronmoe.allocation import shipped_allocations

    return [n for n in shipped_allocations() if n.startswith(f"{model_config}-")]


def paper_dry_run(model_config: str = "llama-3.2-3b", output_dir: str = "outputs/paper",
                  targets: Sequence[str] = PAPER_TARGETS, deepspeed: str = "zero2", nproc: int = 8,
                  model: str = "meta-llama/Llama-3.2-3B", allocations: str = "computed", check_config: str | None = None,
                  **plan_options: Any) -> dict[str, Any]:
    """Validate every paper-scale config here (no weights, no data) and return the facts + commands.

    * the training profiles (``train_stage1``/``train_stage2``, Table 7) through the training stage's
      resolver, and the shipped DeepSpeed config;
    * the ``paper`` evaluation suite has a cell for the source and every target in every benchmark;
    * allocations (:func:`paper_allocations`): from the paper's published per-layer counts where it gives
      them for this model and language (Table 5: Llama-3.2-3B, el -> 49 experts), else the shipped
      published allocation (Tables 2, 8, 9), else none (computed at run time), each said in ``source``;
    * parameter budgets of each known allocation from the shipped model config;
    * ``settings``: every setting of the plan next to the paper's (:mod:`neuronmoe.pipeline.paper_check`), read
      from the commands as the CLI parses them and the trainer resolves them for ``nproc`` processes;
      ``mismatches``: the rows that differ without a documented deviation (the caller fails on them).

    ``model_config`` names the shipped allocations (``{model_config}-{target}-{kind}``); the checks and
    budgets use ``check_config`` (default: the same), so a config whose layer count contradicts the
    published allocations is an error. ``plan_options`` go to :func:`paper_plan`.
    """
    from neuronmoe.languages import check_languages
    from neuronmoe.models import load_config, model_dims
    from neuronmoe.pipeline.paper_check import MISMATCH, settings_table

    check_languages(list(targets), "--targets")
    if allocations not in ("computed", "published"):
        raise ConfigError(f"--allocations {allocations!r}: choose computed or published")
    checked = check_config or model_config
    cfg = load_config(checked)
    facts: dict[str, Any] = {"model_config": checked, "dims": model_dims(cfg), "checks": []}
    check_training_profiles(facts)
    check_deepspeed(facts)
    check_eval_suite(facts, targets, plan_options.get("source", "en"))
    runs = plan_runs(targets, plan_options.get("runs"))
    facts["allocations"] = paper_allocations(model_config, targets, cfg, runs, checked)
    for name, a in facts["allocations"].items():
        if a.get("from_counts"):
            facts["checks"].append(f"{name} allocation from {a['from_counts']} = {a['total_experts']} experts")
    cmds = paper_plan(output_dir=output_dir, model=model, targets=targets, deepspeed=deepspeed, nproc=nproc,
                      allocations=allocations, model_config=model_config, **plan_options)
    facts["commands"] = [shlex.join(c) for c in cmds]
    facts["nproc"] = nproc
    facts["settings"] = settings_table(cmds, nproc, targets, model_config)
    facts["mismatches"] = [r for r in facts["settings"] if r["status"] == MISMATCH]
    return facts


def check_training_profiles(facts: dict[str, Any]) -> None:
    """Both paper profiles resolve and validate; stage 1 has Table 7's learning rate, steps and top-k."""
    from neuronmoe.training.settings import TrainSettings

    for stage in (1, 2):
        tcfg = TrainSettings.resolve(environ={}, stage=stage, profile="paper").config()
        facts[f"train_stage{stage}"] = {k: tcfg.get(k) for k in ("learning_rate", "max_steps", "num_train_epochs",
                                                                 "per_device_train_batch_size", "cutoff_len", "top_k",
                                                                 "aux_loss_coef", "lpr_loss_coef", "lr_scheduler_type",
                                                                 "warmup_steps", "max_grad_norm", "bf16", "seed") if k in tcfg}
        facts["checks"].append(f"training profile stage {stage} (paper) validates")
    t1 = facts["train_stage1"]
    if t1.get("learning_rate") != 1e-4 or t1.get("max_steps") != 15000 or t1.get("top_k") != 2:
        raise ConfigError(f"train_stage1.yaml drifted from the paper's Table 7: {t1}")


def check_deepspeed(facts: dict[str, Any]) -> None:
    from neuronmoe.config import CONFIG_DIR

    ds_path = CONFIG_DIR / "deepspeed_zero2.json"
    ds = json.loads(ds_path.read_text())
    if ds.get("zero_optimization", {}).get("stage") != 2:
        raise ConfigError(f"{ds_path}: not a ZeRO stage-2 config")
    facts["checks"].append("DeepSpeed ZeRO-2 config present")


def check_eval_suite(facts: dict[str, Any], targets: Sequence[str], source: str = "en") -> None:
    """The ``paper`` suite's cells for the source and every target, or for a language without them the benchmarks
    lm-eval ships for it (:func:`neuronmoe.pipeline.new_language.check_eval_coverage`)."""
    from neuronmoe.pipeline.new_language import check_eval_coverage

    check_eval_coverage(facts, targets, source)


def paper_allocations(model_config: str, targets: Sequence[str], cfg: Any,
                      runs: Sequence[tuple[str, int, str]] | None = None, checked: str | None = None) -> dict[str, dict[str, Any]]:
    """The allocation of every run kind of the plan, each checked against the model, with parameter budgets
    vs LayerMoE; an allocation the paper does not publish for this model and language has
    ``experts_per_layer`` None and says so in ``source``."""
    from neuronmoe.allocation import allocate, count_params, load_allocation
    from neuronmoe.utils.checks import check_fits_base

    runs = plan_runs(targets, None) if runs is None else runs
    allocs: dict[str, dict[str, Any]] = {}
    layer_of: dict[str, str] = {}  # target -> key of its LayerMoE allocation
    for kind, _, t in runs:
        shipped = published_allocation(model_config, kind, t)
        if kind == "layermoe":
            key = "layermoe" if shipped == f"{model_config}-el-layermoe" else f"layermoe-{t}"
            layer_of[t] = key
        else:
            key = f"{kind}-{t}" if kind == "neuronmoe" or t != "el" else kind
        if key in allocs:
            continue
        counts = PUBLISHED_COUNTS.get((model_config, t)) if kind == "neuronmoe" else None
        if counts:
            experts = allocate(counts[1], e_min=1, e_max=6, rounding="floor")
            a = {"experts_per_layer": experts, "from_counts": counts[0],
                 "source": f"computed from {counts[0]}, E 1-6, truncation"}
            if shipped:
                a["shipped"] = shipped
                same = list(load_allocation(shipped).experts_per_layer) == list(experts)
                a["source"] += f"; {'equals' if same else 'DIFFERS FROM'} the shipped {shipped}"
        elif shipped:
            rec = load_allocation(shipped)
            a = {"experts_per_layer": list(rec.experts_per_layer), "shipped": shipped,
                 "source": f"shipped {shipped} ({rec.data.get('published', 'published')})"
                 + ("" if kind != "neuronmoe" else f"; the paper publishes no EN+{t} unit counts for {model_config}, "
                    "so it is not recomputed here")}
        else:
            how = "similarity" if kind == "layermoe" else "neuron analysis -> allocate"
            a = {"experts_per_layer": None,
                 "source": f"computed at run time ({how}): the paper publishes neither counts nor an allocation "
                           f"for {model_config} / {t} (no paper reference)"}
        allocs[key] = {**a, "target": t}
    for name, a in allocs.items():
        a["total_experts"] = sum(a["experts_per_layer"]) if a["experts_per_layer"] else None
        if a["experts_per_layer"] is None:
            a["params"] = None
            continue
        check_fits_base(a["experts_per_layer"], None, cfg, f"allocation {name}" + (f" ({a['shipped']})" if a.get("shipped") else ""),
                        hint=f"the model config {checked or model_config} does not fit the published allocations of {model_config}")
        a["params"] = count_params(a["experts_per_layer"], cfg)
    for a in allocs.values():
        ref = allocs.get(layer_of.get(a["target"], ""), allocs.get("layermoe", {})).get("params")
        a["moe_ffn_change_vs_layermoe"] = (a["params"]["moe_ffn_params"] / ref["moe_ffn_params"] - 1.0
                                           if a["params"] and ref else None)
    return allocs
