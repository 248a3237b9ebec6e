"""Post-training analysis (routing-aware per-expert AP) and figures drawn from stage outputs.

The names of :mod:`.expert_ap` are imported on first use (it imports numpy), so that
``neuronmoe --help``, which imports ``.cli``, stays fast.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = [
    "DEFAULT_THRESHOLD", "NO_TOKEN_POLICIES", "ExpertResult", "UnitLayout", "expert_ap", "expert_index",
    "expert_name", "expert_units", "heatmap_matrix", "pool_dense", "pool_routed", "summarize", "table_rows",
    "to_markdown",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("neuronmoe.analysis.expert_ap"), name)
    raise AttributeError(f"module 'neuronmoe.analysis' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``neuronmoe.analysis.expert_ap`` is the function, as when this package imported it eagerly.

    Importing the submodule makes the import system set the package attribute ``expert_ap`` to the
    submodule; this keeps the function there instead, whatever is imported first.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "expert_ap" and isinstance(value, types.ModuleType):
            value = value.expert_ap
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
