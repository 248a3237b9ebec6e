"""End-to-end orchestration: the miniature reproduction (``neuronmoe pipeline``) and the paper-scale
plan (``neuronmoe reproduce-paper``).

``neuronmoe pipeline`` runs every stage as its own ``python -m neuronmoe <stage>`` process, in order:
prepare-data, neurons, similarity (LayerMoE allocation), allocate (NeuronMoE pair, NeuronMoE-EN),
stage-1 training of every allocation, stage 2 of NeuronMoE, evaluation of the dense model and of every
run, the per-expert analysis of NeuronMoE-S1, figures, and ``$OUTPUT_DIR/report.md``.

Resuming: a stage is skipped when its completion marker (the stage's ``manifest.json``, or the allocation
JSON) exists and the fingerprint recorded by the pipeline when it last finished equals the current one:
the sha256 of the stage's exact command line and of the completion markers of the stages it reads. A rerun
upstream therefore re-runs what depends on it; a killed run re-does only the stage it was in (training
stages continue from their last checkpoint with ``--resume``). State: ``$OUTPUT_DIR/pipeline/``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from neuronmoe.cli_common import add_model_arg, add_output_dir_arg, env, split_langs

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- the plan
@dataclass
class Stage:
    name: str
    argv: list[str]  # arguments after `neuronmoe`
    marker: str  # path (relative to the output dir) whose existence marks completion
    deps: list[str] = field(default_factory=list)
    kind: str = ""  # "train" stages get --resume / --overwrite at run time

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "neuronmoe", *self.argv]


@dataclass
class PipelineConfig:
    output_dir: str = "outputs"
    model: str = "smollm2-135m"
    source: str = "en"
    target: str = "el"
    neg_langs: list[str] = field(default_factory=lambda: ["tr", "hu", "de", "es", "fr", "ja", "zh"])
    num_sentences: int = 200
    profile: str = "auto"
    eval_suite: str = "local"
    analysis_limit: int = 0
    extra: dict[str, list[str]] = field(default_factory=dict)  # stage name -> extra CLI args

    @property
    def languages(self) -> list[str]:
        out = [self.source, self.target]
        return out + [x for x in self.neg_langs if x not in out]


#: Table-1 rows of the miniature report: (label, eval run, allocation name or None)
TABLE_ROWS = [
    ("Dense", "dense", None),
    ("LayerMoE-S1", "layermoe-s1", "layermoe"),
    ("NeuronMoE-EN", "neuronmoe-en-s1", "neuronmoe-en"),
    ("NeuronMoE-S1", "neuronmoe-s1", "neuronmoe"),
    ("NeuronMoE", "neuronmoe-s2", "neuronmoe"),
]


def plan(cfg: PipelineConfig) -> list[Stage]:
    """The stages of the miniature reproduction, in execution order."""
    o, m = cfg.output_dir, cfg.model
    common = ["--output-dir", o, "--model", m]
    langs = ",".join(cfg.languages)
    st: list[Stage] = [
        Stage("data", ["prepare-data", *common, "--new-langs", cfg.target, "--old-langs", cfg.source,
                       "--neg-langs", ",".join(x for x in cfg.languages if x not in (cfg.source, cfg.target)),
                       "--num-sentences", str(cfg.num_sentences)], "data/manifest.json"),
        Stage("neurons", ["neurons", *common, "--languages", langs], "neurons/manifest.json", ["data"]),
        Stage("similarity", ["similarity", *common, "--source", cfg.source, "--targets", cfg.target, "--name", "layermoe"],
              "similarity/manifest.json", ["data"]),
        Stage("allocate-neuronmoe", ["allocate", "--output-dir", o, "--model", m, "--mode", "pair", "--source", cfg.source,
                                     "--targets", cfg.target, "--name", "neuronmoe", "--compare-with", "layermoe"],
              "allocation/neuronmoe.json", ["neurons", "similarity"]),
        Stage("allocate-neuronmoe-en", ["allocate", "--output-dir", o, "--model", m, "--mode", "source-only",
                                        "--source", cfg.source, "--targets", cfg.target, "--name", "neuronmoe-en",
                                        "--reference", "layermoe"],
              "allocation/neuronmoe-en.json", ["neurons", "similarity"]),
    ]
    train_common = ["--stage", "1", *common, "--languages", cfg.target, "--profile", cfg.profile]
    for alloc, dep in (("layermoe", "similarity"), ("neuronmoe-en", "allocate-neuronmoe-en"), ("neuronmoe", "allocate-neuronmoe")):
        st.append(Stage(f"train-{alloc}-s1", ["train", *train_common, "--allocation", alloc, "--run-name", f"{alloc}-s1"],
                        f"train/{alloc}-s1/manifest.json", ["data", dep], kind="train"))
    st.append(Stage("train-neuronmoe-s2", ["train", "--stage", "2", *common, "--allocation", "neuronmoe", "--run-name", "neuronmoe-s2",
                                           "--languages", cfg.target, "--replay-languages", cfg.source, "--profile", cfg.profile,
                                           "--init-adapter", f"{o}/train/neuronmoe-s1/adapter"],
                    "train/neuronmoe-s2/manifest.json", ["data", "train-neuronmoe-s1"], kind="train"))
    eval_langs = ",".join([cfg.source, cfg.target])
    for label, run, _alloc in TABLE_ROWS:
        argv = ["evaluate", *common, "--suite", cfg.eval_suite, "--languages", eval_langs, "--run-name", run, "--label", label,
                "--overwrite"]
        deps = ["data"]
        if run != "dense":
            argv += ["--adapter", f"{o}/train/{run}/adapter"]
            deps.append(f"train-{run}")
        st.append(Stage(f"eval-{run}", argv, f"eval/{run}/manifest.json", deps))
    ana = ["analyze-experts", *common, "--run", "neuronmoe-s1", "--target", cfg.target, "--languages", langs, "--force"]
    if cfg.analysis_limit:
        ana += ["--limit", str(cfg.analysis_limit)]
    st.append(Stage("analyze-experts", ana, "analysis/manifest.json", ["data", "train-neuronmoe-s1"]))
    st.append(Stage("figures", ["figures", "--output-dir", o, "--target", cfg.target], "figures/manifest.json",
                    ["neurons", "allocate-neuronmoe", "similarity", "analyze-experts", "train-layermoe-s1",
                     "train-neuronmoe-en-s1", "train-neuronmoe-s1", "train-neuronmoe-s2"]))
    names = {s.name for s in st}
    for s in st:
        s.argv += cfg.extra.get(s.name, [])
        missing = [d for d in s.deps if d not in names]
        if missing:  # pragma: no cover - a programming error in the table above
            raise AssertionError(f"{s.name}: unknown deps {missing}")
    return st


# ------------------------------------------------------------------------------------ fingerprints
def _sha256_file(path: Path) -> str | None:
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(stage: Stage, stages: dict[str, Stage], out_dir: Path) -> str:
    """sha256 of the stage's command line and of its dependencies' completion markers."""
    payload = {"argv": stage.argv, "deps": {d: _sha256_file(out_dir / stages[d].marker) for d in stage.deps}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def state_path(out_dir: Path, name: str) -> Path:
    return out_dir / "pipeline" / "state" / f"{name}.json"


def is_complete(stage: Stage, stages: dict[str, Stage], out_dir: Path) -> bool:
    sp = state_path(out_dir, stage.name)
    if not (out_dir / stage.marker).exists() or not sp.exists():
        return False
    try:
        rec = json.loads(sp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return rec.get("fingerprint") == fingerprint(stage, stages, out_dir)


# ------------------------------------------------------------------------------------------ running
def run_pipeline(cfg: PipelineConfig, *, dry_run: bool = False, only: Sequence[str] | None = None,
                 rerun: Sequence[str] | None = None, python: str = sys.executable, runner: Any = None) -> dict[str, Any]:
    """Run (or, with ``dry_run``, print) every stage that is not complete; write report.md.

    ``runner(cmd: list[str]) -> int`` replaces ``subprocess.call`` (tests). Returns the timings.
    """
    from neuronmoe.utils import atomic_write_json

    out_dir = Path(cfg.output_dir)
    stages = plan(cfg)
    by_name = {s.name: s for s in stages}
    for flag, names in (("--only", only), ("--rerun", rerun)):
        unknown = [x for x in names or [] if x not in by_name]
        if unknown:
            raise ValueError(f"{flag}: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(by_name)}")
    runner = runner or (lambda cmd: subprocess.call(cmd))
    timings_path = out_dir / "pipeline" / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    t_all = time.time()
    for s in stages:
        if only and s.name not in only:
            continue
        if s.name not in (rerun or []) and is_complete(s, by_name, out_dir):
            print(f"[pipeline] {s.name}: up to date, skipped", flush=True)
            timings.setdefault(s.name, {})["skipped_last"] = True
            continue
        argv = list(s.argv)
        if s.kind == "train":
            run_dir = out_dir / s.marker.rsplit("/", 1)[0]
            started = out_dir / "pipeline" / "started" / f"{s.name}.json"
            fp = fingerprint(s, by_name, out_dir)
            # resume only a run that was started with these very inputs; anything else starts afresh
            same = started.exists() and json.loads(started.read_text()).get("fingerprint") == fp
            fresh = s.name in (rerun or []) or (out_dir / s.marker).exists() or not same
            argv.append("--overwrite" if (fresh and run_dir.exists()) else "--resume")
            if not dry_run:
                atomic_write_json(started, {"fingerprint": fp})
        cmd = [python, "-m", "neuronmoe", *argv]
        print(f"[pipeline] {s.name}: {shlex.join(cmd[1:])}", flush=True)
        if dry_run:
            continue
        t0 = time.time()
        rc = runner(cmd)
        dt = time.time() - t0
        if rc != 0:
            timings[s.name] = {"seconds": round(dt, 1), "failed": True, "rc": rc}
            atomic_write_json(timings_path, timings)
            raise RuntimeError(f"stage {s.name} failed (exit status {rc}); fix it and rerun: complete stages are skipped")
        if not (out_dir / s.marker).exists():
            raise RuntimeError(f"stage {s.name} finished but did not write {out_dir / s.marker}")
        atomic_write_json(state_path(out_dir, s.name), {"fingerprint": fingerprint(s, by_name, out_dir), "argv": argv,
                                                          "seconds": round(dt, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        timings[s.name] = {"seconds": round(dt, 1), "skipped_last": False}
        atomic_write_json(timings_path, timings)
    if not dry_run:
        timings["_last_run_seconds"] = round(time.time() - t_all, 1)
        atomic_write_json(timings_path, timings)
        path = write_report(cfg, timings)
        print(f"[pipeline] report: {path}", flush=True)
    return timings


# ------------------------------------------------------------------------------------------- report
def _alloc_facts(out_dir: Path, name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    p = out_dir / "allocation" / f"{name}.json"
    if not p.exists():
        return {}
    d = json.loads(p.read_text())
    added = d.get("added_params")
    if isinstance(added, dict):
        added = added.get("added_params")
    return {"experts": d.get("total_experts"), "added_params": added, "experts_per_layer": d.get("experts_per_layer")}


def build_report(cfg: PipelineConfig, timings: dict[str, Any] | None = None) -> str:
    """``report.md``: the miniature Table 1, the allocations, the expert analysis and every figure,
    with every number read from this run's outputs."""
    from neuronmoe.evaluation.table import load_run

    out_dir = Path(cfg.output_dir)
    lines = [f"# NeuronMoE miniature reproduction: {cfg.model}, {cfg.source} -> {cfg.target}", ""]
    lines += ["Every number below is read from this run's outputs under this folder; see docs/pipeline.md.", ""]
    runs = []
    missing = []
    for label, run, alloc in TABLE_ROWS:
        p = out_dir / "eval" / run / "results.json"
        if not p.exists():
            missing.append(run)
            continue
        r = load_run(p)
        nm = r.setdefault("neuronmoe", {})
        nm["label"] = label
        facts = _alloc_facts(out_dir, alloc)
        if facts:
            nm["experts"] = facts["experts"]
            nm["added_params"] = facts["added_params"]
        else:
            nm["experts"], nm["added_params"] = None, None
        runs.append(r)
    lines += ["## Table 1 (miniature)", ""]
    if runs:
        from neuronmoe.evaluation.report import report_markdown

        md, _ = report_markdown(runs, relative_to="LayerMoE-S1" if any(r["neuronmoe"]["label"] == "LayerMoE-S1" for r in runs) else None)
        lines += [md]
    if missing:
        lines += [f"Not evaluated yet: {', '.join(missing)}.", ""]
    lines += ["#Exp = experts summed over layers, the original MLP of every layer included (the paper's count); "
              "added params = new experts + routers (what stage 1 trains).", ""]

    names = dict.fromkeys(a for _, _, a in TABLE_ROWS if a)
    allocs = [p for p in (out_dir / "allocation" / f"{a}.json" for a in names) if p.exists()]
    if allocs:
        lines += ["## Allocations (experts per layer)", "", "| allocation | total | per layer |", "|---|---:|---|"]
        for p in allocs:
            d = json.loads(p.read_text())
            lines.append(f"| {p.stem} | {d.get('total_experts')} | {','.join(str(x) for x in d.get('experts_per_layer', []))} |")
        lines.append("")

    ana = out_dir / "analysis" / "expert_ap.json"
    if ana.exists():
        md = out_dir / "analysis" / f"expert_ap_{cfg.target}.md"
        lines += ["## Language-specific units inside the experts (NeuronMoE-S1; paper Tables 4/10, Figure 3)", ""]
        if md.exists():
            lines += [md.read_text(encoding="utf-8"), ""]

    figs = sorted((out_dir / "figures").glob("*.png")) if (out_dir / "figures").is_dir() else []
    if figs:
        lines += ["## Figures", ""]
        for f in figs:
            lines += [f"![{f.stem}](figures/{f.name})", ""]

    if timings:
        lines += ["## Stage times (this machine)", "", "| stage | seconds | last run |", "|---|---:|---|"]
        for k, v in timings.items():
            if k.startswith("_") or not isinstance(v, dict):
                continue
            lines.append(f"| {k} | {v.get('seconds', 'n/a')} | {'skipped (up to date)' if v.get('skipped_last') else 'ran'} |")
        if "_last_run_seconds" in timings:
            lines.append(f"| total (last invocation) | {timings['_last_run_seconds']} | |")
        lines.append("")
    return "\n".join(lines)


