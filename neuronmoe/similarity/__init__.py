"""The LayerMoE baseline (Zhang et al. 2025): per-layer cross-lingual similarity of MLP inputs.

Pure part in :mod:`neuronmoe.similarity.core` (mean pairwise cosine as a dot product of mean unit
vectors; the layer score); model hooks in :mod:`.capture`; the ``neuronmoe similarity`` CLI in :mod:`.cli`.
The allocation itself is :func:`neuronmoe.allocation.layermoe_allocate`.
"""
from neuronmoe.similarity.core import UnitVectorSums, layer_scores, pair_indices

__all__ = ["UnitVectorSums", "layer_scores", "pair_indices"]
