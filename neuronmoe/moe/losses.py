"""Router losses (pure functions over flattened tokens; see docs/moe.md and the conventions table in
docs/training.md).

* load balancing (Switch/Mixtral style): ``E * sum_e f_e * P_e`` over the non-padding tokens, where
  ``P_e`` is the mean router probability of expert ``e`` and ``f_e`` counts the top-k slots routed to
  ``e``. Two conventions (:data:`AUX_LOSS_FORMS`):

  - ``hf`` (default, the reference): ``f_e`` = slots of ``e`` per token, so ``sum_e f_e = k`` and the loss
    is ``k`` at a uniform router. Numerically equal to ``transformers``' Mixtral
    ``load_balancing_loss_func`` on one layer's router logits, which MoE-LPR and the published NeuronMoE
    code use.
  - ``normalized``: ``f_e`` = share of the slots, ``sum_e f_e = 1``; the loss is 1 at a uniform router.
    It is the ``hf`` value divided by ``k``: the same coefficient then weighs the loss ``k`` times less.

* language-prior routing (LPR, MoE-LPR): cross-entropy towards expert 0 (the frozen original MLP) over
  the tokens flagged as old-language; 0 when there are none. :data:`LPR_INPUTS`: ``probs`` (default:
  MoE-LPR's code, the cross-entropy of the router *probabilities*, i.e. softmax applied twice) or
  ``logits`` (MoE-LPR's paper text: cross-entropy of the router logits; the NeuronMoE paper gives no formula).

* across layers (:func:`combine_lpr`, :data:`LPR_LAYER_MEANS`): ``layers`` (default) is the mean of the
  per-layer LPR losses over the MoE layers; ``expert_count_groups`` is the published code's form, which
  concatenates the router logits of the layers with the same expert count (so one cross-entropy per group, the
  mean of its layers') and averages over those groups. Both agree when every MoE layer has the same E (MoE-LPR's
  setting). The default weighs every router the same; the grouped form weighs a layer more the fewer layers share
  its E, a by-product of concatenating equal-shaped logits, and no published stage-2 number used it (the
  published stage 2 never computed LPR). docs/training.md, conventions.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from neuronmoe.errors import ConfigError

AUX_LOSS_FORMS = ("hf", "normalized")
LPR_INPUTS = ("probs", "logits")
LPR_LAYER_MEANS = ("layers", "expert_count_groups")


def check_loss_options(aux_loss_form: str, lpr_input: str, where: str = "", lpr_layer_mean: str = "layers") -> None:
    """Clear one-line errors for a balance-loss form, LPR input or LPR layer mean outside their choices."""
    if aux_loss_form not in AUX_LOSS_FORMS:
        raise ConfigError(f"{where}aux_loss_form must be one of {', '.join(AUX_LOSS_FORMS)}, got {aux_loss_form!r}")
    if lpr_input not in LPR_INPUTS:
        raise ConfigError(f"{where}lpr_input must be one of {', '.join(LPR_INPUTS)}, got {lpr_input!r}")
    if lpr_layer_mean not in LPR_LAYER_MEANS:
        raise ConfigError(f"{where}lpr_layer_mean must be one of {', '.join(LPR_LAYER_MEANS)}, got {lpr_layer_mean!r}")


def combine_lpr(per_layer: list[tuple[int, torch.Tensor]], form: str = "layers") -> torch.Tensor:
    """One LPR loss from ``[(E_l, loss_l), ...]`` of the MoE layers: their mean (``layers``) or the mean over
    groups of equal ``E_l`` of each group's mean (``expert_count_groups``, the published code's form)."""
    check_loss_options("hf", "probs", lpr_layer_mean=form)
    losses = [x for _, x in per_layer]
    if form == "layers":
        return torch.stack(losses).mean()
    groups: dict[int, list[torch.Tensor]] = {}
    for e, x in per_layer:
        groups.setdefault(int(e), []).append(x)
    return torch.stack([torch.stack(g).mean() for g in groups.values()]).mean()


def routing_fractions(
    probs: torch.Tensor, expert_idx: torch.Tensor, valid: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f, P)``: share of the top-k slots per expert (sums to 1; no grad) and mean probability per
    expert (with grad).

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


def balance_from_fractions(f: torch.Tensor, p: torch.Tensor, k: int, form: str = "hf") -> torch.Tensor:
    """The balance loss from :func:`routing_fractions`' ``(f, P)`` in the given ``form``."""
    loss = p.shape[-1] * torch.dot(f.detach(), p)
    return loss * k if form == "hf" else loss


def load_balancing_loss(
    probs: torch.Tensor, expert_idx: torch.Tensor, valid: Optional[torch.Tensor] = None, form: str = "hf"
) -> torch.Tensor:
    """``E * sum_e f_e * P_e`` over the valid tokens (0 when there is none); ``form`` see the module doc."""
    check_loss_options(form, "probs")
    f, p = routing_fractions(probs, expert_idx, valid)
    return balance_from_fractions(f, p, expert_idx.shape[-1], form)


def lpr_loss(logits: torch.Tensor, old: Optional[torch.Tensor], lpr_input: str = "probs") -> torch.Tensor:
    """Cross-entropy towards expert 0 of router ``logits`` [N, E] (``lpr_input="logits"``) or of their
    softmax (``"probs"``, MoE-LPR's code) over the ``old`` [N] bool tokens."""
    check_loss_options("hf", lpr_input)
    if old is None:
        return logits.new_zeros(())
    sel = logits[old]
    if sel.shape[0] == 0:
        return logits.sum() * 0.0  # keeps the graph (and the device) without contributing
    target = torch.zeros(sel.shape[0], dtype=torch.long, device=sel.device)
    x = sel.float()
    if lpr_input == "probs":
        x = x.softmax(dim=-1)
    return F.cross_entropy(x, target)