def write_report(cfg: PipelineConfig, timings: dict[str, Any] | None = None) -> Path:
    from neuronmoe.utils import atomic_write_text

    path = Path(cfg.output_dir) / "report.md"
    atomic_write_text(path, build_report(cfg, timings))
    return path


# ------------------------------------------------------------------------------------- paper scale
PAPER_TARGETS = ["el", "tr", "hu"]
#: Table 5: unique EN+EL language-specific units per layer of Llama-3.2-3B
TABLE5_EN_EL = [342, 79, 11, 18, 15, 11, 8, 7, 8, 8, 7, 6, 9, 14, 9, 18, 81, 20, 19, 28, 38, 232, 51, 208, 114, 111, 238, 223]


def paper_plan(output_dir: str = "outputs/paper", model: str = "meta-llama/Llama-3.2-3B", targets: Sequence[str] = PAPER_TARGETS,
               source: str = "en", deepspeed: str = "zero2", nproc: int = 8, neg_langs: Sequence[str] = ("de", "fr", "ja"),
               replay: Sequence[str] = ("en", "zh", "es"), data_source: str = "hf:uonlp/CulturaX",
               allocations: str = "computed", model_config: str = "llama-3.2-3b") -> list[list[str]]:
    """The exact commands of the paper-scale run (Llama-3.2-3B, en -> el/tr/hu, Table 7 settings).

    ``allocations``: ``computed`` runs the method (neuron analysis -> pair allocation per target, LayerMoE
    from similarity); ``published`` trains the paper's own allocations (shipped under
    neuronmoe/configs/allocations: Tables 2 and 8), to reproduce its exact expert counts.
    """
    o = output_dir
    common = ["--output-dir", o, "--model", model]
    old = [source, *[x for x in replay if x != source]]
    negs = [x for x in neg_langs if x not in old and x not in targets]
    langs = [*old, *targets, *negs]
    launch = ["torchrun", f"--nproc_per_node={nproc}", "-m", "neuronmoe"]
    cmds: list[list[str]] = [
        ["neuronmoe", "prepare-data", *common, "--source", data_source, "--new-langs", ",".join(targets), "--old-langs",
         ",".join(old), "--neg-langs", ",".join(negs), "--num-sentences", "500", "--max-tokens", "2e9"],
        ["neuronmoe", "neurons", *common, "--languages", ",".join(langs), "--top-k", "1000", "--ap-threshold", "0.5"],
    ]
    names: dict[tuple[str, str], str] = {}
    for t in targets:
        if allocations == "published":
            names[("layermoe", t)] = f"{model_config}-el-layermoe"  # the paper uses LayerMoE's 84 for every language
            names[("neuronmoe", t)] = f"{model_config}-{t}-neuronmoe"
            continue
        names[("layermoe", t)], names[("neuronmoe", t)] = f"layermoe-{t}", f"neuronmoe-{t}"
        cmds.append(["neuronmoe", "similarity", *common, "--source", source, "--targets", t, "--name", f"layermoe-{t}",
                     "--budget", "70"])
        cmds.append(["neuronmoe", "allocate", *common, "--mode", "pair", "--source", source, "--targets", t,
                     "--name", f"neuronmoe-{t}", "--compare-with", f"layermoe-{t}"])
    if "el" in targets:
        if allocations == "published":
            names[("neuronmoe-en", "el")] = f"{model_config}-el-neuronmoe-en"
        else:
            names[("neuronmoe-en", "el")] = "neuronmoe-en"
            cmds.append(["neuronmoe", "allocate", *common, "--mode", "source-only", "--source", source, "--targets", "el",
                         "--name", "neuronmoe-en", "--reference", "layermoe-el"])
    runs: list[tuple[str, str, str]] = []  # (run, language, label)
    for t in targets:
        for kind in ("layermoe", "neuronmoe", "neuronmoe-en"):
            if (kind, t) not in names:
                continue
            run = f"{kind}-{t}-s1"
            cmds.append([*launch, "train", "--stage", "1", *common, "--allocation", names[(kind, t)], "--run-name", run,
                         "--languages", t, "--profile", "paper", "--deepspeed", deepspeed, "--resume"])
            runs.append((run, t, {"layermoe": "LayerMoE-S1", "neuronmoe": "NeuronMoE-S1", "neuronmoe-en": "NeuronMoE-EN"}[kind]
                         + ("" if t == "el" else f" ({t})")))
    if "el" in targets:  # stage 2 (router training with replay + LPR): Greek only, as in the paper
        for kind, label in (("layermoe", "LayerMoE"), ("neuronmoe", "NeuronMoE")):
            run = f"{kind}-el-s2"
            cmds.append([*launch, "train", "--stage", "2", *common, "--allocation", names[(kind, "el")], "--run-name", run,
                         "--init-adapter", f"{o}/train/{kind}-el-s1/adapter", "--languages", "el",
                         "--replay-languages", ",".join(old), "--profile", "paper", "--deepspeed", deepspeed, "--resume"])
            runs.append((run, "el", label))
    cmds.append(["neuronmoe", "evaluate", *common, "--suite", "paper", "--languages", ",".join([source, *targets]),
                 "--run-name", "dense", "--label", "Dense"])
    for run, t, label in runs:
        cmds.append(["neuronmoe", "evaluate", *common, "--suite", "paper", "--languages", f"{source},{t}",
                     "--adapter", f"{o}/train/{run}/adapter", "--run-name", run, "--label", label])
    if "el" in targets:
        cmds.append(["neuronmoe", "analyze-experts", *common, "--run", "neuronmoe-el-s1", "--target", "el",
                     "--languages", ",".join(langs)])
    cmds.append(["neuronmoe", "figures", "--output-dir", o] + (["--target", "el"] if "el" in targets else []))
    cmds.append(["neuronmoe", "report", "--output-dir", o])
    return cmds


