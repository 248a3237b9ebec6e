"""``neuronmoe export`` and ``neuronmoe lm-eval`` (docs/export.md)."""
from __future__ import annotations

import argparse

from neuronmoe.cli_common import env

LM_EVAL_COMMAND = "lm-eval"


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        LM_EVAL_COMMAND,
        add_help=False,
        help="lm-eval's own command line (every flag of `lm_eval`) with the NEURONMOE PEFT method registered: "
        "--model hf --model_args pretrained=BASE,peft=ADAPTER --tasks ...",
        description="Runs lm-eval 0.4.13's CLI on the arguments that follow; `neuronmoe lm-eval --help` prints lm-eval's help.",
    )  # dispatched by neuronmoe.cli.main before argparse, so that every argument reaches lm-eval unchanged
    from neuronmoe.interop.export import EXPORT_DTYPES

    p = sub.add_parser(
        "export",
        help="write base model + MoE adapter as one Hugging Face model folder (loads with trust_remote_code=True, "
        "no neuronmoe needed)",
        description="Export a NeuronMoE adapter merged with its base model into an ordinary Hugging Face model folder: "
        "config.json with auto_map, safetensors weights, tokenizer, modeling_neuronmoe.py and a model card. "
        "AutoModelForCausalLM.from_pretrained(OUT, trust_remote_code=True) then loads it anywhere.",
    )
    p.add_argument("--adapter", default=env("PEFT_MODEL_PATH"), required=env("PEFT_MODEL_PATH") is None,
                   help="NeuronMoE adapter folder (adapter_config.json) (env PEFT_MODEL_PATH)")
    p.add_argument("--out", required=True, help="folder to write; must not exist unless --overwrite")
    p.add_argument("--model", default=env("BASE_MODEL_PATH"),
                   help="base model (alias, local folder or hub id) (env BASE_MODEL_PATH; default: the adapter's "
                   "base_model_name_or_path)")
    p.add_argument("--dtype", default="auto", type=str.lower, choices=list(EXPORT_DTYPES),
                   help="weight dtype of the export (routers stay float32); auto = the base checkpoint's dtype")
    p.add_argument("--device", default="cpu", help="device used to load and merge (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="after writing, upload the folder to this Hugging Face Hub repository (needs a token: "
                   "`huggingface-cli login` or HF_TOKEN)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository as private")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from neuronmoe.interop.export import export

    out = export(args.adapter, args.out, model=args.model, dtype=args.dtype, overwrite=args.overwrite,
                 push_to_hub=args.push_to_hub, private=args.private, device=args.device)
    print(out)
    return 0
