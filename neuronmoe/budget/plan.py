"""The budget of a planned paper run, one row per training, analysis and evaluation command: tokens, optimizer steps,
FLOPs (forward, backward through the activations, weight gradients), GPU-hours and wall time at the card's MFU,
memory per device against the card, disk; totals beside the paper's figures.

:func:`plan_budget` is the one call the paper plan makes (``reproduce-paper --dry-run``): it takes the plan's
commands and returns a JSON-able dict; :func:`format_budget` prints it; :func:`budget_problems` lists the runs that
do not fit (the dry run fails on them, naming each run and a per-device batch x accumulation that fits)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from neuronmoe.budget import GIB
from neuronmoe.budget.disk import GB, Item, by_filesystem, cache_roots, disk_problems, run_disk
from neuronmoe.budget.flops import Shape, forward_flops_per_token, training_flops_per_token
from neuronmoe.budget.gpus import GPU
from neuronmoe.budget.memory import activation_memory, param_counts, propose_split, static_memory
from neuronmoe.budget.runs import TrainRun
from neuronmoe.errors import ConfigError


@dataclass
class Context:
    """What every row needs: the model, the card, the plan's facts and what is already on disk."""

    model_config: str
    output_dir: Path
    nproc: int
    gpu: GPU
    cfg: dict[str, Any]
    shape: Shape
    facts: dict[str, Any]
    allocations: Mapping[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    data_counts: dict[str, Any] | None = None
    hub_sizes: dict[str, float] = field(default_factory=dict)


def make_context(parsed: Sequence[Any], allocations: Mapping[str, Any], model_config: str, output_dir: str,
                 nproc: int, gpu: GPU, hub_sizes: Mapping[str, float] | None = None) -> Context:
    from neuronmoe.budget import budget_config
    from neuronmoe.budget.flops import shape_of
    from neuronmoe.budget.memory import model_facts
    from neuronmoe.budget.runs import language_sources
    from neuronmoe.layout import Layout
    from neuronmoe.models import load_config

    config = load_config(model_config)
    man = Layout(output_dir).data / "manifest.json"
    counts = json.loads(man.read_text()).get("counts") if man.exists() else None
    return Context(model_config, Path(output_dir), nproc, gpu, budget_config(), shape_of(config), model_facts(config),
                   allocations, language_sources(parsed), counts, dict(hub_sizes or {}))


def hours(flops: float, gpu: GPU) -> float:
    return flops / gpu.flops_per_second / 3600.0


def memory_of(ctx: Context, run: TrainRun) -> dict[str, Any]:
    """Per-device memory of a training run, whether it fits the card, and a split that does when it does not."""
    counts = param_counts(ctx.facts, run.experts, run.train_mode)
    static = static_memory(counts, run.layout, run.world, run.zero_stage, run.reduce_bucket or 500_000_000,
                           autocast=run.layout == "torch" and run.bf16)
    residual = 2 if run.layout == "deepspeed" else 4

    def needs(batch: int, ckpt: bool) -> float:
        act = activation_memory(ctx.shape, run.experts, run.top_k, batch * run.cutoff_len, ckpt, residual)
        return sum(static.values()) + act["total"]

    usable = (ctx.gpu.memory_gib - float(ctx.cfg.get("reserve_gib", 0))) * GIB
    tokens = run.per_device * run.cutoff_len
    act = activation_memory(ctx.shape, run.experts, run.top_k, tokens, run.checkpointing, residual)
    act_ck = activation_memory(ctx.shape, run.experts, run.top_k, tokens, True, residual)
    total = sum(static.values()) + act["total"]
    out = {"layout": f"{run.layout}" + (f" ZeRO-{run.zero_stage}" if run.layout == "deepspeed" else ""),
           "weights_dtype": "bf16 (DeepSpeed casts the module)" if run.layout == "deepspeed" else "fp32 (bf16 autocast)",
           **{f"{k}_gib": v / GIB for k, v in static.items()}, "static_gib": sum(static.values()) / GIB,
           "activations_gib": act["total"] / GIB, "activations_checkpointing_gib": act_ck["total"] / GIB,
           "gradient_checkpointing": run.checkpointing, "total_gib": total / GIB, "usable_gib": usable / GIB,
           "fits": total <= usable, "trainable_params": counts.trainable}
    if not out["fits"]:
        out["proposal"] = propose_split(run.effective, run.world, needs, usable)
    return out


def train_row(ctx: Context, run: TrainRun) -> dict[str, Any]:
    flops = training_flops_per_token(ctx.shape, run.experts, run.top_k, run.cutoff_len, run.train_mode)
    total = flops["total"] * run.tokens
    mem = memory_of(ctx, run)
    gpu_h = hours(total, ctx.gpu)
    adapter = param_counts(ctx.facts, run.experts, "experts").trainable  # every new expert and router
    disk = run_disk(adapter, mem["trainable_params"], run.steps, run.save_steps, run.save_total_limit,
                    run.layout == "deepspeed")
    return {"run": run.run, "kind": "train", "stage": run.stage, "allocation": run.allocation,
            "experts": sum(run.experts), "experts_per_layer": list(run.experts), "experts_source": run.experts_source,
            "train_mode": run.train_mode, "tokens": run.tokens, "tokens_basis": run.tokens_basis, "steps": run.steps,
            "per_device_batch": run.per_device, "gradient_accumulation": run.accumulation, "world_size": run.world,
            "cutoff_len": run.cutoff_len, "flops_per_token": flops,
            "flops": {k: v * run.tokens for k, v in flops.items()}, "gpu_hours": gpu_h, "wall_hours": gpu_h / run.world,
            "memory": mem, "disk": disk}


def forward_row(ctx: Context, name: str, kind: str, tokens: float, experts: Sequence[int] | None, seq: int,
                basis: str) -> dict[str, Any]:
    """A row of forward passes only (analysis, evaluation) on one GPU."""
    per_tok = forward_flops_per_token(ctx.shape, experts, 2, max(1, int(seq)))["total"]
    gpu_h = hours(per_tok * tokens, ctx.gpu)
    return {"run": name, "kind": kind, "tokens": int(tokens), "tokens_basis": basis,
            "experts": sum(experts) if experts else ctx.shape.layers, "flops": {"forward": per_tok * tokens,
                                                                                "total": per_tok * tokens},
            "gpu_hours": gpu_h, "wall_hours": gpu_h}


def _fertility(ctx: Context, lang: str) -> float:
    f = ctx.cfg["evaluation"]["fertility"]
    return float(f.get(lang, f["default"]))


def sentence_tokens(ctx: Context, lang: str) -> tuple[float, str]:
    c = (ctx.data_counts or {}).get(lang) or {}
    if c.get("samples"):
        return c["sample_tokens"] / c["samples"], "data/manifest.json"
    return float(ctx.cfg["sentence_tokens"]) * _fertility(ctx, lang), "estimate"


def analysis_rows(ctx: Context, parsed: Sequence[Any], experts_by_run: Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """Neuron analysis, LayerMoE similarity and the per-expert analysis (forward passes only)."""
    rows = []
    prep = next((a for a in parsed if a.command == "prepare-data"), None)
    n_sent = int(getattr(prep, "num_samples", None) or 500)
    for a in parsed:
        if a.command == "neurons":
            from neuronmoe.neuron_analysis.settings import NeuronSettings

            langs = list(NeuronSettings.resolve(a).languages)
            toks = [sentence_tokens(ctx, x) for x in langs]
            row = forward_row(ctx, "neurons", "analysis", n_sent * sum(t for t, _ in toks), None,
                              int(max(t for t, _ in toks)), f"{len(langs)} languages x {n_sent} sentences "
                              f"(tokens per sentence: {', '.join(sorted({b for _, b in toks}))})")
            row.update(languages=len(langs),
                       paper_gpu_minutes=len(langs) * ctx.cfg["paper"]["analysis_gpu_minutes_per_language"])
            rows.append(row)
        elif a.command == "similarity":
            from neuronmoe.similarity.settings import SimilaritySettings

            o = SimilaritySettings.resolve(a)
            langs = [*o.targets, *o.old]
            per = int(o.max_tokens or o.tokens_per_language)
            rows.append(forward_row(ctx, "similarity", "analysis", per * len(langs), None,
                                    min(int(o.max_length), 1024), f"{len(langs)} languages x {per:,} tokens"))
        elif a.command == "analyze-experts":
            langs = [x for x in str(a.languages or "").split(",") if x]
            rows.append(forward_row(ctx, "analyze-experts", "analysis", n_sent * len(langs) * ctx.cfg["sentence_tokens"]
                                    * 1.5, experts_by_run.get(a.run), ctx.cfg["sentence_tokens"],
                                    f"{len(langs)} languages x {n_sent} sentences (estimate)"))
    return rows


def eval_rows(ctx: Context, parsed: Sequence[Any], experts_by_run: Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """One row per ``evaluate`` command: items x answer choices x prompt tokens of every cell, forward only."""
    from neuronmoe.evaluation.settings import EvaluateSettings
    from neuronmoe.evaluation.suites import resolve_suite

    rows = []
    bench = ctx.cfg["evaluation"]["benchmarks"]
    for a in (EvaluateSettings.resolve(x) for x in parsed if x.command == "evaluate"):
        if not a.effective_suite:
            continue
        tokens, seq = 0.0, 1
        for s in resolve_suite(a.effective_suite, list(a.languages) or None, profile=a.profile, shots=a.shots):
            b = bench.get(s.benchmark)
            if b is None:
                continue
            per_request = b["tokens"] * _fertility(ctx, s.lang or "en")
            tokens += (s.items or b["items"]) * b["choices"] * per_request
            seq = max(seq, int(per_request))
        experts = experts_by_run.get(a.run_name) if a.adapter else None
        rows.append(forward_row(ctx, f"evaluate {a.run_name}", "evaluate", tokens, experts, seq,
                                f"items x choices x prompt tokens ({ctx.cfg['evaluation']['basis']})"))
    return rows


def _bpt(ctx: Context, lang: str) -> float:
    t = ctx.cfg["text_bytes_per_token"]
    return float(t.get(lang, t["default"]))


def download_items(ctx: Context, prep: Any, model: str) -> list[Item]:
    """What the plan downloads: the model's weights and each language's corpus reading."""
    from neuronmoe.data.settings import DataSettings

    items = [model_item(ctx, model)]
    if prep is None:
        return items
    dc = DataSettings.resolve(prep)
    recs = ctx.cfg["downloads"]["datasets"]
    for lang in dc.languages:
        name = ctx.sources.get(lang) or ctx.sources.get("*") or ""
        role = dc.role(lang)
        if role == "new":
            tokens = float(dc.max_tokens or dc.hf_max_tokens) / (1 - dc.heldout_fraction)
        elif role == "old":
            per_doc = float((ctx.cfg["tokens_per_document"].get(name) or ctx.cfg["tokens_per_document"]["default"])["tokens"])
            tokens = dc.replay_docs / (1 - dc.heldout_fraction) * per_doc
        else:
            tokens = 50.0 * dc.num_samples * ctx.cfg["sentence_tokens"]
        items += corpus_items(ctx, name, lang, tokens, recs.get(name))
    items.append(Item("evaluation datasets (paper suite)", float(ctx.cfg["downloads"]["evaluation"]["bytes"]),
                      "datasets-cache", "estimate: " + ctx.cfg["downloads"]["evaluation"]["basis"]))
    return items


def model_item(ctx: Context, model: str) -> Item:
    if Path(model).exists():
        return Item(f"model {model} (local folder)", 0.0, "network", "exact: nothing to download")
    if model in ctx.hub_sizes:
        return Item(f"model {model}", ctx.hub_sizes[model], "hub-cache", "hub: the repository's *.safetensors")
    rec = ctx.cfg["downloads"]["models"].get(model)
    if rec:
        return Item(f"model {model}", float(rec["bytes"]), "hub-cache", rec["basis"])
    return Item(f"model {model}", 2.0 * ctx.facts["base_params"], "hub-cache",
                "estimate: the config's parameters x 2 bytes (bf16)")


def corpus_items(ctx: Context, name: str, lang: str, tokens: float, rec: Mapping[str, Any] | None) -> list[Item]:
    """Network (streamed), or the hub cache + its Arrow copy (read whole), of one language's corpus."""
    from neuronmoe.budget.disk import streamed_slimpajama

    text = tokens * _bpt(ctx, lang)
    if rec is None:
        return [Item(f"{name or 'corpus'} {lang}", text, "network", "estimate: tokens read x text bytes per token")]
    if "documents_per_file" in rec:
        per_doc = float(ctx.cfg["tokens_per_document"].get(name, ctx.cfg["tokens_per_document"]["default"])["tokens"])
        return [streamed_slimpajama(int(tokens / per_doc), 10000, {**rec, "file_bytes": ctx.hub_sizes.get(name, rec["file_bytes"])})]
    if not rec.get("streamed", True):
        size = float(ctx.hub_sizes.get(name, rec["file_bytes"]))
        basis = "hub" if name in ctx.hub_sizes else rec["basis"]
        return [Item(f"{name} {lang} (read whole, kept in the hub cache)", size, "hub-cache", basis),
                Item(f"{name} {lang}: its Arrow copy", size, "datasets-cache", basis, downloaded=False)]
    ratio = float(rec.get("parquet_bytes_per_text_byte", 1.0))
    return [Item(f"{name} {lang} ({tokens / 1e9:.2f}B tokens, streamed)", text * ratio, "network", rec["basis"])]


def output_items(ctx: Context, prep: Any, train: Sequence[dict[str, Any]], runs: Sequence[TrainRun],
                 n_langs: int = 9) -> list[Item]:
    """What the plan writes: prepared data, neuron activations, packed caches, checkpoints and adapters."""
    from neuronmoe.budget.disk import packed_cache_bytes
    from neuronmoe.data.settings import DataSettings
    from neuronmoe.layout import Layout

    items = []
    dc = DataSettings.resolve(prep) if prep is not None else None
    prepared = {x: float(((ctx.data_counts or {}).get(x) or {}).get("train_tokens") or (dc.max_tokens if dc else 0) or 0)
                for run in runs for x in run.languages}
    if (Layout(ctx.output_dir).data / "manifest.json").exists():
        items.append(Item("prepared data (already on disk)", 0.0, "output", "on disk"))
    elif dc is not None:
        text = sum(float(dc.max_tokens or dc.hf_max_tokens) / (1 - dc.heldout_fraction) * _bpt(ctx, x) for x in dc.new_langs)
        text += sum(dc.replay_docs / (1 - dc.heldout_fraction) * 1000 * _bpt(ctx, x) for x in dc.old_langs)
        items.append(Item("prepared data (data/)", text, "output", "estimate: tokens x text bytes per token"))
    sh = ctx.shape  # q, k, v, o, gate, up, down outputs of every layer
    units = sh.layers * (sh.q_dim + 2 * sh.kv_dim + 2 * sh.hidden + 2 * sh.intermediate)
    n_sent = int(getattr(prep, "num_samples", None) or 500) * n_langs
    items.append(Item("neurons/activations (fp16 memmaps)", 2.0 * units * n_sent, "output",
                      "exact for the shape: units x sentences x 2 bytes"))
    seen = set()
    for run, row in zip(runs, train):
        key = (run.stage, run.languages)
        if key not in seen:
            seen.add(key)
            # stage 1 copies every prepared document of its language once (the seeded shuffle), stage 2 its capped mix
            text = sum(max(run.tokens / len(run.languages), prepared[x] if run.stage == 1 else 0) * _bpt(ctx, x)
                       for x in run.languages)
            items.append(Item(f"packed cache stage {run.stage} {'+'.join(run.languages)}",
                              packed_cache_bytes(run.tokens, text), "neuronmoe-cache", "estimate: Arrow copy + 5 bytes/token"))
        done = Layout(ctx.output_dir).marker("train", run.run).exists()  # complete: already on disk
        items.append(Item(f"train/{run.run} ({row['disk']['checkpoints_kept']} checkpoints + adapter)",
                          0.0 if done else float(row["disk"]["bytes"]), "output",
                          "on disk (complete)" if done else "exact for the parameter count"))
    return items


def totals(ctx: Context, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """GPU-hours by kind and in all, wall time, and the paper's figures with the ratios."""
    by = {k: sum(r["gpu_hours"] for r in rows if r["kind"] == k) for k in ("train", "analysis", "evaluate")}
    paper = ctx.cfg["paper"]
    neurons = next((r for r in rows if r["run"] == "neurons"), None)
    out = {"training_gpu_hours": by["train"], "analysis_gpu_hours": by["analysis"], "evaluation_gpu_hours": by["evaluate"],
           "total_gpu_hours": sum(by.values()), "wall_hours": sum(r["wall_hours"] for r in rows),
           "paper_training_gpu_hours": paper["training_gpu_hours"],
           "training_vs_paper": by["train"] / paper["training_gpu_hours"], "paper_gpu": paper["gpu"]}
    if neurons:
        out.update(neuron_analysis_gpu_minutes=60 * neurons["gpu_hours"], paper_neuron_analysis_gpu_minutes=
                   neurons["paper_gpu_minutes"], neuron_analysis_vs_paper=60 * neurons["gpu_hours"] / neurons["paper_gpu_minutes"])
    return out


def plan_budget(cmds: Sequence[Sequence[str]], allocations: Mapping[str, Any], model_config: str, output_dir: str,
                nproc: int, gpu: GPU, hub_sizes: Mapping[str, float] | None = None) -> dict[str, Any]:
    """THE hook of the paper plan: the budget of every command of ``cmds`` (the plan, as lists of arguments) for
    ``nproc`` processes on ``gpu``; ``allocations``: the dry run's allocation table (``paper_allocations``)."""
    from neuronmoe.budget.runs import parse, train_run

    parsed = parse(cmds)
    ctx = make_context(parsed, allocations, model_config, output_dir, nproc, gpu, hub_sizes)
    runs = [train_run(a, nproc, ctx) for a in parsed if a.command == "train"]
    train = [train_row(ctx, r) for r in runs]
    experts = {r.run: list(r.experts) for r in runs}
    rows = [*train, *analysis_rows(ctx, parsed, experts), *eval_rows(ctx, parsed, experts)]
    prep = next((a for a in parsed if a.command == "prepare-data"), None)
    model = next((a.model for a in parsed if getattr(a, "model", None)), "")
    downloads = download_items(ctx, prep, model)
    n_langs = next((r["languages"] for r in rows if r["run"] == "neurons"), 9)
    written = output_items(ctx, prep, train, runs, n_langs)
    filesystems = by_filesystem([*downloads, *written], cache_roots(output_dir))
    return {"gpu": gpu.to_dict(), "nproc": nproc, "rows": rows, "totals": totals(ctx, rows),
            "downloads": [i.to_dict() for i in downloads if i.downloaded],
            "network_bytes": int(sum(i.bytes for i in downloads if i.downloaded)),
            "written": [i.to_dict() for i in written], "filesystems": filesystems,
            "disk_problems": disk_problems(filesystems), "memory_problems": memory_problems(train, nproc)}


def memory_problems(train: Sequence[dict[str, Any]], nproc: int) -> list[str]:
    """One line per training run that does not fit its device, with a split that keeps the effective batch."""
    out = []
    for r in train:
        m = r["memory"]
        if m["fits"]:
            continue
        head = (f"train {r['run']}: needs {m['total_gib']:.1f} GiB per device (static {m['static_gib']:.1f} + activations "
                f"{m['activations_gib']:.1f} at {r['per_device_batch']} x {r['cutoff_len']} tokens) > {m['usable_gib']:.1f} GiB usable")
        p = m.get("proposal")
        if p is None:
            out.append(f"{head}; no per-device batch fits even with gradient checkpointing: use more processes "
                       "(ZeRO-2 splits the optimizer states), a larger card (--gpu) or a smaller allocation")
            continue
        how = (f"TRAIN_BATCH_SIZE={p['per_device_train_batch_size']} GRADIENT_ACCUMULATION_STEPS="
               f"{p['gradient_accumulation_steps']}")
        ck = " with gradient_checkpointing: true (in a TRAIN_CONFIG file)" if p["gradient_checkpointing"] else ""
        out.append(f"{head}; {how}{ck} keeps the effective batch "
                   f"{p['per_device_train_batch_size'] * p['gradient_accumulation_steps'] * nproc} "
                   f"({p['per_device_train_batch_size']} x {p['gradient_accumulation_steps']} x {nproc} processes) and needs "
                   f"{p['bytes'] / GIB:.1f} GiB")
    return out


def check_memory(budget: Mapping[str, Any]) -> None:
    """A :class:`ConfigError` naming every run that does not fit (after the budget is printed)."""
    if budget["memory_problems"]:
        raise ConfigError(f"{len(budget['memory_problems'])} training run(s) do not fit a {budget['gpu']['name']} "
                          f"({budget['gpu']['memory_gib']:g} GiB, {budget['gpu']['memory_source']}): "
                          + "; ".join(budget["memory_problems"]))


def check_disk(budget: Mapping[str, Any]) -> None:
    if budget["disk_problems"]:
        raise ConfigError("the plan does not fit on disk: " + "; ".join(budget["disk_problems"]))


def _num(v: float) -> str:
    return f"{v / 1e9:.2f}B" if v >= 1e9 else f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v:,.0f}"


def format_rows(budget: Mapping[str, Any]) -> list[str]:
    out = ["| run | kind | experts | tokens | steps | GFLOP/token fwd + bwd-act + wgrad | GPU-h | wall h | "
           "GiB/device (static + act.) | fits | disk GB |", "|---|---|---:|---:|---:|---|---:|---:|---|---|---:|"]
    for r in budget["rows"]:
        f, m = r.get("flops_per_token"), r.get("memory")
        flops = (f"{f['forward'] / 1e9:.1f} + {f['backward_activations'] / 1e9:.1f} + {f['weight_gradients'] / 1e9:.1f}"
                 if f else f"{r['flops']['forward'] / max(r['tokens'], 1) / 1e9:.1f} (forward only)")
        mem = (f"{m['total_gib']:.1f} ({m['static_gib']:.1f} + {m['activations_gib']:.1f}; ckpt: "
               f"{m['static_gib'] + m['activations_checkpointing_gib']:.1f})" if m else "-")
        fits = ("yes" if m["fits"] else "**NO**") if m else "-"
        disk = f"{r['disk']['bytes'] / GB:,.1f}" if r.get("disk") else "-"
        est = "" if r["tokens_basis"].startswith(("max_steps", "1 epoch(s) over the packed")) else " (est.)"
        kind = {"train": "training", "evaluate": "evaluation"}.get(r["kind"], r["kind"])  # not " train ": a command's
        out.append(f"| {r['run']} | {kind}{' s' + str(r['stage']) if r.get('stage') else ''} | {r['experts']} | "
                   f"{_num(r['tokens'])}{est} | {r.get('steps', '-')} | {flops} | {r['gpu_hours']:.2f} | "
                   f"{r['wall_hours']:.2f} | {mem} | {fits} | {disk} |")
    return out


def format_budget(budget: Mapping[str, Any]) -> str:
    """The budget as Markdown lines: the run table, the totals beside the paper, downloads and disk."""
    g, t = budget["gpu"], budget["totals"]
    lines = [f"# budget on {g['name']} ({g['peak_bf16_tflops']:g} TFLOP/s dense bf16, {g['memory_gib']:g} GiB; "
             f"MFU {g['mfu']:.2f}, {g['mfu_source'].split(':')[0]}), {budget['nproc']} processes per training run; "
             "(est.) = estimated tokens (see --json: tokens_basis)", *format_rows(budget)]
    lines.append(f"# GPU-hours: training {t['training_gpu_hours']:.1f} (the paper: ~{t['paper_training_gpu_hours']} on "
                 f"{t['paper_gpu']} for all of its training; ratio {t['training_vs_paper']:.2f}), analysis "
                 f"{t['analysis_gpu_hours']:.2f}, evaluation {t['evaluation_gpu_hours']:.1f}; total "
                 f"{t['total_gpu_hours']:.1f} GPU-h, {t['wall_hours']:.1f} h of wall time run after run")
    if "neuron_analysis_gpu_minutes" in t:
        lines.append(f"# neuron analysis: {t['neuron_analysis_gpu_minutes']:.2f} GPU-min of model FLOPs at this MFU "
                     f"(a lower bound: hooks and the AP step are not FLOPs) vs the paper's "
                     f"{t['paper_neuron_analysis_gpu_minutes']:g} (6 per language; ratio {t['neuron_analysis_vs_paper']:.2f})")
    if not g["mfu_source"].startswith("measured"):
        lines.append(f"# MFU {g['mfu_source']}")
    lines.append(f"# downloads: {budget['network_bytes'] / GB:,.1f} GB; "
                 + "; ".join(f"{d['what']} {d['bytes'] / GB:,.2f} GB [{d['basis'].split(':')[0]}]" for d in budget["downloads"]))
    for fs in budget["filesystems"]:
        lines.append(f"# disk: {fs['bytes'] / GB:,.1f} GB on the filesystem of {', '.join(fs['paths'].values())} "
                     f"({fs['free_bytes'] / GB:,.1f} GB free: {'fits' if fs['fits'] else 'DOES NOT FIT'})")
    return "\n".join(lines)


def budget_of(facts: Mapping[str, Any], gpu: GPU, hub: Mapping[str, float] | None = None) -> dict[str, Any]:
    """:func:`plan_budget` of a dry run's facts (its commands, allocations, model config and world size); the
    output root is the commands' ``--output-dir``."""
    import shlex

    cmds = [shlex.split(c) if isinstance(c, str) else list(c) for c in facts["commands"]]
    out_dir = next((c[c.index("--output-dir") + 1] for c in cmds if "--output-dir" in c), "outputs/paper")
    return plan_budget(cmds, facts["allocations"], facts["model_config"], out_dir, int(facts["nproc"]), gpu, hub)


def preflight(facts: Mapping[str, Any], gpu: GPU, client: Any = None,
              environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """``reproduce-paper --check``: access to every repository, sizes from the hub when online, memory and disk
    against this machine. Returns (the check's record, problems)."""
    import shlex

    from neuronmoe.budget import budget_config
    from neuronmoe.budget.access import OFFLINE, HfHubClient, access_problems, check_access, hub_sizes, offline_env, plan_repositories
    from neuronmoe.budget.runs import parse
    from neuronmoe.config import load_yaml

    parsed = parse([shlex.split(c) for c in facts["commands"]])
    repos = plan_repositories(parsed, (load_yaml("eval_suites").get("datasets") or {}).keys())
    if client is None and not offline_env(environ):
        client = HfHubClient()
    access = check_access(repos, client, environ)
    online = any(r["status"] != OFFLINE for r in access)
    sizes = hub_sizes(repos, budget_config(), client) if online else {}
    budget = budget_of(facts, gpu, sizes)
    problems = [*access_problems(access), *budget["memory_problems"], *budget["disk_problems"]]
    return {"access": access, "online": online, "hub_sizes": sizes, "budget": budget}, problems


def format_access(access: Sequence[Mapping[str, str]]) -> list[str]:
    if access and all(r["status"] == "not checked" for r in access):
        return [f"# access: NOT CHECKED ({access[0]['what_to_do']}); rerun --check on a machine with network"]
    return [f"# access {r['status']:>9}: {r['type']} {r['repo']} ({r['used_for']})"
            + (f": {r['what_to_do']}" if r["what_to_do"] else "") for r in access]
