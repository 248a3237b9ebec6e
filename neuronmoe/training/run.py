"""``neuronmoe train``: one stage of the two-stage MoE training, as a recipe of named steps.

:func:`train` reads top to bottom: :func:`plan_run` (settings, run folder policy, model, allocation or
stage-1 adapter, tokenizer and data: every input checked before the first step, nothing written),
:func:`trainer_arguments` (from :data:`TRAINER_KEYS`; initialises the distributed state),
:func:`build_data` (blocks built once under a file lock, memory-mapped by every rank), :func:`write_run_inputs`
(resolved config, allocation, data manifest), :func:`build_model` (stage switches through the MoE
model's own methods), :func:`fit` (:class:`~neuronmoe.training.trainer.MoETrainer`, checkpoints every
``save_steps``; ``--resume`` continues from the last one) and :func:`finalise` (adapter with a model
card, held-out perplexity, ``manifest.json`` last).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from neuronmoe.errors import InputError
from neuronmoe.layout import Layout, check_removable, remove_run_folder
from neuronmoe.training.settings import TrainSettings, default_run_name

log = logging.getLogger("neuronmoe.training")

SHIPPED_DEEPSPEED = {"zero2": "deepspeed_zero2.json"}

#: config keys passed to ``transformers.TrainingArguments`` under the same name
TRAINER_KEYS = (
    "optim", "learning_rate", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "lr_scheduler_type",
    "warmup_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs",
    "max_grad_norm", "bf16", "seed", "gradient_checkpointing", "dataloader_num_workers", "logging_steps",
    "save_steps", "save_total_limit",
)


class TrainingInputError(InputError):
    """A bad input found before training starts."""


@dataclass
class RunPlan:
    """Everything :func:`plan_run` resolved and checked; the later steps only read it."""

    opts: TrainSettings
    cfg: dict[str, Any]
    provenance: dict[str, Any]
    profile: str
    run_name: str
    run_dir: Path
    data_dir: Path
    resume_from: Path | None = None
    complete: dict[str, Any] | None = None  # the manifest of a run that is already complete (--resume)
    model_path: str = ""
    model_fp: dict[str, Any] = field(default_factory=dict)
    alloc: dict[str, Any] = field(default_factory=dict)  # written as allocation.json
    apath: Path | None = None  # the allocation file (stage 1) or the adapter config (stage 2)
    init_adapter: Path | None = None
    experts_per_layer: list[int] = field(default_factory=list)
    tokenizer: Any = None
    tokenizer_fp: str = ""
    data_manifest: dict[str, Any] | None = None
    sources: list[Any] = field(default_factory=list)
    cache_dir: str | None = None  # the tokenized-data cache (default $NEURONMOE_CACHE/tokenized)
    callbacks: list[Any] = field(default_factory=list)  # extra TrainerCallbacks (tests)
    input_hashes: dict[str, str] = field(default_factory=dict)  # {data file or "allocation <path>": sha256}


# ---------------------------------------------------------------------------------------------
# the recipe
# ---------------------------------------------------------------------------------------------
def train(opts: TrainSettings, *, cache_dir: str | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run one training stage; returns the run's report (``{"run_dir", "skipped": True, ...}`` when complete)."""
    from neuronmoe.utils.lock import output_lock

    t_start = time.perf_counter()
    plan = plan_run(opts)
    plan.cache_dir, plan.callbacks = cache_dir, list(callbacks)
    with output_lock(plan.run_dir, f"run folder {plan.run_dir}"):  # a second run into it stops here
        if plan.complete is not None:
            log.info("run %s is already complete (manifest.json present); nothing to do", plan.run_dir)
            return {"run_dir": str(plan.run_dir), "skipped": True, **plan.complete}
        args, state = trainer_arguments(plan)
        packed = build_data(plan, state)
        write_run_inputs(plan, packed, state)
        model, summary = build_model(plan)
        trainer, result, train_s = fit(plan, model, args, packed)
        report = finalise(plan, trainer, result, packed, summary, state, train_s, t_start)
    return {"run_dir": str(plan.run_dir), **report}


