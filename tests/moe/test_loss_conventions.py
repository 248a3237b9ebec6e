"""Loss conventions against their references: the balance loss equals transformers' Mixtral
``load_balancing_loss_func`` (the function MoE-LPR and the published code use), padding included; the
LPR input switch; the switches reach the model's output."""
from __future__ import annotations

import math

import pytest
import torch
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

from neuronmoe.moe import load_balancing_loss, lpr_loss
from neuronmoe.moe.layer import route


@pytest.mark.parametrize("num_experts,top_k,seed", [(2, 2, 0), (3, 2, 1), (5, 2, 2), (6, 2, 3), (4, 1, 4), (6, 3, 5)])
def test_balance_loss_equals_hf_load_balancing_loss_func_with_padding(num_experts, top_k, seed):
    g = torch.Generator().manual_seed(seed)
    batch, seq = 3, 17
    logits = torch.randn(batch * seq, num_experts, generator=g) * 2.0
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, 11:] = 0  # right padding
    mask[2, :5] = 0   # left padding
    ref = load_balancing_loss_func((logits,), num_experts, top_k, attention_mask=mask)
    probs = logits.softmax(-1)
    idx = probs.topk(top_k, -1).indices
    ours = load_balancing_loss(probs, idx, mask.reshape(-1).bool())
    assert abs(ours.item() - ref.item()) < 1e-6
    # without padding as well
    ref_all = load_balancing_loss_func((logits,), num_experts, top_k)
    assert abs(load_balancing_loss(probs, idx).item() - ref_all.item()) < 1e-6
    # the other convention is the same number divided by k
    norm = load_balancing_loss(probs, idx, mask.reshape(-1).bool(), form="normalized")
    assert norm.item() == pytest.approx(ref.item() / top_k, rel=1e-6)


def test_balance_loss_gradient_equals_hf_on_the_probability_term():
    """HF's function takes no gradient through the top-k counts either: same gradient w.r.t. the logits."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, 5, generator=g, requires_grad=True)
    mask = (torch.rand(4, 10, generator=g) > 0.2).long()
    ref = load_balancing_loss_func((x,), 5, 2, attention_mask=mask)
    (gref,) = torch.autograd.grad(ref, x)
    probs = x.softmax(-1)
    ours = load_balancing_loss(probs, probs.topk(2, -1).indices, mask.reshape(-1).bool())
    (gours,) = torch.autograd.grad(ours, x)
    assert torch.allclose(gours, gref, atol=1e-6)


def test_layer_route_feeds_the_reference_the_same_logits():
    """The MoE layer's own routing (fp32 softmax, top-k) gives the balance loss of HF on its logits."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(30, 16, generator=g), torch.randn(4, 16, generator=g)
    logits, probs, _, idx = route(x, w, 2)
    ref = load_balancing_loss_func((logits,), 4, 2)
    assert abs(load_balancing_loss(probs, idx).item() - ref.item()) < 1e-6


def test_lpr_input_choices_and_gradient_scale():
    e = 6
    logits = torch.zeros(1, e, requires_grad=True)
    old = torch.tensor([True])
    # at a uniform router: logits CE = log E; probs CE = log(E) too (all probabilities equal)
    assert lpr_loss(logits, old, "logits").item() == pytest.approx(math.log(e))
    (g_logits,) = torch.autograd.grad(lpr_loss(logits, old, "logits"), logits)
    (g_probs,) = torch.autograd.grad(lpr_loss(logits, old, "probs"), logits)
    # the protocol's fact: the two gradients differ by about a factor E at a uniform router
    ratio = (g_logits[0, 0] / g_probs[0, 0]).item()
    assert e * 0.8 < ratio < e * 1.2
    with pytest.raises(ValueError, match="lpr_input must be one of probs, logits"):
        lpr_loss(logits, old, "softmax")
    with pytest.raises(ValueError, match="aux_loss_form must be one of hf, normalized"):
        load_balancing_loss(logits.softmax(-1), torch.zeros(1, 2, dtype=torch.long), form="switch")