def paper_dry_run(model_config: str = "llama-3.2-3b", output_dir: str = "outputs/paper",
                  targets: Sequence[str] = PAPER_TARGETS, deepspeed: str = "zero2", nproc: int = 8,
                  model: str = "meta-llama/Llama-3.2-3B", allocations: str = "computed") -> dict[str, Any]:
    """Validate every paper-scale config here (no weights, no data) and return the facts + commands.

    * the training profiles (``train_stage1``/``train_stage2``, Table 7) through the training stage's
      resolver, and the shipped DeepSpeed config;
    * the ``paper`` evaluation suite covers ``en`` and every target;
    * allocations: el from Table 5's published counts (pair mode, E 1-6, truncation) -> 49 experts;
      tr and hu from the shipped Table 8 allocations (Table 6 gives per-language counts, not the
      unions eq. 2 needs); LayerMoE from the shipped Table 2 allocation;
    * parameter budgets of each allocation from the shipped model config.
    """
    from neuronmoe.allocation import allocate, count_params, load_allocation
    from neuronmoe.config import load_yaml
    from neuronmoe.models import load_config, model_dims
    from neuronmoe.training.settings import resolve

    bad = [t for t in targets if t not in PAPER_TARGETS]
    if bad:
        raise ValueError(f"--targets {bad}: the paper-scale presets cover {', '.join(PAPER_TARGETS)}")
    cfg = load_config(model_config)
    dims = model_dims(cfg)
    facts: dict[str, Any] = {"model_config": model_config, "dims": dims, "checks": []}
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
    ds_path = Path(__file__).resolve().parent / "configs" / "deepspeed_zero2.json"
    ds = json.loads(ds_path.read_text())
    if ds.get("zero_optimization", {}).get("stage") != 2:
        raise ValueError(f"{ds_path}: not a ZeRO stage-2 config")
    facts["checks"].append("DeepSpeed ZeRO-2 config present")
    suites = load_yaml("eval_suites")["suites"]
    paper = suites.get("paper")
    if not paper:
        raise ValueError("eval_suites.yaml has no 'paper' suite")
    missing = [x for x in ["en", *targets] if x not in paper.get("languages", [])]
    if missing:
        raise ValueError(f"the paper suite does not cover {missing}")
    facts["eval_suite"] = {b["name"]: b.get("shots") for b in paper["benchmarks"]}
    facts["checks"].append("paper evaluation suite covers " + ",".join(["en", *targets]))

    allocs: dict[str, dict[str, Any]] = {}
    el = allocate(TABLE5_EN_EL, e_min=1, e_max=6, rounding="floor")
    allocs["neuronmoe-el"] = {"experts_per_layer": el, "source": "computed from Table 5 (EN+EL unique units), E 1-6, truncation"}
    for t in targets:
        if t == "el":
            continue
        a = load_allocation(f"{model_config}-{t}-neuronmoe")
        allocs[f"neuronmoe-{t}"] = {"experts_per_layer": list(a.experts_per_layer),
                                    "source": f"shipped Table 8 allocation ({model_config}-{t}-neuronmoe): Table 6 has "
                                              "per-language counts, not the EN+target unions eq. 2 needs"}
    for name, shipped in (("neuronmoe-en", f"{model_config}-el-neuronmoe-en"), ("layermoe", f"{model_config}-el-layermoe")):
        a = load_allocation(shipped)
        allocs[name] = {"experts_per_layer": list(a.experts_per_layer), "source": f"shipped ({shipped})"}
    ref = None
    for name, a in allocs.items():
        if len(a["experts_per_layer"]) != dims["num_layers"]:
            raise ValueError(f"{name}: {len(a['experts_per_layer'])} layers, the model has {dims['num_layers']}")
        a["total_experts"] = sum(a["experts_per_layer"])
        a["params"] = count_params(a["experts_per_layer"], cfg)
    ref = allocs["layermoe"]["params"]["moe_ffn_params"]
    for a in allocs.values():
        a["moe_ffn_change_vs_layermoe"] = a["params"]["moe_ffn_params"] / ref - 1.0
    facts["allocations"] = allocs
    facts["checks"].append(f"el allocation from Table 5 = {allocs['neuronmoe-el']['total_experts']} experts")
    if allocations not in ("computed", "published"):
        raise ValueError(f"--allocations {allocations!r}: choose computed or published")
    facts["commands"] = [shlex.join(c) for c in paper_plan(output_dir, model, targets=targets, deepspeed=deepspeed, nproc=nproc,
                                                           allocations=allocations, model_config=model_config)]
    return facts