# ---------------------------------------------------------------------------------------------
# step 1: plan (read-only: every rank decides the same)
# ---------------------------------------------------------------------------------------------
def plan_run(opts: TrainSettings) -> RunPlan:
    """Settings, run folder policy, model, allocation/adapter, tokenizer and data, all checked."""
    from neuronmoe.utils.device import check_device

    check_device(opts.device)  # --device cuda without CUDA: one line, not a silent CPU run
    plan = resolve_run(opts)
    check_run_folder(plan)
    if plan.complete is not None:
        return plan
    check_model(plan)
    if opts.stage == 1:
        load_stage1_allocation(plan)
    else:
        load_stage1_adapter(plan)
    check_data(plan)
    return plan


def resolve_run(opts: TrainSettings) -> RunPlan:
    """The run's name and folders from the resolved settings (:meth:`TrainSettings.resolve`)."""
    cfg, prov, profile = opts.config(), opts.record(), opts.resolved_profile
    out_root = Path(opts.output_dir)
    run_name = opts.run_name or default_run_name(opts.stage, opts.allocation)
    run_dir = Layout(out_root).train_run(run_name, "--run-name (RUN_NAME)")  # the one rule for names in paths
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_name):
        raise TrainingInputError(f"--run-name {run_name!r}: use letters, digits, '.', '_' and '-' only")
    return RunPlan(opts=opts, cfg=cfg, provenance=prov, profile=profile, run_name=run_name,
                   run_dir=run_dir,
                   data_dir=Path(opts.data_dir) if opts.data_dir else out_root / "data")


def check_run_folder(plan: RunPlan) -> None:
    """An existing run folder needs --resume (same settings) or --overwrite; sets resume_from / complete."""
    opts, run_dir = plan.opts, plan.run_dir
    if opts.resume and opts.overwrite:
        raise TrainingInputError("--resume and --overwrite exclude each other")
    exists = holds_progress(run_dir)
    if opts.overwrite:
        check_removable(run_dir, run_dir.parent)  # only a run folder of ours, inside train/, never a link
    if exists and not (opts.resume or opts.overwrite):
        raise FileExistsError(
            f"run folder {run_dir} exists; pass --resume to continue it (or to skip it when complete), "
            f"--overwrite to start again, or --run-name NAME for a new run"
        )
    if not (exists and opts.resume):
        return
    saved = run_dir / "resolved_config.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text())
        old_cfg = comparable(old.get("config", old) if isinstance(old, dict) else {})
        new_cfg = comparable(plan.cfg)
        if old_cfg != new_cfg:
            diff = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
            raise TrainingInputError(
                f"--resume {run_dir}: the configuration differs from the saved run in {', '.join(diff)}; "
                f"resume with the same settings, or use --overwrite / --run-name NAME"
            )
    if (run_dir / "manifest.json").exists() and (run_dir / "adapter" / "adapter_config.json").exists():
        plan.complete = json.loads((run_dir / "manifest.json").read_text())
        return
    plan.resume_from = last_checkpoint(run_dir)


def check_model(plan: RunPlan) -> None:
    """The model's path and fingerprint; the packed block must fit its context."""
    from neuronmoe.models import load_config, resolve_model
    from neuronmoe.models.arch import text_config
    from neuronmoe.utils.fingerprint import config_fingerprint

    plan.model_path = resolve_model(plan.opts.model)
    mcfg = load_config(plan.opts.model)
    plan.model_fp = config_fingerprint(mcfg)
    max_pos = getattr(text_config(mcfg), "max_position_embeddings", None)
    if max_pos and plan.cfg["cutoff_len"] > max_pos:
        raise TrainingInputError(
            f"cutoff_len {plan.cfg['cutoff_len']} is longer than the model's context (max_position_embeddings={max_pos})"
        )


def load_stage1_allocation(plan: RunPlan) -> None:
    """Stage 1: the allocation (a name under $OUTPUT_DIR/allocation, a shipped one, or a path) fits the model."""
    from neuronmoe.allocation.store import load_allocation

    a = load_allocation(plan.opts.allocation, output_dir=plan.opts.output_dir, flag="--allocation")
    a.validate_for(plan.model_fp)
    if max(a.experts_per_layer) < 2:
        raise TrainingInputError(f"{a.path}: every layer has 1 expert, nothing to train")
    plan.alloc, plan.apath, plan.experts_per_layer = a.data, a.path, list(a.experts_per_layer)


