"""Shared fixtures: tiny random models of every supported architecture, the real embedded model."""
from __future__ import annotations

import os

import pytest
import torch
from support.figures import drawn  # noqa: F401  (a fixture for every figure test)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARCHS = ["llama", "qwen2", "mistral", "gemma3_text"]


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param


@pytest.fixture
def tiny_llama():
    from neuronmoe.testing import tiny_model

    return tiny_model("llama")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama saved as a local HF folder with a byte tokenizer (for CLI tests)."""
    from neuronmoe.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def embedded_model_dir():
    """The real default model (smollm2-135m), converted once into $NEURONMOE_CACHE."""
    from neuronmoe.models import resolve_model

    return resolve_model("smollm2-135m")
