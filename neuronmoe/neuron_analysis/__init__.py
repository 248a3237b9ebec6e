"""Neuron analysis: language-specific units by average precision (Kojima et al. 2024) or LAPE.

Pure cores (no model needed): :func:`average_precision`, :func:`select_top_k`, :mod:`.lape`;
collection: :func:`collect_activations`; the whole stage: :func:`run_neuron_analysis`.
Names are imported on first use so that ``neuronmoe --help`` does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "average_precision": "ap",
    "activation_probability": "lape",
    "lape_scores": "lape",
    "select_top_k": "select",
    "count_per_layer": "select",
    "count_per_layer_module": "select",
    "UnitLayout": "units",
    "load_units": "units",
    "collect_activations": "collect",
    "NonFiniteActivationError": "collect",
    "run_neuron_analysis": "analysis",
    "load_samples": "analysis",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"neuronmoe.neuron_analysis.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'neuronmoe.neuron_analysis' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
