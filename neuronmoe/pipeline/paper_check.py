"""The paper-scale plan compared with the paper, setting by setting (``reproduce-paper --dry-run``).

:func:`plan_values` reads what the plan will actually run: every command of :func:`~neuronmoe.pipeline.paper.paper_plan`
parsed by the CLI's own parser (environment defaults included, as when the commands run), the training
profiles resolved by the trainer's resolver for the plan's world size, the data sources built by
``prepare-data``'s own parser, the similarity options, the evaluation suite. :func:`settings_table` puts each
value next to ``neuronmoe/configs/paper_protocol.yaml`` (the paper's value, the reference code's, and the
documented deviations) and gives every row a status: ``ok``, ``deviation`` (documented, with its reason) or
``MISMATCH``. :func:`check_table` raises on any mismatch.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from neuronmoe.errors import ConfigError

OK, DEVIATION, MISMATCH, AT_RUN_TIME, NOT_RUN = "ok", "deviation", "MISMATCH", "at run time", "not run"
NO_REFERENCE = "no paper reference"


class NotRun:
    """A value the plan does not measure but takes as published (``--allocations published``: LayerMoE's G1
    setting is the shipped row's, no similarity runs): shown, never reported as checked."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return _fmt(self.value)

    def __repr__(self) -> str:
        return f"NotRun({self.value!r})"


class NoReference(NotRun):
    """A value for a language the paper never ran (LayerMoE measured for a new language): shown, not compared."""

    def __repr__(self) -> str:
        return f"NoReference({self.value!r})"


class PaperMismatchError(ConfigError):
    """The plan differs from the paper in a way that is not a documented deviation."""


def _argv(cmd: Sequence[str]) -> list[str]:
    """The ``neuronmoe`` arguments of a plan command (``neuronmoe X ...`` or ``torchrun ... -m neuronmoe X ...``)."""
    cmd = list(cmd)
    if cmd[0] == "neuronmoe":
        return cmd[1:]
    i = cmd.index("-m")
    return cmd[i + 2:]


def parse_commands(cmds: Sequence[Sequence[str]]) -> list[argparse.Namespace]:
    from neuronmoe.cli import build_parser

    parser = build_parser()
    return [parser.parse_args(_argv(c)) for c in cmds]


def honoured_variables(commands: Sequence[str | Sequence[str]]) -> dict[str, set[str]]:
    """``{variable: commands}`` for reproduce-paper and the commands of its plan: a command reads a variable
    of its own unless the plan passes that flag (the environment report names only what nothing reads)."""
    import shlex

    from neuronmoe.envvars import VARS, reads

    out: dict[str, set[str]] = {name: {"reproduce-paper"} for name in reads("reproduce-paper")}
    for c in commands:
        argv = _argv(shlex.split(c) if isinstance(c, str) else c)
        flags = {a.split("=")[0] for a in argv if a.startswith("--")}
        for v in VARS:
            flag = v.reads.get(argv[0], "")
            if flag and flag.split()[0] not in flags:
                out.setdefault(v.name, set()).add(argv[0])
    return out


def _first(parsed: list[argparse.Namespace], command: str, **match: Any) -> argparse.Namespace | None:
    for a in parsed:
        if a.command == command and all(getattr(a, k, None) == v for k, v in match.items()):
            return a
    return None


def _norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return str(v)


def plan_values(cmds: Sequence[Sequence[str]], nproc: int, targets: Sequence[str]) -> dict[str, Any]:
    """``{row key: value}`` of what the plan runs (keys of paper_protocol.yaml); ``None`` = known at run time."""
    parsed = parse_commands(cmds)
    vals: dict[str, Any] = {}
    train_values(vals, parsed, nproc)
    data_values(vals, parsed, targets)
    layermoe_values(vals, parsed)
    eval_values(vals, parsed)
    neuron_values(vals, parsed)
    deepspeed_values(vals, parsed)
    return vals


def train_settings(parsed: list[argparse.Namespace], nproc: int) -> list[Any]:
    """Every ``train`` command of the plan resolved as the stage resolves it (``TrainSettings``), for ``nproc``
    processes (the batch derivation of the world size)."""
    from neuronmoe.training.settings import TrainSettings

    return [TrainSettings.resolve(a, world_size=nproc) for a in parsed if a.command == "train"]


def train_values(vals: dict[str, Any], parsed: list[argparse.Namespace], nproc: int) -> None:
    cfgs = {}
    for s in train_settings(parsed, nproc):
        cfgs.setdefault(s.stage, (s.config(), s.batch))  # the first run of each stage
    if 1 in cfgs:
        c, b = cfgs[1]
        for k in ("optim", "learning_rate", "adam_epsilon", "weight_decay", "lr_scheduler_type", "warmup_steps",
                  "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "max_grad_norm", "bf16",
                  "seed", "top_k", "aux_loss_coef", "aux_loss_form", "cutoff_len"):
            vals[f"s1.{k}"] = c[k]
        vals["s1.adam_betas"] = f"{c['adam_beta1']:g}, {c['adam_beta2']:g}"
        vals["s1.effective_batch_size"] = b["effective_batch_size"]
        vals["s1.tokens"] = c["max_steps"] * b["effective_batch_size"] * c["cutoff_len"] if c["max_steps"] > 0 else None
        from neuronmoe.allocation.settings import AllocateSettings

        a = _first(parsed, "allocate", mode="pair")
        alloc = AllocateSettings.resolve(a, environ={}) if a is not None else AllocateSettings.resolve(environ={})
        vals["s1.e_range"] = f"{alloc.e_min}, {alloc.e_max}"
    if 2 in cfgs:
        c, b = cfgs[2]
        for k in ("train_mode", "learning_rate", "aux_loss_coef", "lpr_loss_coef", "lpr_input", "cutoff_len"):
            vals[f"s2.{k}"] = c[k]
        from neuronmoe.moe.config import MoEConfig

        vals["s2.lpr_layer_mean"] = c.get("lpr_layer_mean", MoEConfig.lpr_layer_mean)
        vals["s2.effective_batch_size"] = b["effective_batch_size"]
        vals["s2.steps"] = f"{c['max_steps']} steps" if c["max_steps"] > 0 else f"{c['num_train_epochs']:g} epoch"
        vals["s2.tokens"] = "one epoch" if c["max_steps"] <= 0 and c["num_train_epochs"] == 1 else vals["s2.steps"]
        vals["s2.new_docs"] = c["max_samples"]
        vals["_s2_replay_docs"] = c["replay_max_samples"]
        vals["_s2_replay_langs"] = list(c["replay_languages"])


def data_values(vals: dict[str, Any], parsed: list[argparse.Namespace], targets: Sequence[str]) -> None:
    from neuronmoe.data.lang_sources import HFFilesSource, make_sources, source_for
    from neuronmoe.data.settings import DataSettings
    from neuronmoe.data.sources import HFSource

    a = _first(parsed, "prepare-data")
    if a is None:
        return
    cfg = DataSettings.resolve(a)
    src = make_sources(cfg.source, cfg.languages, cfg.text_field, cfg.hf_split)

    def name(lang: str) -> str:
        s = source_for(src, lang)
        return s.name if isinstance(s, HFSource) else s.spec

    def order(lang: str) -> str:
        s = source_for(src, lang)
        if isinstance(s, HFFilesSource) and s.shuffle_seed is not None:
            buffer = f", buffer {s.shuffle_buffer}" if s.shuffle_buffer is not None else ""
            return (f"{s.data_files}, seed {s.shuffle_seed}" if s.data_files else f"shuffled seed {s.shuffle_seed}") + buffer
        return "file order"

    new = {t: name(t) for t in targets}
    vals["data.new"] = next(iter(new.values())) if len(set(new.values())) == 1 else ", ".join(f"{k}: {v}" for k, v in new.items())
    budgets = {cfg.token_budget(source_for(src, t)) for t in targets}
    vals["data.new_tokens"] = budgets.pop() if len(budgets) == 1 else None
    orders = {order(t) for t in targets}
    vals["data.new_shuffle"] = orders.pop() if len(orders) == 1 else None
    for lang in ("en", "zh", "es"):
        if lang in cfg.old_langs:
            vals[f"data.replay.{lang}"] = name(lang)
            vals[f"data.replay_shuffle.{lang}"] = order(lang)
    vals["data.replay_heldout"] = cfg.heldout_fraction
    cap = vals.pop("_s2_replay_docs", None)
    vals["s2.replay_docs"] = min(x for x in (cap, cfg.replay_docs) if x is not None)
    missing = [x for x in vals.pop("_s2_replay_langs", []) if x not in cfg.old_langs]
    if missing:
        raise PaperMismatchError(f"stage 2 replays {', '.join(missing)} but prepare-data does not prepare them as old languages")


def layermoe_values(vals: dict[str, Any], parsed: list[argparse.Namespace]) -> None:
    from neuronmoe.allocation import load_allocation

    a = _first(parsed, "similarity")
    if a is None:  # --allocations published: the shipped Table 2 row
        trains = [x for x in train_settings(parsed, 1) if x.stage == 1 and "layermoe" in x.allocation]
        if trains:
            al = load_allocation(trains[0].allocation)
            vals["layermoe.experts"] = int(sum(al.experts_per_layer))
            for k, v in (("setting", "G1: el,hu,tr vs en,es,zh"), ("tokens", 100000), ("include_bos", True),
                         ("layer_score", "layermoe")):
                vals[f"layermoe.{k}"] = NotRun(v)  # the shipped row is LayerMoE's own G1 result (Table 2, Table 9)
            if al.data.get("budget") is not None:  # recorded for Llama (70); Qwen's is not published
                vals["layermoe.budget"] = NotRun(al.data["budget"])
        return
    from neuronmoe.similarity.settings import SimilaritySettings

    o = SimilaritySettings.resolve(a)
    vals["layermoe.setting"] = f"G1: {','.join(o.targets)} vs {','.join(o.old)}" if o.setting == "g1" else \
        f"{','.join(o.targets)} vs {','.join(o.old)} ({o.split})"
    from neuronmoe.pipeline.paper import g1_languages

    if o.setting == "g1" and not set(o.targets) & set(g1_languages()[0]):  # a new language's own measurement
        vals["layermoe.setting"] = NoReference(vals["layermoe.setting"] + " (G1's settings, one new language)")
    vals["layermoe.tokens"] = o.max_tokens or o.tokens_per_language
    vals["layermoe.include_bos"] = bool(o.include_bos)
    vals["layermoe.layer_score"] = o.layer_score
    vals["layermoe.budget"] = o.budget
    vals["layermoe.max_length"] = o.max_length
    vals["layermoe.experts"] = None  # measured at run time (LayerMoE's own G1 table gives 84: tests)


def eval_values(vals: dict[str, Any], parsed: list[argparse.Namespace]) -> None:
    """Shots of every benchmark as the evaluation will run them, language by language (each ``evaluate`` resolved
    as the stage resolves it: suite, profile, ``--shots``, ``--num-fewshot``): ``eval.<bench>`` = the shots most of
    the plan's languages get, and ``eval.<bench>/<lang>`` for a language that gets others (Turkish MMLU: 4)."""
    from collections import Counter

    from neuronmoe.evaluation.settings import EvaluateSettings
    from neuronmoe.evaluation.suites import resolve_suite

    evals = [EvaluateSettings.resolve(a) for a in parsed if a.command == "evaluate"]
    evals = [e for e in evals if e.effective_suite]
    if not evals:
        return
    a = evals[0]
    langs = list(dict.fromkeys(x for e in evals for x in e.languages)) or None
    specs = resolve_suite(a.effective_suite, langs, profile=a.profile, shots=a.shots)
    for bench in dict.fromkeys(t.benchmark for t in specs):
        shots = {t.lang: (a.num_fewshot if a.num_fewshot is not None else t.shots) for t in specs if t.benchmark == bench}
        common = Counter(shots.values()).most_common(1)[0][0]
        vals[f"eval.{bench}"] = common
        for lang, n in shots.items():
            if n != common:
                vals[f"eval.{bench}/{lang}"] = n


def neuron_values(vals: dict[str, Any], parsed: list[argparse.Namespace]) -> None:
    """The neuron analysis as the plan runs it (``neurons`` resolved as the stage resolves it)."""
    from neuronmoe.data.settings import DataSettings
    from neuronmoe.neuron_analysis.settings import NeuronSettings

    a = _first(parsed, "neurons")
    if a is None:
        return
    s = NeuronSettings.resolve(a)
    prep = _first(parsed, "prepare-data")
    vals.update({"neurons.top_k": s.top_k, "neurons.ap_threshold": s.ap_threshold, "neurons.max_length": s.max_length,
                 "neurons.sentences": DataSettings.resolve(prep).num_samples if prep is not None else None,
                 "neurons.modules": ("every linear projection (q, k, v, o, gate, up, down)" if not s.modules
                                     else ", ".join(s.modules))})


def deepspeed_values(vals: dict[str, Any], parsed: list[argparse.Namespace]) -> None:
    """The DeepSpeed config of the plan's training commands (``--deepspeed``)."""
    import json
    from pathlib import Path

    from neuronmoe.config import CONFIG_DIR

    trains = train_settings(parsed, 1)
    spec = trains[0].deepspeed if trains else None
    if not spec:
        return
    ds = json.loads((CONFIG_DIR / "deepspeed_zero2.json" if spec == "zero2" else Path(spec)).read_text())
    zero = ds.get("zero_optimization", {})
    vals.update({"ds.stage": zero.get("stage"), "ds.allgather_bucket_size": zero.get("allgather_bucket_size"),
                 "ds.reduce_bucket_size": zero.get("reduce_bucket_size"), "ds.overlap_comm": bool(zero.get("overlap_comm")),
                 "ds.round_robin_gradients": bool(zero.get("round_robin_gradients")),
                 "ds.precision": "bf16" if (ds.get("bf16") or {}).get("enabled") in (True, "auto") else
                 ("fp16" if (ds.get("fp16") or {}).get("enabled") in (True, "auto") else "fp32")})


def settings_table(cmds: Sequence[Sequence[str]], nproc: int, targets: Sequence[str],
                   model_config: str = "llama-3.2-3b") -> list[dict[str, Any]]:
    """One row per protocol setting: group, label, paper, reference, plan, status, note. A row's ``models``
    entry for ``model_config`` (e.g. Qwen's Table 9 values) replaces its fields for that model."""
    from neuronmoe.config import load_yaml

    vals = plan_values(cmds, nproc, targets)
    protocol = load_yaml("paper_protocol")["rows"]
    known = {r["key"] for r in protocol}
    for key in [k for k in vals if k not in known and "/" in k]:  # a per-language value without its own row:
        base = next(r for r in protocol if r["key"] == key.split("/")[0])  # the benchmark's row, named (lang)
        protocol.append({**base, "key": key, "label": f"{base['label']} ({key.split('/')[1]})"})
    rows = []
    for r in protocol:
        r = {**r, **((r.get("models") or {}).get(model_config) or {})}
        if r["key"] not in vals:
            continue
        plan = vals[r["key"]]
        rows.append({"group": r["group"], "label": r["label"].replace("{langs}", ",".join(targets)), "key": r["key"],
                     "paper": r.get("paper"), "reference": r.get("reference"), "plan": plan,
                     **row_status(r, plan)})
    return rows


def row_status(row: dict[str, Any], plan: Any) -> dict[str, str]:
    """``ok`` (= paper, or = reference where the paper is silent), ``deviation`` (documented, with ``ours`` = the
    plan's value), ``at run time`` (measured later), else ``MISMATCH``."""
    paper, ref = row.get("paper"), row.get("reference")
    src = str(row.get("source", ""))
    if plan is None:
        return {"status": AT_RUN_TIME, "note": src}
    if isinstance(plan, NoReference):
        return {"status": NO_REFERENCE, "note": "a language the paper never ran: LayerMoE's G1 settings with it as the "
                "only new language (no new-new pair: the layer score is the mean of its new-old similarities)"}
    if isinstance(plan, NotRun):
        return {"status": NOT_RUN, "note": "published allocation: no similarity runs in this plan; LayerMoE's own "
                "setting, shown as published, not checked"}
    if paper is not None and _norm(plan) == _norm(paper):
        return {"status": OK, "note": src}
    if paper is None and ref is not None and _norm(plan) == _norm(ref):
        return {"status": OK, "note": src}
    if row.get("deviation") and (row.get("ours") == "any" or _norm(plan) == _norm(row.get("ours"))):
        return {"status": DEVIATION, "note": str(row["deviation"])}
    expected = paper if paper is not None else ref
    return {"status": MISMATCH, "note": f"expected {expected!r} ({src})"
            + (f"; the documented deviation is {row.get('ours')!r}" if row.get("deviation") else "")}


def check_table(rows: list[dict[str, Any]]) -> None:
    bad = [r for r in rows if r["status"] == MISMATCH]
    if bad:
        raise PaperMismatchError(
            f"the plan differs from the paper in {len(bad)} undocumented setting(s): "
            + "; ".join(f"{r['group']} {r['label']}: plan {_fmt(r['plan'])}, {r['note']}" for r in bad))


def _fmt(v: Any) -> str:
    if isinstance(v, NoReference):
        return _fmt(v.value)
    if isinstance(v, NotRun):
        return f"{_fmt(v.value)} (published)"
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown (paper | reference code | this plan | status | note)."""
    out = ["| group | setting | paper | reference code | this plan | status | source / reason |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['group']} | {r['label']} | {_fmt(r['paper'])} | {_fmt(r['reference'])} | {_fmt(r['plan'])} | "
                   f"{r['status']} | {r['note']} |")
    return "\n".join(out)
