"""Data preparation (``neuronmoe prepare-data``): corpora -> samples/train/heldout/replay/udhr.

Names are imported on first use so that ``neuronmoe --help`` (which imports ``.settings``) stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataSettings": "settings", "prepare_data": "prepare", "process_language": "prepare",
    "SourceError": "sources", "make_source": "sources",
    "clean_generated": "text", "dedup_key": "text", "split_sentences": "text",
    "load_udhr": "udhr", "parse_udhr_html": "udhr",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"neuronmoe.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'neuronmoe.data' has no attribute {name!r}")
