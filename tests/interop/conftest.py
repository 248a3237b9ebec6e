"""Fixtures for the interop tests: the local suite built from synthetic UDHR / held-out files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from interop_helpers import LANGS, sizes_dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def local_root(tmp_path_factory) -> Path:
    """$OUTPUT_DIR with data/udhr/en.jsonl + data/heldout/en.jsonl and the local suite built in eval/tasks."""
    from support.evalfixtures import make_paragraphs, write_jsonl

    from neuronmoe.evaluation.local_tasks import build_local_tasks

    root = tmp_path_factory.mktemp("local")
    for lang in LANGS:
        write_jsonl(root / "data" / "udhr" / f"{lang}.jsonl", make_paragraphs(lang))
        write_jsonl(root / "data" / "heldout" / f"{lang}.jsonl",
                    [{"text": p["text"]} for p in make_paragraphs(lang, n=6, seed=99)])
    build_local_tasks(root, LANGS, sizes_dict())
    return root
