"""What a paper-scale run costs before it starts (issue 22): FLOPs and GPU-hours (:mod:`.flops`, :mod:`.gpus`),
memory per device (:mod:`.memory`), disk and downloads (:mod:`.disk`), access to the hub (:mod:`.access`), and
the rows ``reproduce-paper --dry-run`` prints (:mod:`.plan`). Every module is pure arithmetic over a model shape
and the plan's settings; the figures they rest on are in ``neuronmoe/configs/budget.yaml``."""
from __future__ import annotations

from typing import Any


def budget_config() -> dict[str, Any]:
    """``neuronmoe/configs/budget.yaml``."""
    from neuronmoe.config import load_yaml

    return load_yaml("budget")


GIB = 2**30
