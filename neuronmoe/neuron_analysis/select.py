"""Top-K units per language and per-layer counts (paper Table 6 layout)."""
from __future__ import annotations

from typing import Any

import numpy as np

from neuronmoe.errors import ConfigError


def select_top_k(scores: np.ndarray, top_k: int = 1000, threshold: float = 0.5) -> list[np.ndarray]:
    """Per language (column of ``scores`` [U, L]): unit numbers of the ``top_k`` highest scores
    that are strictly greater than ``threshold``, best first (ties: lower unit number first)."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    out = []
    for lang in range(scores.shape[1]):
        col = np.asarray(scores[:, lang], dtype=np.float64)
        order = np.argsort(-col, kind="stable")[:top_k]
        out.append(order[col[order] > threshold])
    return out


def count_per_layer(selected: list[np.ndarray], unit_layer: np.ndarray, num_layers: int) -> np.ndarray:
    """[num_layers, L] counts of selected units per layer."""
    return np.stack([np.bincount(unit_layer[s], minlength=num_layers) for s in selected], axis=1).astype(np.int64)


def count_per_layer_module(selected: list[np.ndarray], units: dict[str, np.ndarray], num_layers: int) -> np.ndarray:
    """[num_layers, M, L] counts per layer and module."""
    M = len(units["module_names"])
    cols = []
    for s in selected:
        flat = units["layer"][s].astype(np.int64) * M + units["module_id"][s].astype(np.int64)
        cols.append(np.bincount(flat, minlength=num_layers * M).reshape(num_layers, M))
    return np.stack(cols, axis=2).astype(np.int64)


def counts_json(languages: list[str], per_layer: np.ndarray, per_module: np.ndarray, module_names: list[str],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "languages": list(languages),
        "num_layers": int(per_layer.shape[0]),
        "modules": list(module_names),
        "per_layer": {lang: per_layer[:, i].tolist() for i, lang in enumerate(languages)},
        "per_module": {lang: {m: per_module[:, j, i].tolist() for j, m in enumerate(module_names)} for i, lang in enumerate(languages)},
        "totals": {lang: int(per_layer[:, i].sum()) for i, lang in enumerate(languages)},
    }
    d.update(extra or {})
    return d
