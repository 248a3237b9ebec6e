"""The paper-scale run (``neuronmoe reproduce-paper``): by default Llama-3.2-3B extended to el/tr/hu with
Table 7's settings. :func:`paper_plan` is the exact command list; :func:`paper_dry_run` validates every
config here (no weights, no data) and returns the facts, the settings table against the paper and the
commands. The paper's named experiments (:mod:`.experiments`) are these two functions with other
settings (model, languages, runs)."""
from __future__ import annotations

import json
import shlex
from typing import Any, Sequence

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
                raise ValueError(f"run {r!r}: expected one of {', '.join(all_run_names())}")
            out.append((kind, int(stage), t))
    order = {k: i for i, k in enumerate(RUN_KINDS)}
    return sorted(out, key=lambda x: (x[1], list(targets).index(x[2]), order[x[0]]))


def all_run_names() -> list[str]:
    return [f"{k}-s{s}" for k, labels in RUN_KINDS.items() for s in (1, 2) if labels[s - 1]]


def run_label(kind: str, stage: int, target: str) -> str:
    """Table label of a run: Greek runs as in Table 1, others with the language (``NeuronMoE-S1 (tr)``)."""
    return RUN_KINDS[kind][stage - 1] + ("" if target == "el" else f" ({target})")


#: Appendix D: stage-1 data and Spanish replay from CulturaX, English replay from SlimPajama, Chinese from SkyPile
#: (each read with the reference's recipe: neuronmoe/configs/data.yaml hf_datasets)
PAPER_DATA_SOURCE = ("hf:uonlp/CulturaX,en=hf:cerebras/SlimPajama-627B,zh=hf:Skywork/SkyPile-150B,"
                     "es=hf:uonlp/CulturaX")


def g1_languages() -> tuple[list[str], list[str]]:
    """LayerMoE's G1 languages (new, old) from neuronmoe/configs/similarity.yaml ``settings.g1``."""
    from neuronmoe.config import load_yaml

    g1 = load_yaml("similarity")["settings"]["g1"]
    return list(g1["targets"]), list(g1["old_langs"])


