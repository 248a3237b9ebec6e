"""Fixtures of the training tests: a prepared-data folder, allocations, a tiny model folder."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.builders import write_allocation
from train_helpers import make_data_dir


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from neuronmoe.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny"), "llama")


@pytest.fixture
def out_dir(tmp_path, data_dir, tiny_dir) -> Path:
    """An $OUTPUT_DIR with data/ (symlinked fixture) and allocation/tiny.json for the tiny llama."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "data").symlink_to(data_dir)
    write_allocation(out, [3, 1, 2], name="tiny", model_dir=tiny_dir)
    return out


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "tok-cache"