def load_stage1_adapter(plan: RunPlan) -> None:
    """Stage 2: the stage-1 adapter exists and was trained on this base model."""
    from neuronmoe.utils.checks import check_fits_base

    opts = plan.opts
    adapter = (Path(opts.init_adapter) if opts.init_adapter
               else Path(opts.output_dir) / "train" / default_run_name(1, opts.allocation) / "adapter")
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise TrainingInputError(
            f"stage 2 needs a stage-1 adapter: {cfg_path} not found (run `neuronmoe train --stage 1` first "
            f"or pass --init-adapter)"
        )
    from neuronmoe.models.adapter import check_adapter_fits, check_adapter_folder

    acfg = check_adapter_folder(adapter, "--init-adapter")  # weights present, whole, as the stage-1 run wrote them
    epl = acfg.get("experts_per_layer") or []
    check_fits_base(epl, acfg.get("base_model_fingerprint"), plan.model_fp, f"stage-1 adapter {adapter}")
    check_adapter_fits(adapter, plan.model_fp, "--init-adapter")
    plan.init_adapter, plan.apath, plan.experts_per_layer = adapter, cfg_path, list(epl)
    plan.alloc = {"experts_per_layer": epl, "num_layers": len(epl),
                  "base_model_fingerprint": acfg.get("base_model_fingerprint"),
                  "source": str(adapter), "allocation_source": acfg.get("allocation_source")}


def check_data(plan: RunPlan) -> None:
    """The tokenizer, the data manifest (same tokenizer), every data source present, the DeepSpeed config."""
    from neuronmoe.models import load_tokenizer
    from neuronmoe.utils.checks import check_data_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    plan.tokenizer = load_tokenizer(plan.opts.model)
    plan.tokenizer_fp = tokenizer_fingerprint(plan.tokenizer)
    plan.data_manifest = check_data_tokenizer(plan.data_dir, plan.tokenizer_fp, plan.opts.model)
    plan.sources = data_sources(plan.cfg, plan.data_dir)
    plan.input_hashes = input_hashes(plan)
    check_resume_inputs(plan)
    deepspeed_config(plan.cfg["deepspeed"])


def input_hashes(plan: RunPlan) -> dict[str, str]:
    """The sha256 of everything the run reads (training and held-out data, each checked against the data
    manifest; the allocation or the stage-1 adapter): recorded in ``data_manifest.json``, compared on --resume."""
    from neuronmoe.utils.checks import verify_inputs
    from neuronmoe.utils.io import sha256_file

    paths = [Path(s.spec) for s in plan.sources if not s.is_hf]
    paths += [plan.data_dir / "heldout" / f"{lang}.jsonl" for lang in heldout_languages(plan.cfg, plan.data_dir)]
    hashes = verify_inputs(plan.data_dir, paths, plan.data_manifest, what="training data")
    if plan.opts.stage == 1 and plan.apath is not None:
        hashes[f"allocation {plan.apath}"] = sha256_file(plan.apath)
    elif plan.init_adapter is not None and (plan.init_adapter / "adapter_model.safetensors").is_file():
        hashes[f"init adapter {plan.init_adapter}"] = sha256_file(plan.init_adapter / "adapter_model.safetensors")
    return hashes


def check_resume_inputs(plan: RunPlan) -> None:
    """``--resume``: every input must be what the run started with (a resumed run that trained on other data
    would record only the new hashes); the first that changed is named."""
    from neuronmoe.utils.checks import InputChangedError
    from neuronmoe.utils.io import read_json

    saved = plan.run_dir / "data_manifest.json"
    if plan.resume_from is None or not saved.is_file():
        return
    rec = read_json(saved)
    started = rec.get("inputs") if isinstance(rec, dict) else None
    if not isinstance(started, dict):
        log.warning("--resume: %s records no input hashes (a run of an older version); inputs not compared", saved)
        return
    for key in sorted(set(started) | set(plan.input_hashes)):
        old, new = started.get(key), plan.input_hashes.get(key)
        if old != new:
            where = key if key.startswith(("allocation ", "init adapter ")) or Path(key).is_absolute() \
                else plan.data_dir / key
            raise InputChangedError(
                f"--resume {plan.run_dir}: {where} "
                + (f"changed since the run started (sha256 {new[:12]}, the run started with {old[:12]})"
                   if old and new else "is new since the run started" if new else "is no longer read")
                + "; restore the input the run started with, or start again with --overwrite")


