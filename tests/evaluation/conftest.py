"""Fixtures for the evaluation tests: a small $OUTPUT_DIR with data/udhr and data/heldout."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.evalfixtures import make_paragraphs, write_jsonl
from support.replicas import fast_replica_loading  # noqa: F401  (a fixture of these tests)


@pytest.fixture
def data_root(tmp_path) -> Path:
    """$OUTPUT_DIR with data/udhr/{en,el}.jsonl and data/heldout/{en,el}.jsonl in the prepare-data format."""
    for lang in ("en", "el"):
        write_jsonl(tmp_path / "data" / "udhr" / f"{lang}.jsonl", make_paragraphs(lang))
        held = [{"text": p["text"]} for p in make_paragraphs(lang, n=6, seed=99)]
        write_jsonl(tmp_path / "data" / "heldout" / f"{lang}.jsonl", held)
    return tmp_path
