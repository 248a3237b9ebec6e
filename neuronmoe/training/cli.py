"""``neuronmoe train --stage 1|2``: two-stage MoE training on the Hugging Face Trainer."""
from __future__ import annotations

import argparse

from neuronmoe.cli_common import add_model_arg, add_output_dir_arg, env, split_langs

#: explicit flags -> (config key, type, env var shown in --help)
_FLAGS = [
    ("--languages", "languages", str, "NEW_LANGS", "new (target) languages, comma separated"),
    ("--replay-languages", "replay_languages", str, "OLD_LANGS", "old languages mixed in as replay (stage 2; env used in stage 2 only)"),
    ("--max-samples", "max_samples", int, "MAX_SAMPLES", "documents per new language"),
    ("--replay-max-samples", "replay_max_samples", int, "REPLAY_MAX_SAMPLES", "documents per replay language"),
    ("--cutoff-len", "cutoff_len", int, "CUTOFF_LEN", "packed block length in tokens"),
    ("--max-tokens", "max_tokens", str, "TRAIN_MAX_TOKENS", "training tokens to pack (tokenizing stops there): auto = what "
     "--max-steps will see, all, or a number such as 5e8 (stage 1 default auto, stage 2 all)"),
    ("--top-k", "top_k", int, "TRAIN_TOP_K", "experts per token"),
    ("--aux-loss-coef", "aux_loss_coef", float, "AUX_LOSS_COEF", "load-balancing loss weight"),
    ("--lpr-loss-coef", "lpr_loss_coef", float, "LPR_LOSS_COEF", "language-prior routing loss weight"),
    ("--aux-loss-form", "aux_loss_form", str, "AUX_LOSS_FORM", "balance loss convention: hf (HF Mixtral's, the "
     "reference) or normalized (slot shares sum to 1)"),
    ("--lpr-input", "lpr_input", str, "LPR_INPUT", "LPR cross-entropy on router probs (MoE-LPR's code) or logits (the paper's text)"),
    ("--effective-batch-size", "effective_batch_size", int, "EFFECTIVE_BATCH_SIZE",
     "sequences per optimizer step over all processes; per-device batch and accumulation are derived from it"),
    ("--learning-rate", "learning_rate", float, "LEARNING_RATE", "peak learning rate"),
    ("--batch-size", "per_device_train_batch_size", int, "TRAIN_BATCH_SIZE",
     "per-device batch size (default: derived from the effective batch and the world size)"),
    ("--grad-accum", "gradient_accumulation_steps", int, "GRADIENT_ACCUMULATION_STEPS",
     "gradient accumulation steps (default: derived; both explicit may override the effective batch, recorded)"),
    ("--max-steps", "max_steps", int, "MAX_STEPS", "optimizer steps (-1: use --epochs)"),
    ("--epochs", "num_train_epochs", float, "NUM_TRAIN_EPOCHS", "epochs when max_steps is -1"),
    ("--logging-steps", "logging_steps", int, "LOGGING_STEPS", "log every N steps"),
    ("--save-steps", "save_steps", int, "SAVE_STEPS", "checkpoint every N steps"),
    ("--report-to", "report_to", str, "REPORT_TO", "auto, none, tensorboard, wandb (comma separated)"),
    ("--deepspeed", "deepspeed", str, "DEEPSPEED_CONFIG", "DeepSpeed config: 'zero2' (shipped) or a JSON path"),
    ("--seed", "seed", int, "TRAIN_SEED", "random seed"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="two-stage MoE training: --stage 1 (experts) or --stage 2 (routers + LPR)",
        description="Stage 1: freeze the base, add experts per the allocation, train experts + routers on the "
        "new language(s). Stage 2: load the stage-1 adapter, train the routers only on new + replay data with "
        "the LPR loss. Settings: profile YAML < --config < environment < flags < --set.",
    )
    p.add_argument("--stage", type=int, choices=(1, 2), default=env("STAGE"),
                   required=env("STAGE") is None, help="1 = expert initialisation, 2 = router training (env STAGE)")
    add_model_arg(p)
    add_output_dir_arg(p)
    p.add_argument("--allocation", default=env("ALLOCATION", "neuronmoe"),
                   help="allocation name ($OUTPUT_DIR/allocation/<name>.json) or a JSON path; also names the run "
                   "(env ALLOCATION; default neuronmoe)")
    p.add_argument("--run-name", dest="run", default=env("RUN_NAME"),
                   help="run name: $OUTPUT_DIR/train/<run>/ (env RUN_NAME; default <allocation>-s<stage>)")
    p.add_argument("--init-adapter", default=env("STAGE1_ADAPTER"),
                   help="stage 2: the stage-1 adapter folder (env STAGE1_ADAPTER; default "
                   "$OUTPUT_DIR/train/<allocation>-s1/adapter)")
    p.add_argument("--data-dir", default=env("DATA_DIR"),
                   help="prepared data folder with train/, replay/, heldout/ (env DATA_DIR; default $OUTPUT_DIR/data)")
    p.add_argument("--profile", default=env("TRAIN_PROFILE", "auto"), choices=("auto", "paper", "cpu"),
                   help="default settings: paper (Table 7: train_stage{1,2}.yaml) or cpu (train_cpu_stage{1,2}.yaml, "
                   "minutes on 2 cores); auto = paper on a GPU, cpu otherwise (env TRAIN_PROFILE)")
    p.add_argument("--config", default=env("TRAIN_CONFIG"),
                   help="a YAML file of overrides over the profile (env TRAIN_CONFIG)")
    for flag, key, typ, var, text in _FLAGS:
        p.add_argument(flag, dest=f"opt_{key}", metavar=var, type=typ, default=None, help=f"{text} (env {var}; config key {key})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set warmup_steps=100 --set train_files.el=hf:NAME:CONFIG "
                   "--set trainer_extra.torch_compile=true (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", default=env("RESUME", "0") == "1",
                   help="continue the run from its last checkpoint (skip it when complete) (env RESUME=1)")
    g.add_argument("--overwrite", action="store_true", default=env("OVERWRITE", "0") == "1",
                   help="delete an existing run folder and start again (env OVERWRITE=1)")
    p.add_argument("--no-cache", action="store_true", help="tokenize again instead of using $NEURONMOE_CACHE/tokenized")
    p.add_argument("--device", default=env("DEVICE", "auto"), help="auto (GPU when present) or cpu (env DEVICE)")
    # the `deepspeed` launcher appends --local_rank=N; the rank is read from the environment
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run, describe=describe)


