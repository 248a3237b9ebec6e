"""Router losses (pure functions over flattened tokens; see docs/moe.md).

* load balancing (Switch/Mixtral style): ``E * sum_e f_e * P_e`` where ``f_e`` is the fraction of
  the top-k slots routed to expert ``e`` and ``P_e`` the mean router probability of ``e``, both
  over the non-padding tokens. It equals 1 for a perfectly uniform router.
* language-prior routing (LPR, MoE-LPR): cross-entropy of the router *logits* towards expert 0
  (the frozen original MLP) over the tokens flagged as old-language; 0 when there are none.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def routing_fractions(
    probs: torch.Tensor, expert_idx: torch.Tensor, valid: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f, P)``: slot fraction per expert (no grad) and mean probability per expert (with grad).

    ``probs`` [N, E] fp32, ``expert_idx`` [N, k], ``valid`` [N] bool or None (= all tokens).
    With no valid token both are zeros.
    """
    n, num_experts = probs.shape
    if valid is not None:
        probs = probs[valid]
        expert_idx = expert_idx[valid]
    n_valid = probs.shape[0]
    if n_valid == 0:
        return probs.new_zeros(num_experts), probs.sum(0) * 0.0
    counts = torch.bincount(expert_idx.reshape(-1), minlength=num_experts).to(probs.dtype)
    f = counts / float(expert_idx.numel())
    p = probs.mean(0)
    return f, p


def load_balancing_loss(
    probs: torch.Tensor, expert_idx: torch.Tensor, valid: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``E * sum_e f_e * P_e`` over the valid tokens (0 when there is none)."""
    f, p = routing_fractions(probs, expert_idx, valid)
    return probs.shape[-1] * torch.dot(f.detach(), p)


def lpr_loss(logits: torch.Tensor, old: Optional[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of router ``logits`` [N, E] towards expert 0 over ``old`` [N] bool tokens."""
    if old is None:
        return logits.new_zeros(())
    sel = logits[old]
    if sel.shape[0] == 0:
        return logits.sum() * 0.0  # keeps the graph (and the device) without contributing
    target = torch.zeros(sel.shape[0], dtype=torch.long, device=sel.device)
    return F.cross_entropy(sel.float(), target)