def paper_plan(output_dir: str = "outputs/paper", model: str = "meta-llama/Llama-3.2-3B", targets: Sequence[str] = PAPER_TARGETS,
               source: str = "en", deepspeed: str = "zero2", nproc: int = 8, neg_langs: Sequence[str] = ("de", "fr", "ja"),
               replay: Sequence[str] = ("en", "zh", "es"), data_source: str = PAPER_DATA_SOURCE,
               allocations: str = "computed", model_config: str = "llama-3.2-3b", runs: Sequence[str] | None = None,
               layermoe_budget: float | None = None, capture_site: str | None = None,
               expert_analysis: bool = True, accept_allocation_diff: bool = False) -> list[list[str]]:
    """The exact commands of a paper-scale run (default: Llama-3.2-3B, en -> el/tr/hu, Table 7 settings).

    ``allocations``: ``computed`` runs the method (neuron analysis -> pair allocation per target; LayerMoE
    from similarity in LayerMoE's G1 setting, whose new languages are then prepared too); ``published`` trains
    the paper's own allocations (shipped under neuronmoe/configs/allocations: Tables 2, 8 and 9;
    :func:`published_allocation`), to reproduce its exact expert counts. Training commands give no batch
    size: the profile's effective batch (32) is split over the ``nproc`` processes by the trainer.
    ``runs``: which training runs (:func:`plan_runs`); ``layermoe_budget``: B of the LayerMoE baseline
    (None: the G1 setting's 70); ``capture_site``: the similarity's ``--capture-site``;
    ``expert_analysis``: the per-expert analysis of NeuronMoE-S1 (Greek); ``accept_allocation_diff``: the
    allocation gate (computed mode: every computed allocation against the paper's, before any training) lets
    differences through instead of stopping (:mod:`neuronmoe.pipeline.gate`).
    """
    o = output_dir
    common = ["--output-dir", o, "--model", model]
    old = [source, *[x for x in replay if x != source]]
    planned = plan_runs(targets, runs)
    kinds = {(k, t) for k, _, t in planned}
    layermoe = allocations != "published" and any(k == "layermoe" for k, _ in kinds)
    g1_new, g1_old = g1_languages()
    from neuronmoe.pipeline.new_language import gate_applies, layermoe_plan

    options = [*(["--budget", f"{layermoe_budget:g}"] if layermoe_budget is not None else []),
               *(["--capture-site", capture_site] if capture_site else [])]
    g1_extra, layer_of, similarity_cmds = layermoe_plan(targets, g1_new, g1_old, common, options)
    new = [*targets, *g1_extra] if layermoe else list(targets)
    negs = [x for x in neg_langs if x not in old and x not in new]
    langs = [*old, *new, *negs]
    launch = ["torchrun", f"--nproc_per_node={nproc}", "-m", "neuronmoe"]
    cmds: list[list[str]] = [
        ["neuronmoe", "prepare-data", *common, "--source", data_source, "--new-langs", ",".join(new), "--old-langs",
         ",".join(old), "--neg-langs", ",".join(negs), "--num-sentences", "500", "--max-tokens", "2e9",
         "--replay-docs", "50000"],
        ["neuronmoe", "neurons", *common, "--languages", ",".join(langs), "--top-k", "1000", "--ap-threshold", "0.5"],
    ]
    if layermoe:  # LayerMoE's baseline: measured in its G1 setting (84 experts for Llama-3.2-3B); a target outside G1
        cmds += similarity_cmds  # gets its own measurement with G1's settings (neuronmoe.pipeline.new_language)
    names: dict[tuple[str, str], str] = {}
    for kind, t in sorted(kinds, key=lambda x: (list(targets).index(x[1]), list(RUN_KINDS).index(x[0]))):
        if allocations == "published":
            name = published_allocation(model_config, kind, t)
            if name is None:
                raise ValueError(f"--allocations published: the paper publishes no {RUN_KINDS[kind][0]} allocation for "
                                 f"{model_config} / {t} (shipped: {', '.join(_shipped_for(model_config)) or 'none'}); "
                                 "use --allocations computed")
            names[(kind, t)] = name
    for t in targets:
        if allocations == "published":
            continue
        layer = layer_of[t]
        if ("layermoe", t) in kinds:
            names[("layermoe", t)] = layer
        if ("neuronmoe", t) in kinds:
            names[("neuronmoe", t)] = f"neuronmoe-{t}"
            cmds.append(["neuronmoe", "allocate", *common, "--mode", "pair", "--source", source, "--targets", t,
                         "--name", f"neuronmoe-{t}", *(["--compare-with", layer] if ("layermoe", t) in kinds else [])])
        if ("neuronmoe-en", t) in kinds:
            names[("neuronmoe-en", t)] = "neuronmoe-en" if t == "el" else f"neuronmoe-en-{t}"
            cmds.append(["neuronmoe", "allocate", *common, "--mode", "source-only", "--source", source, "--targets", t,
                         "--name", names[("neuronmoe-en", t)], *(["--reference", layer] if ("layermoe", t) in kinds else [])])
    if allocations != "published" and names and gate_applies(model_config, names):  # computed vs the paper's (issue 22)
        from neuronmoe.pipeline.gate import gate_command

        cmds.append(gate_command(o, model_config, names, accept_allocation_diff))
    runs_done: list[tuple[str, str, str]] = []  # (run, language, label)
    for kind, stage, t in planned:
        run = f"{kind}-{t}-s{stage}"
        cmd = [*launch, "train", "--stage", str(stage), *common, "--allocation", names[(kind, t)], "--run-name", run]
        if stage == 2:  # router training with replay + LPR (Greek only in the paper)
            cmd += ["--init-adapter", f"{o}/train/{kind}-{t}-s1/adapter", "--languages", t,
                    "--replay-languages", ",".join(old)]
        else:
            cmd += ["--languages", t]
        cmds.append([*cmd, "--profile", "paper", "--deepspeed", deepspeed, "--resume"])
        runs_done.append((run, t, run_label(kind, stage, t)))
    cmds.append(["neuronmoe", "evaluate", *common, "--suite", "paper", "--languages", ",".join([source, *targets]),
                 "--run-name", "dense", "--label", "Dense"])
    for run, t, label in runs_done:
        cmds.append(["neuronmoe", "evaluate", *common, "--suite", "paper", "--languages", f"{source},{t}",
                     "--adapter", f"{o}/train/{run}/adapter", "--run-name", run, "--label", label])
    if expert_analysis and ("neuronmoe", 1, "el") in planned:
        cmds.append(["neuronmoe", "analyze-experts", *common, "--run", "neuronmoe-el-s1", "--target", "el",
                     "--languages", ",".join(langs)])
    cmds.append(["neuronmoe", "figures", "--output-dir", o] + (["--target", "el"] if "el" in targets else []))
    cmds.append(["neuronmoe", "report", "--output-dir", o])
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
        raise ValueError(f"--allocations {allocations!r}: choose computed or published")
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
    cmds = paper_plan(output_dir, model, targets=targets, deepspeed=deepspeed, nproc=nproc, allocations=allocations,
                      model_config=model_config, **plan_options)
    facts["commands"] = [shlex.join(c) for c in cmds]
    facts["nproc"] = nproc
    facts["settings"] = settings_table(cmds, nproc, targets, model_config)
    facts["mismatches"] = [r for r in facts["settings"] if r["status"] == MISMATCH]
    return facts


def check_training_profiles(facts: dict[str, Any]) -> None:
    """Both paper profiles resolve and validate; stage 1 has Table 7's learning rate, steps and top-k."""
    from neuronmoe.training.settings import resolve

    for stage in (1, 2):
        tcfg, _ = resolve(stage, "paper", environ={})
        facts[f"train_stage{stage}"] = {k: tcfg.get(k) for k in ("learning_rate", "max_steps", "num_train_epochs",
                                                                 "per_device_train_batch_size", "cutoff_len", "top_k",
                                                                 "aux_loss_coef", "lpr_loss_coef", "lr_scheduler_type",
                                                                 "warmup_steps", "max_grad_norm", "bf16", "seed") if k in tcfg}
        facts["checks"].append(f"training profile stage {stage} (paper) validates")
    t1 = facts["train_stage1"]
    if t1.get("learning_rate") != 1e-4 or t1.get("max_steps") != 15000 or t1.get("top_k") != 2:
        raise ValueError(f"train_stage1.yaml drifted from the paper's Table 7: {t1}")


def check_deepspeed(facts: dict[str, Any]) -> None:
    from neuronmoe.config import CONFIG_DIR

    ds_path = CONFIG_DIR / "deepspeed_zero2.json"
    ds = json.loads(ds_path.read_text())
    if ds.get("zero_optimization", {}).get("stage") != 2:
        raise ValueError(f"{ds_path}: not a ZeRO stage-2 config")
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