# ---------------------------------------------------------------------------------------------
# steps 2-4: trainer arguments, data, the run's inputs
# ---------------------------------------------------------------------------------------------
def trainer_arguments(plan: RunPlan) -> tuple[Any, Any]:
    """``TrainingArguments`` from :data:`TRAINER_KEYS` (+ ``trainer_extra``) and the distributed state."""
    import torch
    from accelerate import PartialState
    from transformers import TrainingArguments

    cfg = plan.cfg
    ds_cfg = deepspeed_config(cfg["deepspeed"])
    targs = {k: cfg[k] for k in TRAINER_KEYS}
    targs.update(output_dir=str(plan.run_dir), data_seed=cfg["seed"], save_strategy="steps",
                 report_to=report_to(cfg["report_to"]), deepspeed=ds_cfg, remove_unused_columns=False,
                 save_only_model=False, disable_tqdm=False)
    if plan.opts.device == "cpu" or not torch.cuda.is_available():
        targs["use_cpu"] = True
        if ds_cfg is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            targs["ddp_backend"] = "gloo"
    targs.update(cfg["trainer_extra"])
    try:
        args = TrainingArguments(**targs)
    except TypeError as e:
        raise TrainingInputError(f"trainer_extra: {e}") from None
    state = PartialState()
    batch = plan.provenance["batch"]
    if state.num_processes != batch["world_size"]:
        raise TrainingInputError(
            f"the batch was derived for world size {batch['world_size']} (WORLD_SIZE) but {state.num_processes} "
            f"processes run; launch with torchrun/accelerate/deepspeed so that WORLD_SIZE is set")
    if state.is_main_process:
        log.info("batch: %d per device x %d accumulation x %d processes = effective batch %d%s",
                 batch["per_device_train_batch_size"], batch["gradient_accumulation_steps"], batch["world_size"],
                 batch["effective_batch_size"],
                 f" (OVERRIDES the profile's {batch['contract']})" if batch["override"] else
                 f" (profile: {batch['contract']})" if batch["contract"] else "")
    state.wait_for_everyone()
    return args, state


def build_data(plan: RunPlan, state: Any) -> Any:
    """Tokenise and pack the sources into memory-mapped blocks, stopping at the token budget.

    Every rank calls it: the first to take the cache entry's file lock builds, the others wait on the lock
    and then map the same files.
    """
    from neuronmoe.training.data import build_packed, token_budget

    cfg = plan.cfg
    packed = build_packed(plan.sources, plan.tokenizer, cfg["cutoff_len"], cfg["seed"],
                          cache_dir=plan.cache_dir, use_cache=plan.opts.use_cache,
                          max_tokens=token_budget(cfg, state.num_processes))
    log.info("training data: %d blocks x %d tokens (%s)", len(packed), cfg["cutoff_len"],
             ", ".join(f"{k}: {v}" for k, v in packed.meta["counts"]["tokens_per_lang"].items()))
    return packed


def write_run_inputs(plan: RunPlan, packed: Any, state: Any) -> None:
    """The run folder (fresh, or metrics cut at the resumed step), resolved config, allocation, data manifest."""
    from neuronmoe.training.trainer import truncate_metrics
    from neuronmoe.utils.io import atomic_write_json, atomic_write_text

    run_dir = plan.run_dir
    if state.is_main_process:
        if plan.opts.overwrite:
            remove_run_folder(run_dir, run_dir.parent)
        run_dir.mkdir(parents=True, exist_ok=True)
        if plan.resume_from is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        else:
            truncate_metrics(run_dir / "metrics.jsonl", int(plan.resume_from.name.split("-")[1]))
        atomic_write_text(run_dir / "resolved_config.yaml", yaml.safe_dump(
            {"config": plan.cfg, "provenance": plan.provenance, "stage": plan.opts.stage, "model": plan.opts.model,
             "profile": plan.profile}, sort_keys=False, allow_unicode=True))
        atomic_write_json(run_dir / "allocation.json", plan.alloc)
        atomic_write_json(run_dir / "data_manifest.json", {
            "data_dir": str(plan.data_dir), "data_manifest": plan.data_manifest, "packed": dict(packed.meta),
            "inputs": plan.input_hashes})
    state.wait_for_everyone()


