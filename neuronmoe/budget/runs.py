"""What each command of a plan will run, read as the commands run it: the CLI's own parser (environment defaults
included) and the trainer's resolver for the plan's world size (the same reading as
:mod:`neuronmoe.pipeline.paper_check`). This module is the only place that knows the commands' flags; everything
else of :mod:`neuronmoe.budget` works on the :class:`TrainRun` it returns."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from neuronmoe.errors import ConfigError


@dataclass(frozen=True)
class TrainRun:
    """One training run of the plan, with everything its cost depends on."""

    run: str
    stage: int
    allocation: str
    experts: tuple[int, ...]
    experts_source: str
    train_mode: str
    top_k: int
    cutoff_len: int
    per_device: int
    accumulation: int
    world: int
    steps: int
    tokens: int
    tokens_basis: str
    layout: str  #: "deepspeed" or "torch"
    zero_stage: int
    reduce_bucket: int
    checkpointing: bool
    save_steps: int
    save_total_limit: int | None
    languages: tuple[str, ...] = field(default_factory=tuple)
    bf16: bool = True

    @property
    def effective(self) -> int:
        return self.per_device * self.accumulation * self.world


def parse(cmds: Sequence[Sequence[str]]) -> list[Any]:
    from neuronmoe.pipeline.paper_check import parse_commands

    return parse_commands(cmds)


def resolved_training(a: Any, nproc: int) -> Any:
    """The ``TrainSettings`` of a parsed ``train`` command at ``nproc`` processes (``.config()``: the profile's
    settings; ``.batch``: the batch record)."""
    from neuronmoe.training.settings import TrainSettings

    return TrainSettings.resolve(a, world_size=nproc)


def deepspeed_facts(spec: str | None) -> tuple[str, int, int]:
    """(layout, ZeRO stage, reduce bucket elements) of ``--deepspeed`` (``zero2`` = the shipped config, a path, or
    none: plain torch)."""
    from neuronmoe.config import CONFIG_DIR

    if not spec or str(spec).lower() in ("none", "null", "false"):
        return "torch", 0, 0
    path = CONFIG_DIR / "deepspeed_zero2.json" if spec == "zero2" else Path(spec)
    try:
        zero = json.loads(path.read_text()).get("zero_optimization", {})
    except (OSError, ValueError) as e:
        raise ConfigError(f"--deepspeed {spec}: cannot read {path} ({e})") from None
    bucket = zero.get("reduce_bucket_size", 500_000_000)
    return "deepspeed", int(zero.get("stage", 0)), int(bucket) if isinstance(bucket, (int, float)) else 500_000_000


def language_sources(parsed: Sequence[Any]) -> dict[str, str]:
    """``{language or "*": dataset name}`` of the plan's ``prepare-data --source`` (hf: prefix and config dropped)."""
    from neuronmoe.data.lang_sources import parse_source

    a = next((x for x in parsed if x.command == "prepare-data"), None)
    if a is None or not a.source:
        return {}
    return {k: str(r["spec"]).removeprefix("hf:").split(":")[0] for k, r in parse_source(a.source).items()}


def doc_tokens(lang: str, role: str, sources: Mapping[str, str], data_counts: Mapping[str, Any] | None,
               cfg: Mapping[str, Any]) -> tuple[float, str]:
    """Average tokens per document of ``lang``'s training (new) or replay (old) documents, and what it rests on."""
    c = (data_counts or {}).get(lang) or {}
    key = "train" if role == "new" else "replay"
    if c.get(f"{key}_docs"):
        return c[f"{key}_tokens"] / c[f"{key}_docs"], "the prepared documents' counts (data/manifest.json)"
    table = cfg["tokens_per_document"]
    rec = table.get(sources.get(lang) or sources.get("*") or "") or table["default"]
    return float(rec["tokens"]), f"estimate, no data prepared yet: {rec['basis']}"


def packed_tokens(run_dir: Path) -> int | None:
    """Tokens of a run's packed mix when its data manifest exists (``train/<run>/data_manifest.json``)."""
    p = run_dir / "data_manifest.json"
    if not p.exists():
        return None
    counts = (json.loads(p.read_text()).get("packed") or {}).get("counts") or {}
    return int(counts["packed_tokens"]) if "packed_tokens" in counts else None


def epoch_tokens(cfg: Mapping[str, Any], sources: Mapping[str, str], data_counts: Mapping[str, Any] | None,
                 budget_cfg: Mapping[str, Any]) -> tuple[int, str]:
    """Tokens of one epoch over a stage-2 mix, estimated from the document caps and tokens per document."""
    total, bases = 0.0, set()
    for lang, cap, role in [*((x, cfg["max_samples"], "new") for x in cfg["languages"]),
                            *((x, cfg["replay_max_samples"], "old") for x in cfg["replay_languages"])]:
        per_doc, basis = doc_tokens(lang, role, sources, data_counts, budget_cfg)
        have = ((data_counts or {}).get(lang) or {}).get("train_docs" if role == "new" else "replay_docs")
        docs = have if cap is None else (cap if have is None else min(cap, have))
        if docs is None:
            raise ConfigError(f"stage {cfg['stage']}: {lang} has no document cap (max_samples) and no prepared data: "
                              "its tokens cannot be estimated; prepare the data first or set max_samples")
        total += docs * per_doc
        bases.add(basis)
    return int(total), "estimate from document counts x tokens per document (" + "; ".join(sorted(bases)) + ")"


