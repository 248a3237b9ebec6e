"""Pure parts of the MoE adapter: routing, sparse dispatch, losses, config, registration."""
from __future__ import annotations

import copy
import enum
import json
import math

import pytest
import torch
import torch.nn as nn
from support.builders import write_allocation

from neuronmoe.moe import (
    MoEConfig,
    extend_str_enum,
    load_balancing_loss,
    lpr_loss,
    naive_dispatch,
    register,
    route,
    routing_fractions,
    sparse_dispatch,
)
from neuronmoe.testing import tiny_model


def _experts(n, seed=0):
    mlp = tiny_model("llama", seed=seed).model.layers[0].mlp
    out = []
    for i in range(n):
        e = copy.deepcopy(mlp)
        torch.manual_seed(100 + i)
        for p in e.parameters():
            nn.init.normal_(p, std=0.2)
        out.append(e)
    return out


@pytest.mark.parametrize("num_experts,k", [(2, 2), (4, 2), (5, 1), (6, 3)])
def test_sparse_dispatch_equals_naive_forward_and_backward(num_experts, k):
    torch.manual_seed(0)
    experts = _experts(num_experts)
    w_router = torch.randn(num_experts, 32, requires_grad=True)
    x = torch.randn(23, 32, requires_grad=True)

    def run(fn):
        for p in [w_router, x, *[q for e in experts for q in e.parameters()]]:
            p.grad = None
        _, _, w, idx = route(x, w_router, k)
        y = fn(x, idx, w, experts)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads = [x.grad.clone(), w_router.grad.clone()] + [
            q.grad.clone() if q.grad is not None else torch.zeros_like(q) for e in experts for q in e.parameters()
        ]
        return y.detach(), grads, idx

    y_s, g_s, idx = run(sparse_dispatch)
    y_n, g_n, _ = run(naive_dispatch)
    assert torch.allclose(y_s, y_n, atol=1e-6)
    for a, b in zip(g_s, g_n):
        assert torch.allclose(a, b, atol=1e-5)
    # an expert that got no token was not run at all (sparse) and has no gradient
    unused = set(range(num_experts)) - set(idx.unique().tolist())
    for e in unused:
        assert all(p.grad is None or not p.grad.any() for p in experts[e].parameters())
    assert any(g.abs().sum() > 0 for g in g_s[2:])


def test_sparse_dispatch_runs_each_expert_on_its_tokens_only():
    experts = _experts(4)
    seen = {}
    x = torch.randn(10, 32)
    idx = torch.tensor([[0, 1]] * 5 + [[2, 1]] * 5)
    w = torch.full((10, 2), 0.5)

    def run(e, tok, xe):
        seen[e] = tok.tolist()
        return experts[e](xe)

    sparse_dispatch(x, idx, w, experts, run_expert=run)
    assert seen == {0: [0, 1, 2, 3, 4], 1: list(range(10)), 2: [5, 6, 7, 8, 9]}  # expert 3: no call


def test_route_weights_renormalised_and_fp32():
    x = torch.randn(7, 32, dtype=torch.bfloat16)
    w = torch.randn(5, 32)
    logits, probs, weights, idx = route(x, w, 2)
    assert logits.dtype == probs.dtype == weights.dtype == torch.float32
    assert torch.allclose(weights.sum(-1), torch.ones(7))
    assert torch.equal(idx, probs.topk(2, -1).indices)