# ---------------------------------------------------------------------------------------------
# step 5: the model
# ---------------------------------------------------------------------------------------------
def build_model(plan: RunPlan) -> tuple[Any, dict[str, Any]]:
    """Base + MoE adapter (stage 1: new from the allocation; stage 2: the stage-1 adapter), then the
    stage switches (train mode, top-k, loss coefficients) through :class:`~neuronmoe.moe.MoEModel`."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    import neuronmoe  # noqa: F401 - registers the PEFT method
    from neuronmoe.models.adapter import load_adapter
    from neuronmoe.models.arch import validate_model
    from neuronmoe.models.fastpath import contiguous_output_head
    from neuronmoe.moe import MoEConfig

    cfg = plan.cfg
    set_seed(cfg["seed"])
    base = AutoModelForCausalLM.from_pretrained(plan.model_path, dtype=torch.float32)
    validate_model(base)
    contiguous_output_head(base)
    if plan.opts.stage == 1:
        moe_cfg = MoEConfig.from_allocation({**plan.alloc, "experts_per_layer": plan.experts_per_layer},
                                            top_k=cfg["top_k"], train_mode=cfg["train_mode"],
                                            base_model_fingerprint=plan.model_fp)
        moe_cfg.allocation_source = str(plan.apath)
        model = get_peft_model(base, moe_cfg)
    else:
        model = load_adapter(base, plan.init_adapter, "--init-adapter", is_trainable=True)
    configure_stage(model, cfg)
    if cfg["gradient_checkpointing"]:
        model.enable_input_require_grads()
    summary = trainable_summary(model)
    log.info("trainable parameters: %s of %s (%s)", f"{summary['trainable']:,}", f"{summary['total']:,}",
             ", ".join(f"{k} {v:,}" for k, v in summary["by_group"].items()))
    if summary["trainable"] == 0:
        raise TrainingInputError("no trainable parameters (allocation gives every layer 1 expert?)")
    return model, summary


def configure_stage(model: Any, cfg: dict[str, Any]) -> None:
    """The stage's train mode, top-k and loss weights, set on the MoE model (``model.base_model``)."""
    moe = model.base_model
    moe.set_train_mode(cfg["train_mode"])
    moe.set_top_k(cfg["top_k"])
    moe.set_loss_coefs(cfg["aux_loss_coef"], cfg["lpr_loss_coef"])
    moe.set_loss_options(cfg["aux_loss_form"], cfg["lpr_input"])


# ---------------------------------------------------------------------------------------------
# steps 6-7: train, finalise
# ---------------------------------------------------------------------------------------------
def fit(plan: RunPlan, model: Any, args: Any, packed: Any) -> tuple[Any, Any, float]:
    """Train with :class:`MoETrainer` (from ``resume_from`` when resuming); returns (trainer, result, seconds)."""
    from neuronmoe.training.data import PackedCollator, PackedDataset
    from neuronmoe.training.trainer import MoETrainer, SkipLastCheckpoint

    tok = plan.tokenizer
    prev_tb = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(plan.run_dir / "tensorboard")  # read by the TensorBoard callback
    try:
        trainer = MoETrainer(
            model=model, args=args, train_dataset=PackedDataset(packed),
            data_collator=PackedCollator(tok.pad_token_id if tok.pad_token_id is not None else 0),
            metrics_path=plan.run_dir / "metrics.jsonl",
            callbacks=list(plan.callbacks) + ([] if plan.cfg["save_last"] else [SkipLastCheckpoint()]),
        )
    finally:
        if prev_tb is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = prev_tb
    resume = plan.resume_from
    if resume is not None:
        log.info("resuming from %s", resume)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer, result, time.perf_counter() - t0


