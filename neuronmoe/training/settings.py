"""Training configuration: shipped YAML profiles + user file + env vars + flags + ``--set``.

Precedence, lowest to highest: the profile YAML (``train_stage{1,2}.yaml`` or
``train_cpu_stage{1,2}.yaml``, following ``inherit:``), ``--config FILE``, environment
variables (:data:`ENV_KEYS`), explicit flags, ``--set key=value`` (dotted keys reach into
mappings, values are parsed as YAML scalars).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import yaml

from neuronmoe.config import check_keys, load_yaml, merge

AUTO = "auto"  #: a batch field derived from effective_batch_size and the world size

#: config key -> (environment variable of neuronmoe.envvars, type) for the env layer; old spellings of a
#: variable (TARGET_LANGS, REPLAY_LANGS, TOPK, BATCH_SIZE, SEED) still work with a deprecation warning
ENV_KEYS: dict[str, tuple[str, Any]] = {
    "languages": ("NEW_LANGS", "langs"),
    "replay_languages": ("OLD_LANGS", "langs"),  # stage 2 only: stage 1 has no replay
    "max_samples": ("MAX_SAMPLES", int),
    "replay_max_samples": ("REPLAY_MAX_SAMPLES", int),
    "cutoff_len": ("CUTOFF_LEN", int),
    "max_tokens": ("TRAIN_MAX_TOKENS", str),
    "top_k": ("TRAIN_TOP_K", int),
    "aux_loss_coef": ("AUX_LOSS_COEF", float),
    "lpr_loss_coef": ("LPR_LOSS_COEF", float),
    "aux_loss_form": ("AUX_LOSS_FORM", str),
    "lpr_input": ("LPR_INPUT", str),
    "learning_rate": ("LEARNING_RATE", float),
    "effective_batch_size": ("EFFECTIVE_BATCH_SIZE", int),
    "per_device_train_batch_size": ("TRAIN_BATCH_SIZE", "int_or_auto"),
    "gradient_accumulation_steps": ("GRADIENT_ACCUMULATION_STEPS", "int_or_auto"),
    "max_steps": ("MAX_STEPS", int),
    "num_train_epochs": ("NUM_TRAIN_EPOCHS", float),
    "logging_steps": ("LOGGING_STEPS", int),
    "save_steps": ("SAVE_STEPS", int),
    "report_to": ("REPORT_TO", str),
    "deepspeed": ("DEEPSPEED_CONFIG", str),
    "seed": ("TRAIN_SEED", int),
    "bf16": ("BF16", "bool"),
}
#: env-layer keys that apply to one stage only
STAGE_ONLY_KEYS = {"replay_languages": 2}

REQUIRED_TYPES: dict[str, tuple[type, ...]] = {
    "stage": (int,),
    "train_mode": (str,),
    "languages": (list,),
    "replay_languages": (list,),
    "train_files": (dict,),
    "hf_split": (str,),
    "max_samples": (int, type(None)),
    "replay_max_samples": (int, type(None)),
    "cutoff_len": (int,),
    "max_tokens": (int, str, type(None)),
    "top_k": (int,),
    "aux_loss_coef": (int, float),
    "lpr_loss_coef": (int, float),
    "aux_loss_form": (str,),
    "lpr_input": (str,),
    "optim": (str,),
    "learning_rate": (int, float),
    "adam_beta1": (int, float),
    "adam_beta2": (int, float),
    "adam_epsilon": (int, float),
    "weight_decay": (int, float),
    "lr_scheduler_type": (str,),
    "warmup_steps": (int, float),
    "effective_batch_size": (int, type(None)),
    "max_per_device_batch_size": (int, type(None)),
    "per_device_train_batch_size": (int, str),
    "gradient_accumulation_steps": (int, str),
    "max_steps": (int,),
    "num_train_epochs": (int, float),
    "max_grad_norm": (int, float),
    "bf16": (bool, str),
    "seed": (int,),
    "gradient_checkpointing": (bool,),
    "dataloader_num_workers": (int,),
    "logging_steps": (int,),
    "save_steps": (int,),
    "save_total_limit": (int, type(None)),
    "report_to": (str, list),
    "deepspeed": (str, dict, type(None)),
    "heldout_languages": (str, list),
    "heldout_max_tokens": (int,),
    "heldout_block_len": (int,),
    "heldout_batch_size": (int,),
    "heldout_dense": (bool,),
    "trainer_extra": (dict,),
}
ALLOWED = set(REQUIRED_TYPES)

#: keys that may change between a run and its --resume without changing the result
RESUME_FREE_KEYS = {"report_to", "logging_steps", "save_total_limit", "dataloader_num_workers",
                    "heldout_languages", "heldout_max_tokens", "heldout_block_len", "heldout_batch_size",
                    "heldout_dense"}


def profile_name(stage: int, profile: str) -> str:
    if profile not in ("paper", "cpu"):
        raise ValueError(f"--profile must be paper, cpu or auto, got {profile!r}")
    return f"train_stage{stage}" if profile == "paper" else f"train_cpu_stage{stage}"


def load_profile(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a training YAML, resolving ``inherit:`` chains."""
    if name in _seen:
        raise ValueError(f"config {name}: inherit cycle {' -> '.join(_seen + (name,))}")
    data = load_yaml(name)
    parent = data.pop("inherit", None)
    if parent:
        return merge(load_profile(str(parent), _seen + (name,)), data)
    return data


def parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        d = out
        parts = key.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ValueError(f"--set {item!r}: {p} is both a value and a mapping")
        d[parts[-1]] = parse_scalar(value)
    return out


def _split_langs(v: Any) -> list[str]:
    from neuronmoe.cli_common import split_langs

    return split_langs(v)


def env_layer(environ: Mapping[str, str] | None = None, stage: int | None = None
              ) -> tuple[dict[str, Any], dict[str, str]]:
    """Config values from environment variables; also returns {VAR: value} of those used (the name as set)."""
    from neuronmoe.envvars import lookup

    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    used: dict[str, str] = {}
    for key, (var, typ) in ENV_KEYS.items():
        if stage is not None and STAGE_ONLY_KEYS.get(key, stage) != stage:
            continue
        raw, name = lookup(var, environ, command="train")
        if raw is None:
            continue
        used[name] = raw
        try:
            if typ == "langs":
                out[key] = _split_langs(raw)
            elif typ == "bool":
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "auto"):
                    raise ValueError
                out[key] = "auto" if raw.lower() == "auto" else raw.lower() in ("1", "true", "yes")
            elif typ is int and raw.lower() in ("none", "null"):
                out[key] = None
            elif typ == "int_or_auto":
                out[key] = AUTO if raw.lower() == AUTO else int(raw)
            else:
                out[key] = typ(raw)
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r}: not a valid {getattr(typ, '__name__', typ)}") from None
    return out, used