def steps_and_tokens(cfg: Mapping[str, Any], batch: Mapping[str, Any], run_dir: Path, sources: Mapping[str, str],
                     data_counts: Mapping[str, Any] | None, budget_cfg: Mapping[str, Any]) -> tuple[int, int, str]:
    """(optimizer steps, tokens seen, basis): from max_steps when set, else epochs over the packed mix (read when it
    exists, else estimated)."""
    per_step = int(batch["effective_batch_size"]) * int(cfg["cutoff_len"])
    if cfg["max_steps"] > 0:
        return int(cfg["max_steps"]), int(cfg["max_steps"]) * per_step, "max_steps x effective batch x packed length"
    mix = packed_tokens(run_dir)
    basis = f"the packed mix ({run_dir / 'data_manifest.json'})"
    if mix is None:
        mix, basis = epoch_tokens(cfg, sources, data_counts, budget_cfg)
    blocks = mix // int(cfg["cutoff_len"])
    steps = math.ceil(math.ceil(blocks / int(batch["effective_batch_size"])) * float(cfg["num_train_epochs"]))
    return steps, steps * per_step, f"{cfg['num_train_epochs']:g} epoch(s) over {basis}"


def allocation_experts(name: str, run: str, output_dir: Path, allocations: Mapping[str, Any],
                       model_config: str) -> tuple[list[int], str]:
    """Experts per layer a ``train --allocation name`` will train, and where they come from: the computed
    allocation when it is already on disk, the dry run's allocation table (published or from published counts), a
    shipped allocation of that name, else an assumption (the paper's Greek allocation of the same kind)."""
    from neuronmoe.allocation import load_allocation, shipped_allocations
    from neuronmoe.layout import Layout
    from neuronmoe.pipeline.paper import published_allocation

    path = Layout(output_dir).allocation(name)
    if path.exists():
        return list(load_allocation(str(path)).experts_per_layer), f"computed: {path}"
    for key, a in allocations.items():
        if a.get("experts_per_layer") and name in (key, a.get("shipped")):
            return list(a["experts_per_layer"]), a["source"]
    if name in shipped_allocations():
        return list(load_allocation(name).experts_per_layer), f"shipped {name}"
    kind = run.rsplit("-s", 1)[0].rpartition("-")[0]
    proxy = published_allocation(model_config, kind, "el") or published_allocation(model_config, "neuronmoe", "el")
    if proxy:
        e = list(load_allocation(proxy).experts_per_layer)
        return e, f"assumed: computed at run time; budgeted as {proxy} ({sum(e)} experts, the paper's Greek one)"
    from neuronmoe.models import load_config, num_layers

    e = [2] * num_layers(load_config(model_config))
    return e, f"assumed: computed at run time and the paper publishes no allocation of {model_config}; budgeted as 2 per layer"


def train_run(a: Any, nproc: int, ctx: Any) -> TrainRun:
    """The :class:`TrainRun` of a parsed ``train`` command (``ctx``: :class:`neuronmoe.budget.plan.Context`)."""
    from neuronmoe.layout import Layout

    s = resolved_training(a, nproc)
    cfg, batch, run = s.config(), s.batch, s.run_name or s.default_run_name()
    experts, source = allocation_experts(s.allocation, run, ctx.output_dir, ctx.allocations, ctx.model_config)
    steps, tokens, basis = steps_and_tokens(cfg, batch, Layout(ctx.output_dir).train_run(run), ctx.sources,
                                            ctx.data_counts, ctx.cfg)
    layout, zero, bucket = deepspeed_facts(cfg.get("deepspeed"))
    return TrainRun(run=run, stage=int(s.stage), allocation=s.allocation, experts=tuple(experts),
                    experts_source=source, train_mode=cfg["train_mode"], top_k=int(cfg["top_k"]),
                    cutoff_len=int(cfg["cutoff_len"]), per_device=int(batch["per_device_train_batch_size"]),
                    accumulation=int(batch["gradient_accumulation_steps"]), world=nproc, steps=steps, tokens=tokens,
                    tokens_basis=basis, layout=layout, zero_stage=zero, reduce_bucket=bucket,
                    checkpointing=bool(cfg["gradient_checkpointing"]), save_steps=int(cfg["save_steps"]),
                    save_total_limit=cfg.get("save_total_limit"),
                    languages=tuple([*cfg["languages"], *cfg.get("replay_languages", [])]), bf16=cfg["bf16"] is not False)
