"""Fingerprints that let a stage refuse inputs made for another model or tokenizer (the bottom layer: it reads
configs through :mod:`neuronmoe.utils.hfconfig`, never through ``neuronmoe.models``)."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 (hex, 16 chars) of the vocabulary and special tokens: equal iff tokenisation is."""
    vocab = tokenizer.get_vocab()
    items = sorted(vocab.items(), key=lambda kv: kv[1])
    special = {k: str(v) for k, v in sorted((tokenizer.special_tokens_map or {}).items())}
    payload = json.dumps([items, special, type(tokenizer).__name__ != ""], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def config_fingerprint(config: Any) -> dict[str, Any]:
    """The shape facts an adapter or allocation must match: type, layers, hidden and MLP sizes."""
    from neuronmoe.utils.hfconfig import config_sizes, text_config

    cfg = text_config(config)
    out: dict[str, Any] = {"model_type": getattr(cfg, "model_type", None)}
    out.update(config_sizes(config))
    out["vocab_size"] = int(getattr(cfg, "vocab_size", 0) or 0)
    return out
