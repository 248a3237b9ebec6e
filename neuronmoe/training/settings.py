"""Settings of ``neuronmoe train --stage 1|2`` (:class:`TrainSettings`), and the batch the world size gives.

Defaults: the profile YAML of the stage, ``train_stage{1,2}.yaml`` (``--profile paper``, the paper's Table 7)
or ``train_cpu_stage{1,2}.yaml`` (``--profile cpu``; both follow ``inherit:``); ``--profile auto`` is paper on
a GPU and cpu elsewhere. Precedence, lowest to highest: the profile, ``--config FILE`` (env ``TRAIN_CONFIG``),
environment variables, explicit flags, ``--set key=value`` (dotted keys reach into mappings such as
``train_files`` and ``trainer_extra``). :meth:`TrainSettings.resolve` also derives the per-device batch and the
gradient accumulation from ``effective_batch_size`` and the world size (:func:`derive_batch`).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from neuronmoe.errors import ConfigError
from neuronmoe.settings import _UNSET, Command, ModelOutputSettings, _yaml_label, parse_bool, parse_count, parse_list, setting

AUTO = "auto"  #: a batch field derived from effective_batch_size and the world size
PROFILES = ("auto", "paper", "cpu")
TRAIN_MODES = ("experts", "routers")
AUX_LOSS_FORMS = ("hf", "normalized")  #: neuronmoe.moe.losses.AUX_LOSS_FORMS (not imported: no torch for --help)
LPR_INPUTS = ("probs", "logits")

#: keys that may change between a run and its --resume without changing the result
RESUME_FREE_KEYS = {"report_to", "logging_steps", "save_total_limit", "save_last", "dataloader_num_workers",
                    "heldout_languages", "heldout_max_tokens", "heldout_block_len", "heldout_batch_size",
                    "heldout_dense"}


# ------------------------------------------------------------------------------------------------ parsers
def parse_number(text: str) -> int | float:
    """``"3"`` -> 3, ``"1e-4"`` -> 0.0001 (an integer where the text is one)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_int_or_auto(text: str) -> int | str:
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        return parse_count(text)
    except ValueError:
        raise ValueError(f"expected an int >= 1 or auto, got {text!r}") from None


def parse_optional_count(text: str) -> int | None:
    return None if str(text).strip().lower() in ("none", "null") else parse_count(text)


def parse_max_tokens(text: str) -> int | str | None:
    """``auto``, ``all``, ``null`` or a token count (``5e8``)."""
    t = str(text).strip().lower()
    if t in (AUTO, "all"):
        return t
    return parse_optional_count(t)


def parse_bf16(text: str) -> bool | str:
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        return parse_bool(text)
    except ValueError:
        raise ValueError(f"bf16 must be true, false or auto, got {text!r}") from None


def parse_heldout(text: str) -> list[str] | str:
    return AUTO if str(text).strip().lower() == AUTO else parse_list(text)


def parse_optional_text(text: str) -> str | None:
    return None if str(text).strip().lower() in ("", "none", "null") else str(text)


