"""Fingerprints that let a stage refuse inputs made for another model or tokenizer (the bottom layer: it reads
configs through :mod:`neuronmoe.utils.hfconfig`, never through ``neuronmoe.models``)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
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


#: files of a model folder that describe where it came from rather than what it is
_NOT_MODEL = {"neuronmoe_source.json", "README.md"}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(p: Path) -> str:
    """sha256 of a file, remembered for this process by (path, size, mtime)."""
    from neuronmoe.utils.io import sha256_file

    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(p)
    return _DIGESTS[key]


def folder_digest(folder: str | os.PathLike) -> dict[str, str]:
    """``{relative path: sha256}`` of every file of a model folder (hidden files and provenance notes left out): what
    identifies a local model by content (evaluation provenance, the training's dense held-out cache)."""
    root = Path(folder)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and p.name not in _NOT_MODEL:
            out[rel.as_posix()] = file_digest(p)
    return out
