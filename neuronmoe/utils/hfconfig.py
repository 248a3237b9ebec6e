"""Facts read from a transformers config, without the architecture table (``neuronmoe.models.arch`` builds on
these; the bottom layer never imports ``neuronmoe.models``)."""
from __future__ import annotations

from typing import Any

from neuronmoe.errors import InputError

#: the decoder's sizes and the config fields that hold them (every architecture of ``neuronmoe.models.arch``
#: reads them from these fields; an entry there may name others)
SIZE_KEYS: dict[str, str] = {
    "num_layers": "num_hidden_layers",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
}


def text_config(model_or_config: Any) -> Any:
    """The decoder's config (the text config for multimodal wrappers such as Gemma-3)."""
    cfg = getattr(model_or_config, "config", model_or_config)
    if getattr(cfg, "model_type", None) == "gemma3" and hasattr(cfg, "text_config"):
        return cfg.text_config
    return cfg


def config_sizes(model_or_config: Any, keys: dict[str, str] = SIZE_KEYS) -> dict[str, int]:
    """``{"num_layers", "hidden_size", "intermediate_size"}`` from the (text) config's fields ``keys``."""
    cfg = text_config(model_or_config)
    out = {}
    for key, attr in keys.items():
        val = getattr(cfg, attr, None)
        if val is None:
            raise InputError(f"model config has no {attr!r} (needed for {key})")
        out[key] = int(val)
    return out