def finalise(plan: RunPlan, trainer: Any, result: Any, packed: Any, summary: dict[str, Any], state: Any,
             train_s: float, t_start: float) -> dict[str, Any]:
    """Save the adapter (all ranks: ZeRO gathers), then on the main process: held-out perplexity, the model
    card, the adapter folder put in place, ``manifest.json`` last."""
    from neuronmoe.training.model_card import model_card
    from neuronmoe.utils.io import atomic_write_text, follow_umask_tree

    tmp_adapter = plan.run_dir / ".adapter.tmp"
    if state.is_main_process and tmp_adapter.exists():
        shutil.rmtree(tmp_adapter)
    state.wait_for_everyone()
    trainer.save_model(str(tmp_adapter))
    state.wait_for_everyone()
    report: dict[str, Any] = {}
    if state.is_main_process:
        ppl = heldout_perplexity(trainer.accelerator.unwrap_model(trainer.model), plan.tokenizer, plan.cfg, plan.data_dir,
                                 Layout(plan.run_dir.parent.parent).dense_heldout, plan.model_path)
        check_finite_perplexity(ppl, plan.run_dir)
        report = run_report(plan, summary, trainer, result, state.num_processes, train_s, ppl)
        atomic_write_text(tmp_adapter / "README.md", model_card(plan.cfg, report, packed.meta, plan.alloc))
        follow_umask_tree(tmp_adapter)  # save_pretrained writes adapter_model.safetensors 0600
        final = plan.run_dir / "adapter"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_adapter, final)
        write_run_manifest(plan, report, time.perf_counter() - t_start)
        log.info("stage %d done in %.1f s (train %.1f s): %s", plan.opts.stage, time.perf_counter() - t_start, train_s,
                 ", ".join(f"{lang} ppl {v['perplexity']:.2f}"
                           + (f" (dense {v['dense_perplexity']:.2f})" if "dense_perplexity" in v else "")
                           for lang, v in ppl.items()))
    state.wait_for_everyone()
    return report


def run_report(plan: RunPlan, summary: dict[str, Any], trainer: Any, result: Any, world_size: int,
               train_s: float, ppl: dict[str, Any]) -> dict[str, Any]:
    cfg, epl, step = plan.cfg, plan.experts_per_layer, trainer.state.global_step
    batch = batch_record(plan.provenance["batch"], step, cfg["cutoff_len"], world_size)
    return {
        "batch": batch,
        "run": plan.run_name, "stage": plan.opts.stage, "model": plan.opts.model, "model_path": plan.model_path,
        "base_model_fingerprint": plan.model_fp, "tokenizer_fingerprint": plan.tokenizer_fp,
        "experts_per_layer": epl, "total_experts": int(sum(epl)), "new_experts": int(sum(e - 1 for e in epl)),
        "trainable_parameters": summary, "train_seconds": round(train_s, 2),
        "global_step": step, "train_loss": float(result.training_loss),
        "train_tokens": batch["tokens_seen"],
        "world_size": world_size, "resumed_from": str(plan.resume_from) if plan.resume_from else None,
        "perplexity": ppl, "profile": plan.profile,
    }


# ---------------------------------------------------------------------------------------------
# small helpers (each testable alone)
# ---------------------------------------------------------------------------------------------
def batch_record(batch: dict[str, Any], steps: int, cutoff_len: int, world_size: int) -> dict[str, Any]:
    """What the run manifest records about the batch: world size, per-device batch, accumulation, effective
    batch (and the profile's contract, override or not), optimizer steps and tokens seen."""
    eff = batch["per_device_train_batch_size"] * batch["gradient_accumulation_steps"] * world_size
    return {"world_size": world_size, "per_device_train_batch_size": batch["per_device_train_batch_size"],
            "gradient_accumulation_steps": batch["gradient_accumulation_steps"], "effective_batch_size": eff,
            "effective_batch_contract": batch["contract"], "override": batch["contract"] is not None and eff != batch["contract"],
            "derived": batch["derived"], "steps": int(steps), "tokens_seen": int(steps * eff * cutoff_len)}


def holds_progress(run_dir: Path) -> bool:
    """True when ``run_dir`` holds something a new run would lose: a checkpoint, an adapter or a manifest.
    A run that failed before its first checkpoint left only its inputs (resolved config, allocation, data
    manifest, metrics of the lost steps): a rerun rewrites them, nothing blocks it."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        return True
    if not run_dir.is_dir():
        return False
    return any((run_dir / n).exists() for n in ("manifest.json", "adapter")) or any(run_dir.glob("checkpoint-*"))


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that :func:`~neuronmoe.utils.checks.check_checkpoint` finds complete and readable;
    a damaged newer one is passed over with a warning; checkpoints that are all damaged stop the run (before
    anything in the run folder is touched)."""
    from neuronmoe.utils.checks import CheckpointError, check_checkpoint

    found = sorted(((int(m.group(1)), p) for p in run_dir.glob("checkpoint-*")  # an incomplete one too: named
                    if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()), key=lambda x: x[0], reverse=True)
    damaged = []
    for _step, p in found:
        try:
            check_checkpoint(p)
        except CheckpointError as e:
            log.warning("--resume: %s; trying the previous checkpoint", e)
            damaged.append(str(e))
            continue
        if damaged:
            log.warning("--resume: continuing from %s instead of the damaged newer checkpoint(s)", p.name)
        return p
    if damaged:
        raise TrainingInputError(f"--resume {run_dir}: no usable checkpoint ({damaged[0]}); "
                                 f"restore it, or start again with --overwrite")
    return None


