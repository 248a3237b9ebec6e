"""The FLOP model: a hand count on a small config, the dense forward against the model's own linear weights, and
benchmarks/bench_moe.py computing the same numbers on the Llama-3.2-3B shape (it calls this model: no drift)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from neuronmoe.budget.flops import Shape, forward_flops_per_token, model_flops_per_token, shape_of, training_flops_per_token

ROOT = Path(__file__).resolve().parents[2]
SMALL = Shape(layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=32)


def test_hand_count_small_config():
    """h=8, i=16, 2 query heads and 1 key/value head of 4, V=32, S=4, top-2; allocation [1, 3]."""
    attn_proj = 2 * 8 * (2 * 4 + 2 * 1 * 4) + 2 * (2 * 4) * 8   # q, k, v, o: 256 + 128 = 384
    attn_scores = 2 * 2 * 4 * 2 * 4                             # QK^T and PV over S=4: 128
    mlp = 2 * 3 * 8 * 16                                        # gate, up, down: 768
    router = 2 * 8 * 3                                          # layer 1 routes over E=3: 48
    head = 2 * 8 * 32                                           # 512
    forward = (attn_proj + attn_scores + mlp) + (attn_proj + attn_scores + 2 * mlp + router) + head
    assert forward == 3888
    f = training_flops_per_token(SMALL, [1, 3], 2, 4, "experts")
    assert f["forward"] == forward
    # nothing trains in layer 0 (and below it): the backward starts at layer 1's MLP
    assert f["backward_activations"] == (2 * mlp + router) + head == 2096
    # weight gradients: the router, and the new experts' share 2/3 of the two routed slots
    assert f["weight_gradients"] == router + 2 * mlp * 2 / 3 == 1072
    assert f["total"] == 7056
    r = training_flops_per_token(SMALL, [1, 3], 2, 4, "routers")
    assert r["weight_gradients"] == router and r["total"] == 3888 + 2096 + 48
    # with the MoE layer first, layer 1 is backpropagated whole (attention scores twice: two activation operands)
    g = training_flops_per_token(SMALL, [3, 1], 2, 4, "experts")
    assert g["backward_activations"] == (2 * mlp + router) + (attn_proj + 2 * attn_scores + mlp) + head == 3504
    assert model_flops_per_token(SMALL, [1, 3], 2, 4) == 3 * forward


def test_dense_forward_is_twice_the_linear_weights_plus_attention_scores():
    """Independent of the formula: 2 x (every nn.Linear weight of the model, the LM head included) per token."""
    import torch
    from transformers import AutoModelForCausalLM

    from neuronmoe.models import load_config

    cfg = load_config("llama-3.2-3b")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    shape = shape_of(cfg)
    f = forward_flops_per_token(shape, None, 2, 1024)
    assert f["total"] - shape.layers * 2 * 2 * 1024 * shape.heads * shape.head_dim == 2 * linear


def _bench():
    spec = importlib.util.spec_from_file_location("bench_moe", ROOT / "benchmarks" / "bench_moe.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_moe"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_bench_moe_uses_the_budget_flop_model_on_the_llama_3b_shape():
    from neuronmoe.models import load_config

    bench = _bench()
    cfg = load_config("llama-3.2-3b")
    shape = shape_of(cfg)
    counts = bench.flop_counts(cfg, bench.GREEK_49, 2, 1024)
    assert counts["needed"] == training_flops_per_token(shape, bench.GREEK_49, 2, 1024, "experts")["total"]
    assert counts["model"] == 3 * forward_flops_per_token(shape, bench.GREEK_49, 2, 1024)["total"]
    assert bench.forward_flops_per_token(cfg, None, 2, 1024) == forward_flops_per_token(shape, None, 2, 1024)
    # the numbers themselves, for the record: ~8.1 GFLOP forward, ~18.3 GFLOP per trained token
    assert counts["model"] / 3 == pytest.approx(8.14e9, rel=0.01)
    assert counts["needed"] == pytest.approx(18.31e9, rel=0.01)


def test_frozen_weights_cost_four_n_trainable_six_n():
    """A model whose MoE layers hold everything: weight gradients exactly for the trainable share."""
    experts = [2] * SMALL.layers
    f = training_flops_per_token(SMALL, experts, 1, 4, "experts")  # top-1: one slot, trainable half of the time
    mlp = 2 * 3 * 8 * 16
    assert f["weight_gradients"] == SMALL.layers * (mlp / 2 + 2 * 8 * 2)