def _flags(args: argparse.Namespace) -> dict:
    flags = {}
    for _flag, key, _typ, _var, _text in _FLAGS:
        v = getattr(args, f"opt_{key}")
        if v is not None and key in ("languages", "replay_languages"):
            v = split_langs(v)
        flags[key] = v
    return flags


def describe(args: argparse.Namespace) -> dict:
    """The resolved training configuration and where each layer came from (``NEURONMOE_PRINT_ARGS=1``)."""
    from neuronmoe.training.run import resolve_profile
    from neuronmoe.training.settings import resolve

    cfg, prov = resolve(args.stage, resolve_profile(args.profile), args.config, _flags(args), args.sets)
    return {"config": cfg, "provenance": prov}


def run(args: argparse.Namespace) -> int:
    from neuronmoe.training.run import TrainOptions, train

    flags = _flags(args)
    res = train(TrainOptions(
        stage=args.stage, model=args.model, output_dir=args.output_dir, allocation=args.allocation, run=args.run,
        init_adapter=args.init_adapter, data_dir=args.data_dir, profile=args.profile, config=args.config,
        flags=flags, sets=args.sets, resume=args.resume, overwrite=args.overwrite, use_cache=not args.no_cache,
        device=args.device,
    ))
    if res.get("skipped"):
        print(f"{res['run_dir']}: already complete")
    else:
        print(f"{res['run_dir']}/adapter")
    return 0