def data_sources(cfg: dict[str, Any], data_dir: Path) -> list[Any]:
    """Sources of a stage: new languages (flag 0) from train/, replay languages (flag 1) from replay/."""
    from neuronmoe.training.data import NEW, OLD, Source

    files = cfg.get("train_files") or {}
    out = []
    for lang in cfg["languages"]:
        spec = str(files.get(lang) or data_dir / "train" / f"{lang}.jsonl")
        out.append(Source(spec, lang, NEW, cfg["max_samples"], cfg["hf_split"]))
    for lang in cfg["replay_languages"]:
        spec = str(files.get(lang) or data_dir / "replay" / f"{lang}.jsonl")
        out.append(Source(spec, lang, OLD, cfg["replay_max_samples"], cfg["hf_split"]))
    for s in out:
        if not s.is_hf and not Path(s.spec).is_file():
            kind = "replay" if s.flag else "train"
            have = sorted(p.stem for p in (data_dir / kind).glob("*.jsonl")) if (data_dir / kind).is_dir() else []
            raise TrainingInputError(
                f"training data for {s.lang} not found: {s.spec} ({kind} languages present in {data_dir / kind}: "
                f"{', '.join(have) or 'none'}); run `neuronmoe prepare-data` or set train_files.{s.lang}"
            )
    return out


def comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    from neuronmoe.training.settings import RESUME_FREE_KEYS

    return {k: v for k, v in cfg.items() if k not in RESUME_FREE_KEYS}


def deepspeed_config(value: Any) -> Any:
    if value in (None, "", "none", "null"):
        return None
    if isinstance(value, dict):
        return value
    from neuronmoe.config import CONFIG_DIR

    if value in SHIPPED_DEEPSPEED:
        return str(CONFIG_DIR / SHIPPED_DEEPSPEED[value])
    if not Path(value).is_file():
        raise TrainingInputError(f"deepspeed config {value}: file not found (use 'zero2' for the shipped ZeRO-2 config)")
    return str(value)


def report_to(value: Any) -> list[str]:
    if isinstance(value, list):
        items = value
    else:
        items = [x for x in str(value).replace(",", " ").split() if x]
    if items in ([], ["none"]):
        return []
    if items == ["auto"]:
        from transformers.integrations import is_tensorboard_available

        return ["tensorboard"] if is_tensorboard_available() else []
    return items


def trainable_summary(model: Any) -> dict[str, Any]:
    n_train = n_total = 0
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        n_total += p.numel()
        if p.requires_grad:
            n_train += p.numel()
            g = "router" if ".moe_router." in name else "experts" if ".moe_experts." in name else "other"
            groups[g] = groups.get(g, 0) + p.numel()
    return {"trainable": n_train, "total": n_total, "by_group": groups}


def heldout_languages(cfg: dict[str, Any], data_dir: Path) -> list[str]:
    want = cfg["heldout_languages"]
    if want == "auto":
        want = list(dict.fromkeys(list(cfg["languages"]) + list(cfg["replay_languages"]) + ["en"]))
    return [lang for lang in want if (data_dir / "heldout" / f"{lang}.jsonl").is_file()]


