"""Expert allocation: per-layer scores (neuron counts, similarity, a CSV) -> experts per layer.

Pure core in :mod:`neuronmoe.allocation.core`; files in :mod:`.store`; parameter counts in
:mod:`.params`; the paper's Figure 1 in :mod:`.figure`; the ``neuronmoe allocate`` settings in :mod:`.settings`
and the stage in :mod:`.runner`; how much to trust an allocation (bootstrap, sample sizes, thresholds) in
:mod:`.stability`, :mod:`.resample` and :mod:`.stability_report`.
"""
from __future__ import annotations

import importlib
from typing import Any

# names are imported on first use (store reads YAML) so that ``neuronmoe --help`` stays fast
_EXPORTS = {
    **dict.fromkeys(("MODES", "ROUNDING_CHOICES", "allocate", "layermoe_allocate", "multi_scores", "pair_scores",
                     "source_only_scores", "uniform_allocation"), "core"),
    **dict.fromkeys(("ENV_KEY", "REFERENCE_DIR", "Allocation", "RecordFields", "build_record", "make_record",
                     "load_allocation", "shipped_allocations", "write_allocation"), "store"),
    **dict.fromkeys(("load_stability", "stability_path"), "stability"),
    **dict.fromkeys(("stability_markdown", "report_section", "published_sensitivity", "count_margins"),
                    "stability_report"),
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"neuronmoe.allocation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'neuronmoe.allocation' has no attribute {name!r}")


def plot_allocation_comparison(*args, **kwargs):  # lazy: matplotlib only when drawing
    """See :func:`neuronmoe.allocation.figure.plot_allocation_comparison`."""
    from neuronmoe.allocation.figure import plot_allocation_comparison as _plot

    return _plot(*args, **kwargs)


def count_params(experts_per_layer, config):
    """Parameter counts of an allocation for a transformers config (meta device, no weights)."""
    from neuronmoe.allocation.params import count_params as _count
    from neuronmoe.allocation.params import model_shape

    return _count(list(experts_per_layer), model_shape(config))


__all__ = [
    "MODES", "ROUNDING_CHOICES", "allocate", "layermoe_allocate", "multi_scores", "pair_scores",
    "source_only_scores", "uniform_allocation", "ENV_KEY", "REFERENCE_DIR", "Allocation", "RecordFields", "build_record",
    "make_record", "load_allocation", "shipped_allocations", "write_allocation", "plot_allocation_comparison",
    "count_params", "load_stability", "stability_path", "stability_markdown", "report_section", "published_sensitivity",
    "count_margins",
]