def normalize(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    for k in ("languages", "replay_languages"):
        if isinstance(cfg.get(k), str):
            cfg[k] = _split_langs(cfg[k])
    if isinstance(cfg.get("heldout_languages"), str) and cfg["heldout_languages"] != "auto":
        cfg["heldout_languages"] = _split_langs(cfg["heldout_languages"])
    mt = cfg.get("max_tokens")
    if isinstance(mt, float) or (isinstance(mt, str) and mt not in ("auto", "all")):
        try:  # 5e8 / "5e8" -> 500000000
            cfg["max_tokens"] = int(float(mt))
        except ValueError:
            pass
    for k in ("learning_rate", "adam_epsilon", "aux_loss_coef", "lpr_loss_coef", "weight_decay"):
        if isinstance(cfg.get(k), str):  # YAML reads 1e-4 (no dot) as a string
            try:
                cfg[k] = float(cfg[k])
            except ValueError:
                pass
    return cfg


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Type and range checks; raises ``ValueError`` naming the field."""
    check_keys(cfg, ALLOWED, "training config")
    missing = sorted(ALLOWED - set(cfg))
    if missing:
        raise ValueError(f"training config: missing field(s) {', '.join(missing)}")
    for k, types in REQUIRED_TYPES.items():
        v = cfg[k]
        if isinstance(v, bool) and bool not in types:
            raise ValueError(f"training config: {k}={v!r} must be {'/'.join(t.__name__ for t in types)}")
        if not isinstance(v, types):
            raise ValueError(f"training config: {k}={v!r} must be {'/'.join(t.__name__ for t in types)}")
    if cfg["stage"] not in (1, 2):
        raise ValueError(f"training config: stage must be 1 or 2, got {cfg['stage']}")
    if isinstance(cfg["bf16"], str) and cfg["bf16"] != "auto":
        raise ValueError(f"training config: bf16 must be true, false or auto, got {cfg['bf16']!r}")
    if cfg["train_mode"] not in ("experts", "routers"):
        raise ValueError(f"training config: train_mode must be experts or routers, got {cfg['train_mode']!r}")
    from neuronmoe.moe.losses import check_loss_options

    check_loss_options(cfg["aux_loss_form"], cfg["lpr_input"], "training config: ")
    for k in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if isinstance(cfg[k], str) and cfg[k] != AUTO:
            raise ValueError(f"training config: {k} must be an int >= 1 or auto, got {cfg[k]!r}")
    for k in ("effective_batch_size", "max_per_device_batch_size"):
        if cfg[k] is not None and cfg[k] < 1:
            raise ValueError(f"training config: {k} must be >= 1 or null, got {cfg[k]}")
    for k in ("cutoff_len", "top_k", "per_device_train_batch_size", "gradient_accumulation_steps",
              "logging_steps", "save_steps", "heldout_block_len", "heldout_batch_size"):
        if isinstance(cfg[k], int) and cfg[k] < 1:
            raise ValueError(f"training config: {k} must be >= 1, got {cfg[k]}")
    if cfg["cutoff_len"] < 2:
        raise ValueError("training config: cutoff_len must be >= 2")
    for k in ("max_samples", "replay_max_samples"):
        if cfg[k] is not None and cfg[k] < 1:
            raise ValueError(f"training config: {k} must be >= 1 or null, got {cfg[k]}")
    mt = cfg["max_tokens"]
    if (isinstance(mt, str) and mt not in ("auto", "all")) or (isinstance(mt, int) and mt < 1):
        raise ValueError(f"training config: max_tokens must be auto, all, null or a positive token count, got {mt!r}")
    if cfg["learning_rate"] <= 0:
        raise ValueError(f"training config: learning_rate must be > 0, got {cfg['learning_rate']}")
    if cfg["max_steps"] == 0 or cfg["max_steps"] < -1:
        raise ValueError(f"training config: max_steps must be >= 1, or -1 to train num_train_epochs; got {cfg['max_steps']}")
    if cfg["max_steps"] == -1 and cfg["num_train_epochs"] <= 0:
        raise ValueError("training config: set max_steps > 0 or num_train_epochs > 0")
    for k in ("aux_loss_coef", "lpr_loss_coef", "weight_decay", "warmup_steps"):
        if k in cfg and cfg[k] is not None and not cfg[k] >= 0:
            raise ValueError(f"training config: {k} must be >= 0, got {cfg[k]}")
    if not cfg["languages"]:
        raise ValueError("training config: languages (the new languages) is empty")
    if cfg["stage"] == 2 and not cfg["replay_languages"]:
        raise ValueError("training config: stage 2 needs replay_languages (old languages for the LPR loss)")
    both = set(cfg["languages"]) & set(cfg["replay_languages"])
    if both:
        raise ValueError(f"training config: {', '.join(sorted(both))} both a new and a replay language")
    from neuronmoe.languages import check_languages

    check_languages(list(cfg["languages"]) + list(cfg["replay_languages"]))
    return cfg


class BatchError(ValueError):
    """The effective batch cannot be met with this world size / per-device batch / accumulation."""


def derive_batch(effective: int | None, world_size: int, per_device: int | str = AUTO, accum: int | str = AUTO,
                 max_per_device: int | None = None) -> dict[str, Any]:
    """The per-device batch and gradient accumulation that give ``effective`` sequences per optimizer step.

    ``effective`` is the contract (Table 7: 32); ``per_device`` / ``accum`` are ``auto`` (derived) or explicit.
    Both ``auto``: per device = the largest divisor of ``effective / world_size`` that is at most
    ``max_per_device``, the rest by accumulation (32 on 8 processes = 4 x 1 x 8; on 1 = 32 x 1 x 1, or 16 x 2 x 1
    with ``max_per_device`` 16). One explicit: the other is derived. Both explicit: used as given; a product
    other than the contract is an *override* (returned with ``override: True``, printed and recorded).
    Raises :class:`BatchError` (one line) when the contract cannot be met.
    """
    if world_size < 1:
        raise BatchError(f"world size must be >= 1, got {world_size}")
    rec: dict[str, Any] = {"world_size": world_size, "contract": effective,
                           "derived": [k for k, v in (("per_device_train_batch_size", per_device),
                                                      ("gradient_accumulation_steps", accum)) if v == AUTO]}
    if effective is None:
        if per_device == AUTO:
            raise BatchError("training config: per_device_train_batch_size is auto but effective_batch_size is null; "
                             "state the effective batch or an explicit per-device batch")
        accum = 1 if accum == AUTO else accum
    elif per_device == AUTO and accum == AUTO:
        if effective % world_size:
            raise BatchError(
                f"effective batch {effective} cannot be split over {world_size} processes (world size): "
                f"use a world size that divides {effective}, or set --batch-size and --grad-accum explicitly "
                f"(which changes the effective batch)")
        local = effective // world_size
        cap = min(local, max_per_device or local)
        per_device = max(d for d in range(1, cap + 1) if local % d == 0)
        accum = local // per_device
    elif accum == AUTO:
        if effective % (world_size * per_device):
            raise BatchError(
                f"effective batch {effective} is not a multiple of per-device batch {per_device} x world size "
                f"{world_size}: choose a per-device batch that divides "
                f"{effective // world_size if effective % world_size == 0 else effective}"
                f", or set --grad-accum explicitly (which changes the effective batch)")
        accum = effective // (world_size * per_device)
    elif per_device == AUTO:
        if effective % (world_size * accum):
            raise BatchError(
                f"effective batch {effective} is not a multiple of gradient accumulation {accum} x world size "
                f"{world_size}: set --batch-size explicitly or change --grad-accum")
        per_device = effective // (world_size * accum)
    actual = per_device * accum * world_size
    rec.update(per_device_train_batch_size=per_device, gradient_accumulation_steps=accum, effective_batch_size=actual,
               override=effective is not None and actual != effective)
    return rec


def world_size_from(environ: Mapping[str, str]) -> int:
    """The number of training processes the launcher announced (torchrun, accelerate, deepspeed: WORLD_SIZE)."""
    raw = environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"environment variable WORLD_SIZE={raw!r}: not an integer") from None


def apply_batch(cfg: dict[str, Any], world_size: int) -> dict[str, Any]:
    """Replace ``auto`` batch fields of ``cfg`` by the derived numbers; returns the batch record."""
    import logging

    rec = derive_batch(cfg["effective_batch_size"], world_size, cfg["per_device_train_batch_size"],
                       cfg["gradient_accumulation_steps"], cfg["max_per_device_batch_size"])
    cfg["per_device_train_batch_size"] = rec["per_device_train_batch_size"]
    cfg["gradient_accumulation_steps"] = rec["gradient_accumulation_steps"]
    if rec["override"]:
        logging.getLogger("neuronmoe.training").warning(
            "effective batch %d (= %d per device x %d accumulation x %d processes) overrides the profile's %d",
            rec["effective_batch_size"], rec["per_device_train_batch_size"], rec["gradient_accumulation_steps"],
            world_size, rec["contract"])
    return rec


def resolve(
    stage: int,
    profile: str,
    user_config: str | None = None,
    flags: Mapping[str, Any] | None = None,
    sets: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    world_size: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (validated config, provenance {"profile", "config_file", "env", "flags", "set", "batch"}).

    The batch fields are resolved for ``world_size`` processes (default: ``WORLD_SIZE`` of ``environ``)."""
    base = load_profile(profile_name(stage, profile))
    user = {}
    if user_config:
        user = dict(load_yaml(user_config))
        parent = user.pop("inherit", None)
        if parent:
            base = load_profile(str(parent))
    env_vals, env_used = env_layer(environ, stage)
    flag_vals = {k: v for k, v in (flags or {}).items() if v is not None}
    set_vals = parse_sets(sets)
    cfg = merge(base, user, env_vals, flag_vals, set_vals)
    cfg["stage"] = stage if "stage" not in set_vals else cfg["stage"]
    cfg = validate(normalize(cfg))
    if cfg["bf16"] == "auto":  # bf16 autocast only where it is computed natively (it is emulated, slower, elsewhere)
        from neuronmoe.utils.device import native_bf16

        cfg["bf16"] = native_bf16()
    batch = apply_batch(cfg, world_size if world_size is not None else world_size_from(
        os.environ if environ is None else environ))
    prov = {"profile": profile_name(stage, profile), "config_file": user_config, "env": env_used,
            "flags": flag_vals, "set": list(sets or []), "batch": batch}
    return cfg, prov


