"""Fixtures for the MoE adapter tests: tiny models, token batches, a helper to perturb adapters."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import neuronmoe  # noqa: E402,F401  (registers the PEFT method)


@pytest.fixture
def ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, 300, (2, 9), generator=g)


@pytest.fixture
def perturb():
    """Randomise every adapter parameter so that routers and experts differ from the init."""

    def _perturb(model, scale=0.2, seed=0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if ".moe_" in n:
                    p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * scale)
        return model

    return _perturb
