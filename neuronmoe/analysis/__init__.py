"""Post-training analysis (routing-aware per-expert AP) and figures drawn from stage outputs.

Names are imported on first use (expert_ap imports numpy) so that ``neuronmoe --help`` stays fast.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_THRESHOLD", "NO_TOKEN_POLICIES", "ExpertResult", "UnitLayout", "expert_ap", "expert_index",
    "expert_name", "expert_units", "heatmap_matrix", "pool_dense", "pool_routed", "summarize", "table_rows",
    "to_markdown",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from neuronmoe.analysis import expert_ap as _expert_ap

        return getattr(_expert_ap, name)
    raise AttributeError(f"module 'neuronmoe.analysis' has no attribute {name!r}")