# ------------------------------------------------------------------------------------------------ settings
@dataclass(kw_only=True)
class TrainSettings(ModelOutputSettings):
    """One training stage. The fields from ``stage`` to ``trainer_extra`` are the profile's (:meth:`config`,
    written to the run's ``resolved_config.yaml`` and manifest); the others say which run this is."""

    COMMAND = "train"
    YAML = "train_stage1"
    CONFIG_ENV = "TRAIN_CONFIG"

    # ---- the profile's settings (YAML keys, in the profiles' order) ---------------------------------------
    stage: int = setting(env="STAGE", choices=(1, 2), parse=parse_count,
                         help="1 = expert initialisation, 2 = router training")
    train_mode: str = setting(flag=None, choices=TRAIN_MODES, help="experts (stage 1: experts + routers) or routers")
    languages: list[str] = setting(env="NEW_LANGS", env_aliases=("TARGET_LANGS",), metavar="NEW_LANGS",
                                   help="new (target) languages, comma separated")
    replay_languages: list[str] = setting(env="OLD_LANGS", env_aliases=("REPLAY_LANGS",), metavar="OLD_LANGS",
                                          help="old languages mixed in as replay (stage 2; env used in stage 2 only)")
    train_files: dict = setting(flag=None, help="per-language source override: {lang: path.jsonl | hf:NAME[:CONFIG]}")
    hf_split: str = setting(flag=None, help="split read from hf: sources (streamed)")
    max_samples: int | None = setting(env="MAX_SAMPLES", range=(1, None), parse=parse_optional_count,
                                      help="documents per new language (null = all)")
    replay_max_samples: int | None = setting(env="REPLAY_MAX_SAMPLES", range=(1, None), parse=parse_optional_count,
                                             help="documents per replay language (null = all)")
    cutoff_len: int = setting(env="CUTOFF_LEN", range=(2, None), help="packed block length in tokens")
    max_tokens: int | str | None = setting(env="TRAIN_MAX_TOKENS", parse=parse_max_tokens, metavar="TRAIN_MAX_TOKENS",
                                           help="training tokens to pack (tokenizing stops there): auto = what --max-steps "
                                                "will see, all, or a number such as 5e8 (stage 1 default auto, stage 2 all)")
    top_k: int = setting(env="TRAIN_TOP_K", env_aliases=("TOPK",), range=(1, None), help="experts per token",
                         paper="Table 7: 2")
    aux_loss_coef: float = setting(env="AUX_LOSS_COEF", range=(0, None), help="load-balancing loss weight",
                                   paper="Table 7: 0.01")
    aux_loss_form: str = setting(env="AUX_LOSS_FORM", choices=AUX_LOSS_FORMS,
                                 help="balance loss convention: hf (HF Mixtral's, the reference) or normalized (slot shares "
                                      "sum to 1)")
    lpr_loss_coef: float = setting(env="LPR_LOSS_COEF", range=(0, None), help="language-prior routing loss weight")
    lpr_input: str = setting(env="LPR_INPUT", choices=LPR_INPUTS,
                             help="LPR cross-entropy on router probs (MoE-LPR's code) or logits (the paper's text)")
    optim: str = setting(flag=None, help="transformers optimizer name", paper="Table 7: AdamW")
    learning_rate: float = setting(env="LEARNING_RATE", range=(0, None), lo_open=True, help="peak learning rate",
                                   paper="Table 7: 1e-4 (stage 1)")
    adam_beta1: float = setting(flag=None, range=(0, 1), hi_open=True, help="AdamW beta1")
    adam_beta2: float = setting(flag=None, range=(0, 1), hi_open=True, help="AdamW beta2")
    adam_epsilon: float = setting(flag=None, range=(0, None), help="AdamW epsilon")
    weight_decay: float = setting(flag=None, range=(0, None), help="AdamW weight decay")
    lr_scheduler_type: str = setting(flag=None, help="learning-rate schedule (transformers name)")
    warmup_steps: int | float = setting(flag=None, range=(0, None), parse=parse_number, help="warm-up steps")
    effective_batch_size: int | None = setting(env="EFFECTIVE_BATCH_SIZE", range=(1, None), parse=parse_optional_count,
                                               help="sequences per optimizer step over all processes; per-device batch and "
                                                    "accumulation are derived from it", paper="Table 7: 32")
    per_device_train_batch_size: int | str = setting(flag="--batch-size", env="TRAIN_BATCH_SIZE", env_aliases=("BATCH_SIZE",),
                                                     parse=parse_int_or_auto, metavar="TRAIN_BATCH_SIZE",
                                                     help="per-device batch size (default: derived from the effective batch "
                                                          "and the world size)")
    gradient_accumulation_steps: int | str = setting(flag="--grad-accum", env="GRADIENT_ACCUMULATION_STEPS",
                                                     parse=parse_int_or_auto, metavar="GRADIENT_ACCUMULATION_STEPS",
                                                     help="gradient accumulation steps (default: derived; both explicit may "
                                                          "override the effective batch, recorded)")
    max_per_device_batch_size: int | None = setting(flag=None, range=(1, None), parse=parse_optional_count,
                                                    help="cap of a derived per-device batch")
    max_steps: int = setting(env="MAX_STEPS", range=(-1, None), help="optimizer steps (-1: use --epochs)")
    num_train_epochs: int | float = setting(flag="--epochs", env="NUM_TRAIN_EPOCHS", range=(0, None), parse=parse_number,
                                            metavar="NUM_TRAIN_EPOCHS", help="epochs when max_steps is -1")
    max_grad_norm: float = setting(flag=None, range=(0, None), help="gradient clipping norm")
    bf16: bool | str = setting(flag=None, env="BF16", parse=parse_bf16,
                               help="bf16 autocast: true, false or auto (where computed natively)")
    seed: int = setting(env="TRAIN_SEED", env_aliases=("SEED",), range=(0, None), help="random seed")
    gradient_checkpointing: bool = setting(flag=None, help="recompute activations in the backward pass")
    dataloader_num_workers: int = setting(flag=None, range=(0, None), help="data-loader worker processes")
    logging_steps: int = setting(env="LOGGING_STEPS", range=(1, None), help="log every N steps")
    save_steps: int = setting(env="SAVE_STEPS", range=(1, None), help="checkpoint every N steps")
    save_total_limit: int | None = setting(flag=None, range=(1, None), parse=parse_optional_count,
                                           help="checkpoints kept (null = all)")
    save_last: bool = setting(flag=None, help="checkpoint the last step too (false: the adapter and manifest hold the "
                                              "finished run; a kill before they exist resumes from the previous checkpoint)")
    report_to: str | list = setting(env="REPORT_TO", help="auto, none, tensorboard, wandb (comma separated)")
    deepspeed: str | dict | None = setting(env="DEEPSPEED_CONFIG", parse=parse_optional_text, metavar="DEEPSPEED_CONFIG",
                                           help="DeepSpeed config: 'zero2' (shipped) or a JSON path")
    heldout_languages: str | list = setting(flag=None, parse=parse_heldout,
                                            help="held-out perplexity languages: auto (languages + replay + en) or a list")
    heldout_max_tokens: int = setting(flag=None, range=(1, None), help="held-out tokens per language")
    heldout_block_len: int = setting(flag=None, range=(1, None), help="held-out block length")
    heldout_batch_size: int = setting(flag=None, range=(1, None), help="held-out batch size")
    heldout_dense: bool = setting(flag=None, help="also measure the dense base model (adapter disabled)")
    trainer_extra: dict = setting(flag=None, help="any further transformers.TrainingArguments field")
    # ---- which run ------------------------------------------------------------------------------------------
    allocation: str = setting("neuronmoe", env="ALLOCATION", yaml=False, metavar="NAME",
                              help="allocation name ($OUTPUT_DIR/allocation/<name>.json) or a JSON path; also names the run")
    run_name: str | None = setting(None, env="RUN_NAME", yaml=False, name_like=True, metavar="NAME",
                                   help="run name: $OUTPUT_DIR/train/<run>/ (default <allocation>-s<stage>)")
    init_adapter: str | None = setting(None, env="STAGE1_ADAPTER", yaml=False, metavar="DIR",
                                       help="stage 2: the stage-1 adapter folder (default $OUTPUT_DIR/train/<allocation>-s1/adapter)")
    data_dir: str | None = setting(None, env="DATA_DIR", yaml=False, metavar="DIR",
                                   help="prepared data folder with train/, replay/, heldout/ (default $OUTPUT_DIR/data)")
    profile: str = setting(AUTO, env="TRAIN_PROFILE", choices=PROFILES, yaml=False,
                           help="default settings: paper (Table 7: train_stage{1,2}.yaml) or cpu (train_cpu_stage{1,2}.yaml, "
                                "minutes on 2 cores); auto = paper on a GPU, cpu otherwise")
    resume: bool = setting(False, switch=True, env="RESUME", yaml=False,
                           help="continue the run from its last checkpoint (skip it when complete)")
    overwrite: bool = setting(False, switch=True, env="OVERWRITE", yaml=False,
                              help="delete an existing run folder and start again")
    use_cache: bool = setting(True, flag="--no-cache", switch=False, yaml=False,
                              help="tokenize again instead of using $NEURONMOE_CACHE/tokenized")
    device: str = setting("auto", env="DEVICE", yaml=False, help="auto (GPU when present) or cpu")
    # ---- derived by resolve (not settings) ---------------------------------------------------------------------
    yaml_profile: str = field(default="", repr=False)  #: the shipped profile the defaults came from
    batch: dict = field(default_factory=dict, repr=False)  #: the batch record (derive_batch)

    # ---- resolution ------------------------------------------------------------------------------------------
    @classmethod
    def profile_yaml(cls, profile: str | None = None) -> str | None:
        """``profile`` is a shipped profile's name here (``train_cpu_stage2``); default ``train_stage1``."""
        return profile or cls.YAML

    @classmethod
    def resolve(cls, flags: Mapping[str, Any] | argparse.Namespace | None = None, *,
                environ: Mapping[str, str] | None = None, config_file: str | None = None,
                sets: Sequence[str] | None = None, world_size: int | None = None, **context: Any) -> TrainSettings:
        """As :meth:`Settings.resolve`; the stage and ``--profile`` choose the shipped YAML, ``OLD_LANGS`` is
        read by stage 2 only, ``bf16: auto`` becomes this machine's answer, and the batch fields ``auto`` are
        derived for ``world_size`` processes (default: ``WORLD_SIZE`` of ``environ``)."""
        environ = os.environ if environ is None else environ
        given = dict(vars(flags)) if isinstance(flags, argparse.Namespace) else dict(flags or {})
        config_file = config_file or (None if given.get("config_file") is _UNSET else given.get("config_file"))
        sets = [*(sets or []), *(given.pop("sets", None) or [])]
        given.pop("config_file", None)
        if "profile" in context:  # the field, not the base class's YAML selector
            given["profile"] = context.pop("profile")
        stage = _early(cls, "stage", given, context, environ, "--stage")
        if stage is None:
            raise ConfigError("--stage: required (1 = expert initialisation, 2 = router training; env STAGE)")
        name = profile_name(stage, resolve_profile(_early(cls, "profile", given, context, environ, "--profile") or AUTO))
        if stage == 1:  # OLD_LANGS is stage 2's replay: stage 1 has none
            environ = {k: v for k, v in environ.items() if k not in ("OLD_LANGS", "REPLAY_LANGS")}
        s: TrainSettings = super().resolve(given, environ=environ, config_file=config_file, sets=sets, profile=name,
                                           **context)  # type: ignore[assignment]
        s.yaml_profile = name
        if s.bf16 == AUTO:  # bf16 autocast only where it is computed natively (it is emulated, slower, elsewhere)
            from neuronmoe.utils.device import native_bf16

            s.bf16 = native_bf16()
        s.batch = apply_batch(s, world_size if world_size is not None else world_size_from(environ))
        return s

    # ---- validation ------------------------------------------------------------------------------------------
    def check(self) -> None:
        self._check_types()
        self._check_counts()
        self._check_languages()
        if self.resume and self.overwrite:
            self.fail("overwrite", "--resume and --overwrite exclude each other")

    def _check_types(self) -> None:
        for name in ("warmup_steps", "num_train_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.fail(name, f"expected a number, got {v!r}")
        if self.bf16 != AUTO and not isinstance(self.bf16, bool):
            self.fail("bf16", f"bf16 must be true, false or auto, got {self.bf16!r}")
        kinds = {"report_to": (str, list), "deepspeed": (str, dict, type(None)), "heldout_languages": (str, list)}
        for name, types in kinds.items():
            if not isinstance(getattr(self, name), types):
                self.fail(name, f"expected {' or '.join(t.__name__ for t in types)}, got {getattr(self, name)!r}")
        if isinstance(self.heldout_languages, str) and self.heldout_languages != AUTO:
            self.fail("heldout_languages", f"expected auto or a list of languages, got {self.heldout_languages!r}")

    def _check_counts(self) -> None:
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            v = getattr(self, name)
            if v != AUTO and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                self.fail(name, f"must be an int >= 1 or auto, got {v!r}")
        mt = self.max_tokens
        if isinstance(mt, float) and math.isfinite(mt) and mt == int(mt):
            self.max_tokens = mt = int(mt)  # 5.0e8 in YAML
        if not (mt is None or mt in (AUTO, "all") or (isinstance(mt, int) and not isinstance(mt, bool) and mt >= 1)):
            self.fail("max_tokens", f"must be auto, all, null or a positive token count, got {mt!r}")
        if self.max_steps == 0:
            self.fail("max_steps", "must be >= 1, or -1 to train num_train_epochs; got 0")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            self.fail("num_train_epochs", "must be > 0 when max_steps is -1 (set max_steps > 0 or num_train_epochs > 0)")

    def _check_languages(self) -> None:
        from neuronmoe.languages import check_languages

        if not self.languages:
            self.fail("languages", "no new language given (languages is empty)")
        if self.stage == 2 and not self.replay_languages:
            self.fail("replay_languages", "stage 2 needs replay_languages (old languages for the LPR loss)")
        both = set(self.languages) & set(self.replay_languages)
        if both:
            self.fail("replay_languages", f"{', '.join(sorted(both))} both a new and a replay language")
        check_languages(list(self.languages), self.origin("languages"))
        if self.replay_languages:
            check_languages(list(self.replay_languages), self.origin("replay_languages"))

    # ---- what the stage reads ---------------------------------------------------------------------------------
    @classmethod
    def config_keys(cls) -> list[str]:
        """The profile's keys (YAML settings), in declaration order."""
        return [f.name for f, m, _ in cls.fields() if m.yaml]

    def config(self) -> dict[str, Any]:
        """The resolved profile settings as a plain dict (the run's ``resolved_config.yaml`` ``config``)."""
        return {k: getattr(self, k) for k in self.config_keys()}

    def record(self) -> dict[str, Any]:
        """Where the settings came from: the shipped profile, each field's source, the batch record."""
        shipped = _yaml_label(self.yaml_profile)  # the profile with its inherit: chain
        sources = {k: w for k, w in self.provenance().items() if w != shipped}
        return {"profile": self.yaml_profile, "sources": sources, "batch": dict(self.batch)}

    @property
    def resolved_profile(self) -> str:
        """``paper`` or ``cpu`` (what ``--profile auto`` became)."""
        return "cpu" if self.yaml_profile.startswith("train_cpu") else "paper"

    def default_run_name(self) -> str:
        return default_run_name(self.stage, self.allocation)


def _early(cls: type[TrainSettings], name: str, given: Mapping[str, Any], context: Mapping[str, Any],
           environ: Mapping[str, str], flag: str) -> Any:
    """A field needed before the YAML is chosen (``stage``, ``profile``): the caller's, the flag's, else the
    variable's; parsed and checked against the field's choices."""
    from neuronmoe.settings import read_env

    f, m, tp = next(x for x in cls.fields() if x[0].name == name)
    source, v = flag, next((x for x in (context.get(name), given.get(name)) if x not in (None, _UNSET, "")), None)
    if v is None:
        raw, var = read_env(m, environ, cls.COMMAND)
        if raw is None:
            return None
        source, v = f"env {var}", raw
    v = cls._parse(f, m, tp, v, source)
    if m.choices and v not in m.choices:
        raise ConfigError(f"{source}: {v!r} is not one of {', '.join(map(str, m.choices))}")
    return v


def profile_name(stage: int, profile: str) -> str:
    """The shipped YAML of a stage and a resolved profile (``paper`` or ``cpu``)."""
    if profile not in ("paper", "cpu"):
        raise ConfigError(f"--profile must be paper, cpu or auto, got {profile!r}")
    return f"train_stage{stage}" if profile == "paper" else f"train_cpu_stage{stage}"


def resolve_profile(profile: str | None) -> str:
    """``auto`` -> ``paper`` on a GPU, ``cpu`` otherwise."""
    if profile in (None, "", AUTO):
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    return str(profile)


def default_run_name(stage: int, allocation: str) -> str:
    from pathlib import Path

    stem = Path(allocation).stem if allocation.endswith(".json") else allocation
    return f"{stem}-s{stage}"


# ------------------------------------------------------------------------------------------------ the batch
class BatchError(ConfigError):
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
        per_device, accum = _split_both(effective, world_size, max_per_device)
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


def _split_both(effective: int, world_size: int, max_per_device: int | None) -> tuple[int, int]:
    if effective % world_size:
        raise BatchError(
            f"effective batch {effective} cannot be split over {world_size} processes (world size): "
            f"use a world size that divides {effective}, or set --batch-size and --grad-accum explicitly "
            f"(which changes the effective batch)")
    local = effective // world_size
    cap = min(local, max_per_device or local)
    per_device = max(d for d in range(1, cap + 1) if local % d == 0)
    return per_device, local // per_device


def world_size_from(environ: Mapping[str, str]) -> int:
    """The number of training processes the launcher announced (torchrun, accelerate, deepspeed: WORLD_SIZE)."""
    raw = environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(raw))
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE={raw!r}: not an integer") from None


