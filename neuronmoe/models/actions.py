"""``neuronmoe model``: fetch a built-in alias, print a model's facts, list the known models, or save a
random-weight copy (settings: :mod:`neuronmoe.models.settings`)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from neuronmoe.errors import ConfigError

if TYPE_CHECKING:
    from neuronmoe.models.settings import ModelSettings


def main(s: ModelSettings) -> int:
    """Run ``s.action``; prints its result."""
    from neuronmoe.models import ALIASES, describe, resolve_model, shipped_configs

    if s.action == "list":
        for name, a in ALIASES.items():
            print(f"{name:14s} alias   {a.description}")
        for name in shipped_configs():
            print(f"{name:14s} config  (config only, no weights)")
    elif s.action == "fetch":
        print(resolve_model(s.name))
    elif s.action == "random":
        print(save_random(str(s.name), str(s.out), s.tokenizer, s.dtype, s.seed))
    else:
        print(json.dumps(describe(s.name), indent=2))
    return 0


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
        raise ConfigError(f"--tokenizer {tokenizer}: {len(tok)} tokens do not fit {name}'s vocabulary of {vocab}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=resolve_dtype(dtype, "cpu"))
    validate_model(model)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out
