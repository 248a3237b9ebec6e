"""The base model's held-out perplexity, computed once per output folder (``train/dense_heldout.json``).

Every training run reports its held-out perplexity next to the base model's (``dense_perplexity``). The base
model's number depends only on the model files, the held-out file and the scoring settings, so the first run
computes it and the others read it: the key is the SHA-256 of those (model folder digest, held-out file digest,
block length, token cap, batch size, autocast, torch version). A missing, unreadable or foreign entry is simply
computed again; the file is rewritten atomically under a lock, so parallel runs never corrupt it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


def dense_key(model_path: str, heldout: Path, kw: dict[str, Any]) -> str:
    """What the base model's held-out perplexity depends on, hashed."""
    import torch

    from neuronmoe.utils.fingerprint import folder_digest
    from neuronmoe.utils.io import sha256_file

    mp = Path(model_path)
    model = folder_digest(mp) if mp.is_dir() else {"id": model_path}
    payload = {"model": model, "heldout": sha256_file(heldout), "settings": kw, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_dense(path: Path, model_path: str, heldout: Path, kw: dict[str, Any], compute: Callable[[], float]) -> float:
    """``compute()`` unless ``path`` already holds its value for this key; the value is stored for the next run."""
    import math

    from filelock import FileLock

    from neuronmoe.utils.io import atomic_write_json

    key = dense_key(model_path, heldout, kw)
    hit = _read(path).get(key)
    if isinstance(hit, dict) and isinstance(hit.get("perplexity"), (int, float)) and math.isfinite(hit["perplexity"]):
        log.info("dense held-out perplexity of %s from %s", heldout.name, path)
        return float(hit["perplexity"])
    value = compute()
    if math.isfinite(value):
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_name(f".{path.name}.lock"))):
            data = _read(path)
            data[key] = {"perplexity": value, "heldout": str(heldout), "model": model_path}
            atomic_write_json(path, data)
    return value
