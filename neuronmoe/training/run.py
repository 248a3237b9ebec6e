"""``neuronmoe train``: one stage of the two-stage MoE training, end to end.

``train(opts)`` checks every input before the first step (run folder, allocation vs model,
stage-1 adapter vs base model, cutoff vs context, data non-empty), writes the resolved
config, allocation and data manifest into ``$OUTPUT_DIR/train/<run>/``, trains with
:class:`~neuronmoe.training.trainer.MoETrainer` (checkpoints every ``save_steps``; ``--resume``
continues from the last one), saves ``adapter/`` with a model card, measures held-out
perplexity and writes ``manifest.json`` last.
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
from typing import Any

import yaml

log = logging.getLogger("neuronmoe.training")

SHIPPED_DEEPSPEED = {"zero2": "deepspeed_zero2.json"}


@dataclass
class TrainOptions:
    stage: int
    model: str | None = None
    output_dir: str = "outputs"
    allocation: str = "neuronmoe"
    run: str | None = None
    init_adapter: str | None = None
    data_dir: str | None = None
    profile: str = "auto"
    config: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)
    resume: bool = False
    overwrite: bool = False
    use_cache: bool = True
    cache_dir: str | None = None
    device: str = "auto"
    callbacks: list[Any] = field(default_factory=list)  # extra TrainerCallbacks (tests)
    environ: dict[str, str] | None = None


class TrainingInputError(ValueError):
    """A bad input found before training starts."""


# ---------------------------------------------------------------------------------------------
# pure helpers
# ---------------------------------------------------------------------------------------------
def resolve_profile(profile: str) -> str:
    if profile in (None, "", "auto"):
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    return profile


def allocation_path(allocation: str, output_dir: str | Path) -> Path:
    p = Path(allocation)
    if p.suffix == ".json" or p.is_file():
        return p
    return Path(output_dir) / "allocation" / f"{allocation}.json"


def default_run_name(stage: int, allocation: str) -> str:
    stem = Path(allocation).stem if allocation.endswith(".json") else allocation
    return f"{stem}-s{stage}"


def last_checkpoint(run_dir: Path) -> Path | None:
    best = None
    for p in run_dir.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / "trainer_state.json").exists():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), p)
    return best[1] if best else None


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


def check_allocation(alloc: dict[str, Any], model_fp: dict[str, Any], where: str) -> list[int]:
    epl = alloc.get("experts_per_layer")
    if not isinstance(epl, list) or not epl:
        raise TrainingInputError(f"{where}: no experts_per_layer list")
    n = model_fp.get("num_layers")
    if len(epl) != n:
        raise TrainingInputError(
            f"{where}: allocation has {len(epl)} layers but the model has {n}; it was made for another model"
        )
    if any((not isinstance(e, int)) or isinstance(e, bool) or e < 1 for e in epl):
        raise TrainingInputError(f"{where}: experts_per_layer entries must be integers >= 1")
    fp = alloc.get("base_model_fingerprint")
    if isinstance(fp, dict):
        from neuronmoe.moe.config import fingerprint_mismatch

        diff = fingerprint_mismatch(fp, model_fp)
        if diff:
            raise TrainingInputError(f"{where}: made for another base model ({'; '.join(diff)})")
    return epl


def check_stage1_adapter(adapter_dir: Path, model_fp: dict[str, Any]) -> dict[str, Any]:
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise TrainingInputError(
            f"stage 2 needs a stage-1 adapter: {cfg_path} not found (run `neuronmoe train --stage 1` first "
            f"or pass --init-adapter)"
        )
    acfg = json.loads(cfg_path.read_text())
    epl = acfg.get("experts_per_layer") or []
    if len(epl) != model_fp.get("num_layers"):
        raise TrainingInputError(
            f"stage-1 adapter {adapter_dir}: {len(epl)} layers, the base model has {model_fp.get('num_layers')}; "
            f"it was trained on another base model"
        )
    fp = acfg.get("base_model_fingerprint")
    if isinstance(fp, dict):
        from neuronmoe.moe.config import fingerprint_mismatch

        diff = fingerprint_mismatch(fp, model_fp)
        if diff:
            raise TrainingInputError(f"stage-1 adapter {adapter_dir}: trained on another base model ({'; '.join(diff)})")
    return acfg


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


def set_routers_only(model: Any) -> None:
    """Stage 2: only router weights train (the stage-1 experts and the base stay frozen)."""
    for name, p in model.named_parameters():
        p.requires_grad_(".moe_router." in name)
    for m in model.modules():
        fz = getattr(m, "frozen_peft_weight_names", None)
        if isinstance(fz, dict):
            for a in list(getattr(m, "moe_router", {}) or {}):
                fz[a] = ("moe_experts",)


def set_loss_coefs(model: Any, aux: float, lpr: float, top_k: int | None = None) -> None:
    cfgs = getattr(model, "peft_config", {}) or {}
    for c in cfgs.values():
        c.aux_loss_coef = float(aux)
        c.lpr_loss_coef = float(lpr)


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------
def train(opts: TrainOptions) -> dict[str, Any]:
    import neuronmoe  # noqa: F401 - registers the PEFT method
    from neuronmoe.models import load_config, load_tokenizer, resolve_model
    from neuronmoe.training.settings import resolve
    from neuronmoe.utils.fingerprint import config_fingerprint, tokenizer_fingerprint

    t_start = time.perf_counter()
    profile = resolve_profile(opts.profile)
    cfg, prov = resolve(opts.stage, profile, opts.config, opts.flags, opts.sets, opts.environ)
    out_root = Path(opts.output_dir)
    data_dir = Path(opts.data_dir) if opts.data_dir else out_root / "data"
    run_name = opts.run or default_run_name(opts.stage, opts.allocation)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_name):
        raise TrainingInputError(f"--run {run_name!r}: use letters, digits, '.', '_' and '-' only")
    run_dir = out_root / "train" / run_name
    rank = int(os.environ.get("RANK", "0"))
    main = rank == 0

    # ---- run folder policy (read-only here: every rank decides the same) -------------------
    resume_from: Path | None = None
    if opts.resume and opts.overwrite:
        raise TrainingInputError("--resume and --overwrite exclude each other")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and not (opts.resume or opts.overwrite):
        raise FileExistsError(
            f"run folder {run_dir} exists; pass --resume to continue it (or to skip it when complete), "
            f"--overwrite to start again, or --run-name NAME for a new run"
        )
    if exists and opts.resume:
        saved = run_dir / "resolved_config.yaml"
        if saved.exists():
            old = yaml.safe_load(saved.read_text())
            old_cfg = old.get("config", old) if isinstance(old, dict) else {}
            if comparable(old_cfg) != comparable(cfg):
                diff = sorted(k for k in set(comparable(old_cfg)) | set(comparable(cfg))
                              if comparable(old_cfg).get(k) != comparable(cfg).get(k))
                raise TrainingInputError(
                    f"--resume {run_dir}: the configuration differs from the saved run in {', '.join(diff)}; "
                    f"resume with the same settings, or use --overwrite / --run-name NAME"
                )
        if (run_dir / "manifest.json").exists() and (run_dir / "adapter" / "adapter_config.json").exists():
            log.info("run %s is already complete (manifest.json present); nothing to do", run_dir)
            return {"run_dir": str(run_dir), "skipped": True, **json.loads((run_dir / "manifest.json").read_text())}
        resume_from = last_checkpoint(run_dir)

    # ---- model facts, allocation, adapter checks ----------------------------------------------
    model_path = resolve_model(opts.model)
    mcfg = load_config(opts.model)
    model_fp = config_fingerprint(mcfg)
    from neuronmoe.models.arch import text_config

    max_pos = getattr(text_config(mcfg), "max_position_embeddings", None)
    if max_pos and cfg["cutoff_len"] > max_pos:
        raise TrainingInputError(
            f"cutoff_len {cfg['cutoff_len']} is longer than the model's context (max_position_embeddings={max_pos})"
        )
    init_adapter: Path | None = None
    if opts.stage == 1:
        apath = allocation_path(opts.allocation, out_root)
        if not apath.is_file():
            raise TrainingInputError(f"allocation {apath} not found; run `neuronmoe allocate` first or pass --allocation PATH")
        alloc = json.loads(apath.read_text())
        epl = check_allocation(alloc, model_fp, str(apath))
        if max(epl) < 2:
            raise TrainingInputError(f"{apath}: every layer has 1 expert, nothing to train")
    else:
        init_adapter = Path(opts.init_adapter) if opts.init_adapter else out_root / "train" / default_run_name(1, opts.allocation) / "adapter"
        acfg = check_stage1_adapter(init_adapter, model_fp)
        apath = init_adapter / "adapter_config.json"
        alloc = {"experts_per_layer": acfg["experts_per_layer"], "num_layers": len(acfg["experts_per_layer"]),
                 "base_model_fingerprint": acfg.get("base_model_fingerprint"),
                 "source": str(init_adapter), "allocation_source": acfg.get("allocation_source")}
        epl = acfg["experts_per_layer"]

    tok = load_tokenizer(opts.model)
    tok_fp = tokenizer_fingerprint(tok)
    dman = data_dir / "manifest.json"
    data_manifest = json.loads(dman.read_text()) if dman.exists() else None
    if data_manifest and data_manifest.get("tokenizer_fingerprint") not in (None, tok_fp):
        raise TrainingInputError(
            f"{dman}: data prepared with another tokenizer ({data_manifest.get('tokenizer_fingerprint')} vs {tok_fp}); "
            f"rerun `neuronmoe prepare-data --model {opts.model}`"
        )
    sources = data_sources(cfg, data_dir)
    ds_cfg = deepspeed_config(cfg["deepspeed"])

    # ---- TrainingArguments (initialises distributed state) -----------------------------------
    import torch
    from transformers import TrainingArguments, set_seed

    targs = dict(
        output_dir=str(run_dir),
        optim=cfg["optim"],
        learning_rate=cfg["learning_rate"],
        adam_beta1=cfg["adam_beta1"],
        adam_beta2=cfg["adam_beta2"],
        adam_epsilon=cfg["adam_epsilon"],
        weight_decay=cfg["weight_decay"],
        lr_scheduler_type=cfg["lr_scheduler_type"],
        warmup_steps=cfg["warmup_steps"],
        per_device_train_batch_size=cfg["per_device_train_batch_size"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        max_steps=cfg["max_steps"],
        num_train_epochs=cfg["num_train_epochs"],
        max_grad_norm=cfg["max_grad_norm"],
        bf16=cfg["bf16"],
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        gradient_checkpointing=cfg["gradient_checkpointing"],
        dataloader_num_workers=cfg["dataloader_num_workers"],
        logging_steps=cfg["logging_steps"],
        save_strategy="steps",
        save_steps=cfg["save_steps"],
        save_total_limit=cfg["save_total_limit"],
        report_to=report_to(cfg["report_to"]),
        deepspeed=ds_cfg,
        remove_unused_columns=False,
        save_only_model=False,
        disable_tqdm=False,
    )
    if opts.device == "cpu" or not torch.cuda.is_available():
        targs["use_cpu"] = True
        if ds_cfg is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            targs["ddp_backend"] = "gloo"
    extra = dict(cfg["trainer_extra"])
    targs.update(extra)
    try:
        args = TrainingArguments(**targs)
    except TypeError as e:
        raise TrainingInputError(f"trainer_extra: {e}") from None
    from accelerate import PartialState

    state = PartialState()
    main = state.is_main_process
    state.wait_for_everyone()

    # ---- data (main process first: it fills the cache) -----------------------------------------
    from neuronmoe.training.data import PackedCollator, PackedDataset, build_packed, token_budget

    # every rank calls it: the first to take the cache entry's file lock builds, the others wait on the lock
    packed = build_packed(sources, tok, cfg["cutoff_len"], cfg["seed"], cache_dir=opts.cache_dir,
                          use_cache=opts.use_cache, max_tokens=token_budget(cfg, state.num_processes))
    log.info("training data: %d blocks x %d tokens (%s)", len(packed), cfg["cutoff_len"],
             ", ".join(f"{k}: {v}" for k, v in packed.meta["counts"]["tokens_per_lang"].items()))

    # ---- write the run's inputs ------------------------------------------------------------------
    from neuronmoe.training.trainer import truncate_metrics
    from neuronmoe.utils.io import atomic_write_json, atomic_write_text

    if main:
        if opts.overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_from is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        else:
            truncate_metrics(run_dir / "metrics.jsonl", int(resume_from.name.split("-")[1]))
        atomic_write_text(run_dir / "resolved_config.yaml", yaml.safe_dump(
            {"config": cfg, "provenance": prov, "stage": opts.stage, "model": opts.model, "profile": profile},
            sort_keys=False, allow_unicode=True))
        atomic_write_json(run_dir / "allocation.json", alloc)
        atomic_write_json(run_dir / "data_manifest.json", {
            "data_dir": str(data_dir), "data_manifest": data_manifest,
            "packed": {k: v for k, v in packed.meta.items()}})
    state.wait_for_everyone()

    # ---- model -------------------------------------------------------------------------------------
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from neuronmoe.moe import MoEConfig

    set_seed(cfg["seed"])
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    from neuronmoe.models.arch import validate_model

    validate_model(base)
    if opts.stage == 1:
        moe_cfg = MoEConfig.from_allocation(
            {**alloc, "experts_per_layer": epl}, top_k=cfg["top_k"], aux_loss_coef=cfg["aux_loss_coef"],
            lpr_loss_coef=cfg["lpr_loss_coef"], train_mode="experts",
            base_model_fingerprint=model_fp)
        moe_cfg.allocation_source = str(apath)
        model = get_peft_model(base, moe_cfg)
    else:
        model = PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
        for c in model.peft_config.values():
            c.train_mode = "routers"
            c.top_k = cfg["top_k"]
        set_routers_only(model)
    set_loss_coefs(model, cfg["aux_loss_coef"], cfg["lpr_loss_coef"])
    if cfg["gradient_checkpointing"]:
        model.enable_input_require_grads()
    summary = trainable_summary(model)
    log.info("trainable parameters: %s of %s (%s)", f"{summary['trainable']:,}", f"{summary['total']:,}",
             ", ".join(f"{k} {v:,}" for k, v in summary["by_group"].items()))
    if summary["trainable"] == 0:
        raise TrainingInputError("no trainable parameters (allocation gives every layer 1 expert?)")

    # ---- train -------------------------------------------------------------------------------------
    from neuronmoe.training.trainer import MoETrainer

    prev_tb = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")  # read by the TensorBoard callback
    try:
        trainer = MoETrainer(
            model=model, args=args, train_dataset=PackedDataset(packed),
            data_collator=PackedCollator(tok.pad_token_id if tok.pad_token_id is not None else 0),
            metrics_path=run_dir / "metrics.jsonl", callbacks=list(opts.callbacks),
        )
    finally:
        if prev_tb is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = prev_tb
    if resume_from is not None:
        log.info("resuming from %s", resume_from)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.perf_counter() - t0

    # ---- adapter + model card ------------------------------------------------------------------
    from neuronmoe.training.model_card import model_card

    tmp_adapter = run_dir / ".adapter.tmp"
    if main and tmp_adapter.exists():
        shutil.rmtree(tmp_adapter)
    state.wait_for_everyone()
    trainer.save_model(str(tmp_adapter))
    state.wait_for_everyone()

    report: dict[str, Any] = {}
    if main:
        ppl = heldout_perplexity(trainer.accelerator.unwrap_model(trainer.model), tok, cfg, data_dir)
        report = {
            "run": run_name, "stage": opts.stage, "model": opts.model, "model_path": model_path,
            "base_model_fingerprint": model_fp, "tokenizer_fingerprint": tok_fp,
            "experts_per_layer": epl, "total_experts": int(sum(epl)), "new_experts": int(sum(e - 1 for e in epl)),
            "trainable_parameters": summary, "train_seconds": round(train_s, 2),
            "global_step": trainer.state.global_step, "train_loss": float(result.training_loss),
            "train_tokens": int(trainer.state.global_step * cfg["per_device_train_batch_size"]
                                * cfg["gradient_accumulation_steps"] * state.num_processes * cfg["cutoff_len"]),
            "world_size": state.num_processes, "resumed_from": str(resume_from) if resume_from else None,
            "perplexity": ppl, "profile": profile,
        }
        atomic_write_text(tmp_adapter / "README.md", model_card(cfg, report, packed.meta, alloc))
        final = run_dir / "adapter"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_adapter, final)
        write_run_manifest(run_dir, cfg, report, opts, sources, apath, init_adapter, data_manifest,
                           time.perf_counter() - t_start)
        log.info("stage %d done in %.1f s (train %.1f s): %s", opts.stage, time.perf_counter() - t_start, train_s,
                 ", ".join(f"{lang} ppl {v['perplexity']:.2f}" + (f" (dense {v['dense_perplexity']:.2f})" if "dense_perplexity" in v else "")
                           for lang, v in ppl.items()))
    state.wait_for_everyone()
    return {"run_dir": str(run_dir), **report}


def heldout_languages(cfg: dict[str, Any], data_dir: Path) -> list[str]:
    want = cfg["heldout_languages"]
    if want == "auto":
        want = list(dict.fromkeys(list(cfg["languages"]) + list(cfg["replay_languages"]) + ["en"]))
    return [lang for lang in want if (data_dir / "heldout" / f"{lang}.jsonl").is_file()]


def heldout_perplexity(model: Any, tok: Any, cfg: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    from neuronmoe.training.perplexity import perplexity, read_texts

    out: dict[str, Any] = {}
    for lang in heldout_languages(cfg, data_dir):
        texts = read_texts(data_dir / "heldout" / f"{lang}.jsonl")
        kw = dict(block_len=cfg["heldout_block_len"], max_tokens=cfg["heldout_max_tokens"],
                  batch_size=cfg["heldout_batch_size"], autocast_bf16=cfg["bf16"])
        try:
            r = perplexity(model, tok, texts, **kw)
        except ValueError as e:
            log.warning("held-out perplexity %s: %s", lang, e)
            continue
        rec = {"perplexity": r["perplexity"], "tokens": r["tokens"]}
        if cfg["heldout_dense"] and hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                rec["dense_perplexity"] = perplexity(model, tok, texts, **kw)["perplexity"]
        out[lang] = rec
    return out


def write_run_manifest(run_dir: Path, cfg: dict[str, Any], report: dict[str, Any], opts: TrainOptions,
                       sources: list[Any], apath: Path, init_adapter: Path | None,
                       data_manifest: dict[str, Any] | None, wall_s: float) -> None:
    from neuronmoe.utils.io import sha256_file
    from neuronmoe.utils.manifest import Manifest, describe_files, write_manifest

    inputs: dict[str, Any] = {
        "model": {"spec": opts.model, "fingerprint": report["base_model_fingerprint"],
                  "tokenizer_fingerprint": report["tokenizer_fingerprint"]},
        "data": {s.lang: {"spec": s.spec, "flag": s.flag,
                          "sha256": None if s.is_hf else sha256_file(s.spec)} for s in sources},
    }
    if opts.stage == 1:
        inputs["allocation"] = {"path": str(apath), "sha256": sha256_file(apath)}
    else:
        inputs["init_adapter"] = {"path": str(init_adapter),
                                  "sha256": sha256_file(init_adapter / "adapter_model.safetensors")
                                  if (init_adapter / "adapter_model.safetensors").exists() else None}
    if data_manifest is not None:
        inputs["data_manifest_sha256"] = sha256_file(Path(opts.data_dir or Path(opts.output_dir) / "data") / "manifest.json")
    files = [p for p in run_dir.rglob("*") if p.is_file() and "checkpoint-" not in p.as_posix()
             and "tensorboard" not in p.relative_to(run_dir).parts and p.name != "manifest.json"]
    m = Manifest(stage=f"train-stage{opts.stage}", config=cfg, inputs=inputs,
                 counts={"global_step": report["global_step"], "train_tokens": report["train_tokens"],
                         "train_seconds": report["train_seconds"], "wall_seconds": round(wall_s, 2),
                         "trainable_parameters": report["trainable_parameters"]["trainable"]},
                 files=describe_files(run_dir, files),
                 extra={"result": report})
    write_manifest(run_dir, m)
