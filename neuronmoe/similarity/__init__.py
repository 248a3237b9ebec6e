"""The LayerMoE baseline (Zhang et al. 2025): per-layer cross-lingual similarity of MLP inputs.

Pure part in :mod:`neuronmoe.similarity.core` (mean pairwise cosine as a dot product of mean unit
vectors; the layer score); model hooks in :mod:`.capture`; the stage in :mod:`.runner`, its settings in :mod:`.settings`.
The allocation itself is :func:`neuronmoe.allocation.layermoe_allocate`.
"""
import importlib
from typing import Any

__all__ = ["UnitVectorSums", "layer_scores", "pair_indices"]


def __getattr__(name: str) -> Any:
    # core imports numpy: loaded on first use, so that `neuronmoe --help` (which imports .settings) stays fast
    if name in __all__:
        return getattr(importlib.import_module("neuronmoe.similarity.core"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
