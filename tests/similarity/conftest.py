"""Fixtures: a tiny prepared-data folder (data/samples/<lang>.jsonl) in the contract's format."""
from __future__ import annotations

import pytest
from sim_fixtures import write_data

STAGE_ENV = ["BASE_MODEL_PATH", "SOURCE_LANG", "TARGET_LANGS", "OLD_LANGS", "DATA_DIR", "SIMILARITY_SPLIT",
             "SIMILARITY_TOKENS", "BATCH_SIZE", "MAX_LENGTH", "BUDGET", "ALLOCATION_NAME", "ALLOCATION_OUT",
             "REFERENCE_ALLOCATION", "OUTPUT_DIR", "DEVICE", "DTYPE"]


@pytest.fixture(autouse=True)
def _clean_stage_env(monkeypatch):
    for k in STAGE_ENV:
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def tiny_data(tmp_path):
    from neuronmoe.testing import byte_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    write_data(tmp_path, ("en", "el", "tr"), fingerprint=tokenizer_fingerprint(byte_tokenizer()))
    return tmp_path