def heldout_perplexity(model: Any, tok: Any, cfg: dict[str, Any], data_dir: Path, dense_cache: Path | None = None,
                       model_path: str = "") -> dict[str, Any]:
    """Held-out perplexity per language, and the base model's (``dense_perplexity``; from ``dense_cache`` when that
    file already holds it for ``model_path``, the same file and settings)."""
    from neuronmoe.training.perplexity import perplexity
    from neuronmoe.utils.io import read_texts

    out: dict[str, Any] = {}
    for lang in heldout_languages(cfg, data_dir):
        kw = dict(block_len=cfg["heldout_block_len"], max_tokens=cfg["heldout_max_tokens"],
                  batch_size=cfg["heldout_batch_size"], autocast_bf16=cfg["bf16"])
        try:
            texts = read_texts(data_dir / "heldout" / f"{lang}.jsonl", long_text=True)  # long ones read as needed
            r = perplexity(model, tok, texts, **kw)
        except ValueError as e:
            log.warning("held-out perplexity %s: %s", lang, e)
            continue
        rec = {"perplexity": r["perplexity"], "tokens": r["tokens"]}
        if cfg["heldout_dense"] and hasattr(model, "disable_adapter"):
            rec["dense_perplexity"] = _dense_perplexity(model, tok, texts, kw, data_dir / "heldout" / f"{lang}.jsonl",
                                                        dense_cache, model_path)
        out[lang] = rec
    return out


def _dense_perplexity(model: Any, tok: Any, texts: list[str], kw: dict[str, Any], path: Path,
                      cache: Path | None, model_path: str) -> float:
    """The base model's held-out perplexity (adapter disabled), computed once per base model, held-out file and
    scoring settings and shared by every run of the output folder (``train/dense_heldout.json``,
    :mod:`neuronmoe.training.dense_cache`): the miniature pipeline's four runs would otherwise score it four times."""
    from neuronmoe.training.dense_cache import cached_dense
    from neuronmoe.training.perplexity import perplexity

    def compute() -> float:
        with model.disable_adapter():
            return float(perplexity(model, tok, texts, **kw)["perplexity"])

    if cache is None:
        return compute()
    return cached_dense(cache, model_path, path, kw, compute)


def check_finite_perplexity(ppl: dict[str, Any], run_dir: Path) -> None:
    """A run whose held-out perplexity is NaN or infinite is not a good run: it is never marked complete."""
    import math

    from neuronmoe.training.trainer import NonFiniteTrainingError

    bad = [f"{lang} {key} {rec[key]}" for lang, rec in ppl.items() for key in ("perplexity", "dense_perplexity")
           if key in rec and not math.isfinite(float(rec[key]))]
    if bad:
        raise NonFiniteTrainingError(
            f"{run_dir}: held-out perplexity not finite ({', '.join(bad)}); the adapter is not usable and the run "
            f"is not marked complete. Lower --learning-rate or check the data, then rerun with --overwrite")


def write_run_manifest(plan: RunPlan, report: dict[str, Any], wall_s: float) -> None:
    from neuronmoe.utils.io import sha256_file
    from neuronmoe.utils.manifest import Manifest, describe_files, write_manifest

    run_dir, opts = plan.run_dir, plan.opts
    inputs: dict[str, Any] = {
        "model": {"spec": opts.model, "fingerprint": report["base_model_fingerprint"],
                  "tokenizer_fingerprint": report["tokenizer_fingerprint"]},
        "data": {s.lang: {"spec": s.spec, "flag": s.flag,
                          "sha256": None if s.is_hf else sha256_file(s.spec)} for s in plan.sources},
    }
    if opts.stage == 1:
        inputs["allocation"] = {"path": str(plan.apath), "sha256": sha256_file(plan.apath)}
    else:
        weights = plan.init_adapter / "adapter_model.safetensors"
        inputs["init_adapter"] = {"path": str(plan.init_adapter),
                                  "sha256": sha256_file(weights) if weights.exists() else None}
    if plan.data_manifest is not None:
        inputs["data_manifest_sha256"] = sha256_file(plan.data_dir / "manifest.json")
    files = [p for p in run_dir.rglob("*") if p.is_file() and "checkpoint-" not in p.as_posix()
             and "tensorboard" not in p.relative_to(run_dir).parts and p.name != "manifest.json"]
    m = Manifest(stage=f"train-stage{opts.stage}", config=plan.cfg, inputs=inputs,
                 counts={"global_step": report["global_step"], "train_tokens": report["train_tokens"],
                         "batch": report["batch"],
                         "train_seconds": report["train_seconds"], "wall_seconds": round(wall_s, 2),
                         "trainable_parameters": report["trainable_parameters"]["trainable"]},
                 files=describe_files(run_dir, files),
                 extra={"result": report})
    write_manifest(run_dir, m)