def apply_batch(s: TrainSettings, world_size: int) -> dict[str, Any]:
    """Replace ``auto`` batch fields of ``s`` by the derived numbers; returns the batch record."""
    rec = derive_batch(s.effective_batch_size, world_size, s.per_device_train_batch_size,
                       s.gradient_accumulation_steps, s.max_per_device_batch_size)
    s.per_device_train_batch_size = rec["per_device_train_batch_size"]
    s.gradient_accumulation_steps = rec["gradient_accumulation_steps"]
    if rec["override"]:
        logging.getLogger("neuronmoe.training").warning(
            "effective batch %d (= %d per device x %d accumulation x %d processes) overrides the profile's %d",
            rec["effective_batch_size"], rec["per_device_train_batch_size"], rec["gradient_accumulation_steps"],
            world_size, rec["contract"])
    return rec


def _train_extra(p: argparse.ArgumentParser) -> None:
    # the `deepspeed` launcher appends --local_rank=N; the rank is read from the environment
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


COMMANDS = [Command(
    "train", TrainSettings, "neuronmoe.training.stage:train_main", extra=_train_extra,
    help="two-stage MoE training: --stage 1 (experts) or --stage 2 (routers + LPR)",
    description="Stage 1: freeze the base, add experts per the allocation, train experts + routers on the new "
    "language(s). Stage 2: load the stage-1 adapter, train the routers only on new + replay data with the LPR loss. "
    "Settings: profile YAML < --config < environment < flags < --set (docs/training.md).")]

__all__ = ["COMMANDS", "TrainSettings", "derive_batch", "BatchError", "RESUME_FREE_KEYS"]
