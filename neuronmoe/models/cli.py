"""``neuronmoe model``: fetch a built-in alias, print a model's facts, or save a random-weight copy."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="fetch a built-in model alias into the cache / show a model's facts")
    p.add_argument(
        "action", choices=["fetch", "info", "list", "random"],
        help="fetch: convert an alias once into the cache; info: print dims and source; list: known aliases and "
        "shipped configs; random: save a random-weight model of NAME's config to --out (benchmarks, GPU checks)",
    )
    p.add_argument("name", nargs="?", default=None, help="alias, local folder, shipped config or hub id (default: the default alias)")
    p.add_argument("--out", default=None, help="random: output folder (must not exist)")
    p.add_argument("--tokenizer", default=None, help="random: model whose tokenizer to save alongside (default: the default alias)")
    p.add_argument("--dtype", default="bfloat16", help="random: weight dtype (default bfloat16)")
    p.add_argument("--seed", type=int, default=0, help="random: initialisation seed (default 0)")
    p.set_defaults(func=run)


def save_random(name: str, out: str, tokenizer: str | None = None, dtype: str = "bfloat16", seed: int = 0) -> str:
    """Save a model with ``name``'s config and random weights, plus a tokenizer, as a HF folder.

    The tokenizer's ids must fit the config's vocabulary (e.g. a Llama-3.2-3B-shaped model with the
    SmolLM2 tokenizer), so that every stage can run on it offline.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from neuronmoe.models import load_config, load_tokenizer, validate_model
    from neuronmoe.utils.device import resolve_dtype
    from neuronmoe.utils.io import atomic_dir

    cfg = load_config(name)
    tok = load_tokenizer(tokenizer)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    if len(tok) > vocab:
        raise ValueError(f"--tokenizer {tokenizer}: {len(tok)} tokens do not fit {name}'s vocabulary of {vocab}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=resolve_dtype(dtype, "cpu"))
    validate_model(model)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out


def run(args: argparse.Namespace) -> int:
    from neuronmoe.models import ALIASES, describe, resolve_model, shipped_configs

    if args.action == "list":
        for name, a in ALIASES.items():
            print(f"{name:14s} alias   {a.description}")
        for name in shipped_configs():
            print(f"{name:14s} config  (config only, no weights)")
        return 0
    if args.action == "fetch":
        print(resolve_model(args.name))
        return 0
    if args.action == "random":
        if not args.name or not args.out:
            raise ValueError("model random: give NAME (e.g. llama-3.2-3b) and --out FOLDER")
        print(save_random(args.name, args.out, args.tokenizer, args.dtype, args.seed))
        return 0
    print(json.dumps(describe(args.name), indent=2))
    return 0