# ------------------------------------------------------------------------------------------------ CLI
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run the miniature reproduction end to end (skips complete stages)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    add_output_dir_arg(p)
    add_model_arg(p)
    p.add_argument("--source", default=env("SOURCE_LANG", "en"), help="old (source) language (env SOURCE_LANG; default en)")
    p.add_argument("--target", default=env("TARGET_LANG", "el"), help="new (target) language (env TARGET_LANG; default el)")
    p.add_argument("--neg-langs", default=env("NEG_LANGS", "tr,hu,de,es,fr,ja,zh"),
                   help="extra neuron-analysis languages (negatives), comma separated, or 'none' (env NEG_LANGS; default tr,hu,de,es,fr,ja,zh)")
    p.add_argument("--num-sentences", type=int, default=env("NUM_SENTENCES", "200"),
                   help="neuron-analysis sentences per language (env NUM_SENTENCES; default 200 for the 30-minute budget)")
    p.add_argument("--profile", default=env("TRAIN_PROFILE", "auto"), choices=["auto", "paper", "cpu"],
                   help="training profile: auto = cpu profile without a GPU (env TRAIN_PROFILE)")
    p.add_argument("--eval-suite", default=env("EVAL_SUITE", "local"), help="evaluation suite (env EVAL_SUITE; default local, offline)")
    p.add_argument("--analysis-limit", type=int, default=env("ANALYSIS_LIMIT", "0"),
                   help="samples per language for the expert analysis, 0 = all (env ANALYSIS_LIMIT)")
    p.add_argument("--only", default=env("PIPELINE_ONLY"), help="run only these stages, comma separated (env PIPELINE_ONLY)")
    p.add_argument("--rerun", default=env("PIPELINE_RERUN"),
                   help="run these stages even if complete, comma separated; their dependants follow (env PIPELINE_RERUN). "
                   "Needed after changing a setting given through a stage's environment variable, which the fingerprints do not see")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the stages that would run, run nothing")
    p.add_argument("--report-only", action="store_true", help="only (re)write $OUTPUT_DIR/report.md from the outputs present")
    p.set_defaults(func=run_cli)

    r = sub.add_parser("reproduce-paper", help="the paper-scale run (Llama-3.2-3B, el/tr/hu, DeepSpeed ZeRO-2): --dry-run validates and prints it")
    r.add_argument("--output-dir", default=env("OUTPUT_DIR", "outputs/paper"), help="output root (env OUTPUT_DIR; default outputs/paper)")
    r.add_argument("--model-config", default=env("PAPER_MODEL_CONFIG", "llama-3.2-3b"),
                   help="shipped model config used for the checks and parameter budgets (env PAPER_MODEL_CONFIG)")
    r.add_argument("--model", default=env("PAPER_MODEL", "meta-llama/Llama-3.2-3B"),
                   help="the model the commands train (hub id or local folder) (env PAPER_MODEL; default meta-llama/Llama-3.2-3B)")
    r.add_argument("--allocations", default=env("PAPER_ALLOCATIONS", "computed"), choices=["computed", "published"],
                   help="computed: run the method (neuron analysis -> allocation); published: train the paper's own "
                   "allocations (Tables 2, 8) (env PAPER_ALLOCATIONS; default computed)")
    r.add_argument("--print-commands", action="store_true", help="print only the commands, one per line (for scripts)")
    r.add_argument("--targets", default=env("PAPER_TARGETS", "el,tr,hu"), help="new languages (env PAPER_TARGETS; default el,tr,hu)")
    r.add_argument("--nproc", type=int, default=env("NPROC_PER_NODE", "8"), help="GPUs per node for torchrun (env NPROC_PER_NODE; default 8)")
    r.add_argument("--deepspeed", default=env("DEEPSPEED_CONFIG", "zero2"), help="DeepSpeed config for training (env DEEPSPEED_CONFIG; default zero2)")
    r.add_argument("--dry-run", action="store_true", help="validate every config and print the exact commands; needs no GPU, weights or data")
    r.add_argument("--json", action="store_true", help="print the dry-run facts as JSON")
    r.set_defaults(func=run_reproduce)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    neg = [] if str(args.neg_langs).strip().lower() in ("", "none") else split_langs(args.neg_langs)
    return PipelineConfig(output_dir=args.output_dir, model=args.model, source=args.source, target=args.target,
                          neg_langs=neg, num_sentences=args.num_sentences, profile=args.profile,
                          eval_suite=args.eval_suite, analysis_limit=args.analysis_limit)