def test_route_and_combination_stay_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    x = torch.randn(64, 32)
    w = torch.randn(6, 32)
    ref = route(x, w, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = route(x.bfloat16(), w, 2)
        experts = [torch.nn.Linear(32, 32) for _ in range(6)]
        y = sparse_dispatch(x, got[3], got[2], experts)
    assert all(t.dtype == torch.float32 for t in got[:3])
    # the router matmul ran in fp32: logits match fp32 math on the bf16-rounded inputs exactly
    assert torch.allclose(got[0], x.bfloat16().float() @ w.T, atol=1e-5)
    assert torch.allclose(got[2].sum(-1), torch.ones(64), atol=1e-6)
    assert y.dtype == torch.float32
    assert (got[3] == ref[3]).float().mean() > 0.9  # bf16 input rounding may flip a near-tie only


def test_losses_equal_hand_computed_values():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [5.0, 0.0, 0.0]], requires_grad=True)
    probs = logits.softmax(-1)
    idx = probs.topk(2, -1).indices  # token0 {0,1}, token1 {2,1}, token2 {0, 1 or 2}
    valid = torch.tensor([True, True, False])  # third token is padding

    def sm(row):
        z = sum(math.exp(v) for v in row)
        return [math.exp(v) / z for v in row]

    p0, p1 = sm([2, 1, 0]), sm([0, 1, 3])
    f = [1 / 4, 2 / 4, 1 / 4]
    P = [(p0[e] + p1[e]) / 2 for e in range(3)]
    expected_aux = 3 * sum(fe * pe for fe, pe in zip(f, P))
    aux = load_balancing_loss(probs, idx, valid, form="normalized")
    assert aux.item() == pytest.approx(expected_aux, rel=1e-6)
    # the default (HF Mixtral's convention) counts slots per token: k = 2 times the normalized form
    assert load_balancing_loss(probs, idx, valid).item() == pytest.approx(2 * expected_aux, rel=1e-6)
    f_got, p_got = routing_fractions(probs, idx, valid)
    assert f_got.tolist() == pytest.approx(f) and p_got.tolist() == pytest.approx(P, rel=1e-6)

    old = torch.tensor([True, False, False])
    expected_lpr = -math.log(p0[0])
    assert lpr_loss(logits, old, "logits").item() == pytest.approx(expected_lpr, rel=1e-6)
    # MoE-LPR's code (the default): the cross-entropy of the probabilities (softmax twice)
    expected_probs = -math.log(sm(p0)[0])
    assert lpr_loss(logits, old).item() == pytest.approx(expected_probs, rel=1e-6)
    # two old tokens: mean of their cross-entropies
    old2 = torch.tensor([True, True, False])
    assert lpr_loss(logits, old2, "logits").item() == pytest.approx((-math.log(p0[0]) - math.log(p1[0])) / 2, rel=1e-6)
    # none flagged -> 0, still differentiable
    z = lpr_loss(logits, torch.zeros(3, dtype=torch.bool))
    assert z.item() == 0.0 and z.requires_grad
    assert lpr_loss(logits, None).item() == 0.0
    # uniform router -> balance loss exactly k = 2 (HF form), 1 (normalized form)
    u = torch.full((4, 4), 0.25)
    uidx = torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])
    assert load_balancing_loss(u, uidx).item() == pytest.approx(2.0)
    assert load_balancing_loss(u, uidx, form="normalized").item() == pytest.approx(1.0)
    # no valid token -> 0
    assert load_balancing_loss(probs, idx, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_lpr_gradient_pushes_logit_of_expert0_up():
    logits = torch.zeros(2, 4, requires_grad=True)
    for lpr_input in ("logits", "probs"):
        logits.grad = None
        lpr_loss(logits, torch.tensor([True, False]), lpr_input).backward()
        g = logits.grad
        assert g[0, 0] < 0 and (g[0, 1:] > 0).all() and not g[1].any()


def test_extend_enum_idempotent_and_clash():
    class Color(str, enum.Enum):
        RED = "RED"

    m1 = extend_str_enum(Color, "BLUE", "BLUE")
    m2 = extend_str_enum(Color, "BLUE", "BLUE")
    assert m1 is m2 is Color.BLUE is Color("BLUE") is Color["BLUE"]
    assert list(Color) == [Color.RED, Color.BLUE] and m1 == "BLUE" and isinstance(m1, Color)
    with pytest.raises(ValueError, match="already"):
        extend_str_enum(Color, "BLUE", "OTHER")
    with pytest.raises(ValueError, match="already has value"):
        extend_str_enum(Color, "GREEN", "RED")


def test_register_idempotent():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType

    from neuronmoe.moe import MoEModel

    register()
    register()
    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.NEURONMOE] is MoEConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["NEURONMOE"] is MoEModel
    assert list(PeftType).count(PeftType.NEURONMOE) == 1


def test_config_validation_errors():
    with pytest.raises(ValueError, match="non-empty"):
        MoEConfig()
    with pytest.raises(ValueError, match="ints >= 1"):
        MoEConfig(experts_per_layer=[2, 0])
    with pytest.raises(ValueError, match="nothing to adapt"):
        MoEConfig(experts_per_layer=[1, 1])
    with pytest.raises(ValueError, match="train_mode"):
        MoEConfig(experts_per_layer=[2], train_mode="all")
    with pytest.raises(ValueError, match="top_k"):
        MoEConfig(experts_per_layer=[2], top_k=0)
    cfg = MoEConfig(experts_per_layer=[6, 2, 1])
    assert (cfg.top_k, cfg.aux_loss_coef, cfg.lpr_loss_coef, cfg.train_mode) == (2, 0.01, 0.1, "experts")
    assert cfg.total_experts == 9 and cfg.new_experts == 6 and cfg.moe_layers == [0, 1]


def test_from_allocation(tmp_path):
    p = write_allocation(tmp_path / "a.json", [3, 1, 2], mode="neuronmoe",
                         model={"model_type": "llama", "num_layers": 3, "hidden_size": 32, "intermediate_size": 64})
    alloc = json.loads(p.read_text())
    cfg = MoEConfig.from_allocation(p, top_k=1, lpr_loss_coef=0.0)
    assert cfg.experts_per_layer == [3, 1, 2] and cfg.top_k == 1 and cfg.lpr_loss_coef == 0.0
    assert cfg.base_model_fingerprint["hidden_size"] == 32 and "neuronmoe" in cfg.allocation_source
    assert MoEConfig.from_allocation({"experts_per_layer": [1, 4]}).experts_per_layer == [1, 4]
    with pytest.raises(ValueError, match="'num_layers' is 4 but 'experts_per_layer' has 3"):
        MoEConfig.from_allocation({**alloc, "num_layers": 4})
    with pytest.raises(ValueError, match="missing field 'experts_per_layer'"):
        MoEConfig.from_allocation({"num_layers": 3})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MoEConfig.from_allocation(tmp_path / "nope.json")
