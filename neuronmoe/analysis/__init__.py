"""Post-training analysis (routing-aware per-expert AP) and figures drawn from stage outputs."""
from neuronmoe.analysis.expert_ap import (
    DEFAULT_THRESHOLD,
    NO_TOKEN_POLICIES,
    ExpertResult,
    UnitLayout,
    expert_ap,
    expert_index,
    expert_name,
    expert_units,
    heatmap_matrix,
    pool_dense,
    pool_routed,
    summarize,
    table_rows,
    to_markdown,
)

__all__ = [
    "DEFAULT_THRESHOLD", "NO_TOKEN_POLICIES", "ExpertResult", "UnitLayout", "expert_ap", "expert_index",
    "expert_name", "expert_units", "heatmap_matrix", "pool_dense", "pool_routed", "summarize", "table_rows",
    "to_markdown",
]