def run_cli(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.source == args.target:
        raise ValueError("--source and --target must differ")
    if args.report_only:
        tp = Path(cfg.output_dir) / "pipeline" / "timings.json"
        print(write_report(cfg, json.loads(tp.read_text()) if tp.exists() else None))
        return 0
    run_pipeline(cfg, dry_run=args.dry_run, only=split_langs(args.only) or None, rerun=split_langs(args.rerun) or None)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    targets = split_langs(args.targets)
    facts = paper_dry_run(args.model_config, args.output_dir, targets, args.deepspeed, args.nproc, args.model, args.allocations)
    if args.print_commands:
        print("\n".join(facts["commands"]))
        return 0
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
    else:
        print(f"# paper-scale plan for {args.model_config} ({facts['dims']['num_layers']} layers), targets {','.join(targets)}")
        for c in facts["checks"]:
            print(f"# ok: {c}")
        print("# allocations (experts incl. the original MLP; MoE-FFN params vs LayerMoE):")
        for name, a in facts["allocations"].items():
            print(f"#   {name:14s} {a['total_experts']:3d} experts, added {a['params']['added_params'] / 1e9:.2f}B params, "
                  f"MoE-FFN {100 * a['moe_ffn_change_vs_layermoe']:+.1f}%  [{a['source']}]")
        for c in facts["commands"]:
            print(c)
    if not args.dry_run:
        print("# validated; run these commands on the GPU cluster (scripts/reproduce_paper.sh runs them in order)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience
    from neuronmoe.cli import main as cli_main

    return cli_main(list(argv) if argv is not None else None)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
