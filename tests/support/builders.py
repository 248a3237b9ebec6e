"""Stage outputs for tests, written where the layout puts them and in the producing stage's own format."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from neuronmoe.allocation.store import build_record
from neuronmoe.layout import Layout


def model_fingerprint(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The base-model fingerprint the allocation stage records for ``model_dir``."""
    from transformers import AutoConfig

    from neuronmoe.utils.fingerprint import config_fingerprint

    return config_fingerprint(AutoConfig.from_pretrained(model_dir))


def allocation_record(experts: Sequence[int], *, name: str = "test", mode: str = "test", model_dir: Any = None,
                      targets: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """An allocation JSON record as ``neuronmoe allocate`` builds it (``extra`` fields are added on top)."""
    rec = build_record(experts, name=name, mode=mode, source=None, targets=list(targets), e_min=None, e_max=None,
                       rounding=None, scores=None)
    if model_dir is not None:
        rec["base_model_fingerprint"] = model_fingerprint(model_dir)
    rec.update(extra)
    return rec


def write_allocation(where: str | os.PathLike, experts: Sequence[int], *, name: str | None = None,
                     **fields: Any) -> Path:
    """Write an allocation. ``where`` is an output root (with ``name``: ``<root>/allocation/<name>.json`` from the
    layout) or, without ``name``, the JSON file itself. ``fields``: see :func:`allocation_record`."""
    path = Layout(where).allocation(name) if name is not None else Path(where)
    rec = allocation_record(experts, name=name or path.stem, **fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path
