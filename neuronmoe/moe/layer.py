"""The MoE layer that replaces a dense gated MLP (PEFT tuner layer).

Expert 0 is the original MLP (``base_layer``, frozen); experts 1..E-1 are deep copies of it
(same class, so every gated MLP of the architecture table works). The router is a bias-free
``nn.Linear(hidden, E)`` kept in fp32. Routing: softmax over all E experts in fp32, top-k,
renormalise the k weights, ``y = sum_i w_i * expert_i(x)``. Dispatch is sparse: every expert
runs only on the tokens routed to it, so the cost follows k, not E.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer

from neuronmoe.errors import InputError
from neuronmoe.moe.losses import balance_from_fractions, lpr_loss, routing_fractions


# ---------------------------------------------------------------------------------------------
# pure core
# ---------------------------------------------------------------------------------------------
def route(x: torch.Tensor, router_weight: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """``(logits, probs, weights, expert_idx)`` for flattened tokens ``x`` [N, H].

    All routing math is fp32 whatever the dtype of ``x``, also under mixed-precision autocast
    (which would otherwise run the router matmul in bf16/fp16); ``weights`` [N, k] sum to 1.
    """
    with _fp32_region(x):
        logits = F.linear(x.float(), router_weight.float())
        probs = logits.softmax(dim=-1)
        top_p, expert_idx = probs.topk(k, dim=-1)
        weights = top_p / top_p.sum(dim=-1, keepdim=True)
    return logits, probs, weights, expert_idx


def _fp32_region(x: torch.Tensor) -> Any:
    """Autocast switched off for ``x``'s device type (a no-op context when autocast is off)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def sparse_dispatch(
    x: torch.Tensor,
    expert_idx: torch.Tensor,
    weights: torch.Tensor,
    experts: Sequence[nn.Module],
    run_expert: Optional[Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """``sum_i weights[:, i] * experts[expert_idx[:, i]](x)`` computing each expert on its tokens only.

    ``x`` [N, H]; ``expert_idx``/``weights`` [N, k]. The N*k token slots are sorted by expert
    (stable), each expert gets one ``index_select``-ed batch, and the outputs are put back in
    slot order by one gather with the inverse permutation (deterministic; no atomics).
    ``run_expert(e, token_index, x_e)`` replaces ``experts[e](x_e)`` (used by routing capture).
    """
    n, k = expert_idx.shape
    flat = expert_idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=len(experts)).tolist()
    token_of_slot = torch.div(order, k, rounding_mode="floor")
    outs = []
    for e, tok in enumerate(token_of_slot.split(counts)):
        if tok.numel() == 0:
            continue
        xe = x.index_select(0, tok)
        outs.append(run_expert(e, tok, xe) if run_expert is not None else experts[e](xe))
    ys = torch.cat(outs, dim=0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    ys = ys.index_select(0, inverse).view(n, k, -1)
    # combine in fp32 so that the k weights (summing to 1) are not rounded to a bf16/fp16 base dtype
    with _fp32_region(x):
        return (ys.float() * weights.float().unsqueeze(-1)).sum(dim=1)


def naive_dispatch(
    x: torch.Tensor, expert_idx: torch.Tensor, weights: torch.Tensor, experts: Sequence[nn.Module]
) -> torch.Tensor:
    """Reference: every expert on every token, combined with a dense [N, E] weight matrix."""
    dense_w = torch.zeros(x.shape[0], len(experts), dtype=weights.dtype, device=x.device)
    dense_w = dense_w.scatter(1, expert_idx, weights)
    out = None
    for e, expert in enumerate(experts):
        y = expert(x) * dense_w[:, e : e + 1].to(x.dtype)
        out = y if out is None else out + y
    return out


@dataclass
class ForwardContext:
    """Per-token facts for one forward of the adapted model (set by ``MoEModel.forward``)."""

    valid: Optional[torch.Tensor] = None       # [B, T] bool: non-padding tokens (None = all)
    old: Optional[torch.Tensor] = None         # [B, T] bool: old-language tokens (None = no flags)
    losses: list = field(default_factory=list)  # (layer_idx, aux, lpr) appended by every MoE layer
    closed: bool = False  # set after the forward: a checkpoint recompute then computes but does not collect
    aux_loss_form: str = "hf"   # balance-loss convention (neuronmoe.moe.losses.AUX_LOSS_FORMS)
    lpr_input: str = "probs"    # LPR on router probabilities or logits (neuronmoe.moe.losses.LPR_INPUTS)
    lpr_layer_mean: str = "layers"  # LPR over layers (neuronmoe.moe.losses.LPR_LAYER_MEANS)

    def token_masks(self, shape: torch.Size, device: Optional[torch.device] = None
                    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Flat ``(valid, old)`` masks for hidden states of ``shape`` [B, T, H] on ``device``
        (None when not applicable, e.g. 2-D hidden states or a 4-D attention mask)."""
        if len(shape) != 3:
            return None, None
        b, t = shape[0], shape[1]

        def fit(m: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            if m is None or m.dim() != 2 or m.shape[0] != b or m.shape[1] < t:
                return None
            m = m[:, -t:].reshape(-1)
            return m.to(device) if device is not None and m.device != device else m

        valid, old = fit(self.valid), fit(self.old)
        if old is not None and valid is not None:
            old = old & valid
        return valid, old


# ---------------------------------------------------------------------------------------------
# PEFT tuner layer
# ---------------------------------------------------------------------------------------------
class MoELayer(nn.Module, BaseTunerLayer):
    """Wraps a dense MLP (``base_layer`` = expert 0) with a router and E-1 copies per adapter."""

    adapter_layer_names = ("moe_router", "moe_experts")
    other_param_names = ("moe_num_experts", "moe_top_k")

    def __init__(self, base_layer: nn.Module, adapter_name: str, num_experts: int, top_k: int,
                 layer_idx: int, train_mode: str = "experts", router_init: str = "xavier_normal") -> None:
        super().__init__()
        self.base_layer = base_layer
        self.moe_router = nn.ModuleDict({})
        self.moe_experts = nn.ModuleDict({})
        self.moe_num_experts: dict[str, int] = {}
        self.moe_top_k: dict[str, int] = {}
        self.frozen_peft_weight_names = {}
        self.merged_adapters = []
        self._active_adapter = adapter_name
        self.layer_idx = layer_idx
        # transient state (never saved): forward context, capture recorder, last router statistics
        self._moe_ctx: Optional[ForwardContext] = None
        self._moe_capture: Any = None
        self._moe_stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self.update_layer(adapter_name, num_experts, top_k, train_mode=train_mode, router_init=router_init)

    def update_layer(self, adapter_name: str, num_experts: int, top_k: int, train_mode: str = "experts",
                     router_init: str = "xavier_normal", inference_mode: bool = False) -> None:
        if num_experts < 2:
            raise ValueError(f"layer {self.layer_idx}: an MoE layer needs >= 2 experts, got {num_experts}")
        base = self.base_layer
        ref = next(base.parameters())
        hidden = _hidden_size(base)
        router = nn.Linear(hidden, num_experts, bias=False, device=ref.device, dtype=torch.float32)
        if router_init == "xavier_normal":
            nn.init.xavier_normal_(router.weight)
        else:  # pragma: no cover - MoEConfig.validate refuses other values
            raise ValueError(f"unknown router_init {router_init!r}")
        copies = nn.ModuleList()
        for _ in range(num_experts - 1):
            c = copy.deepcopy(base)
            for p in c.parameters():
                p.requires_grad_(True)
            copies.append(c)
        self.moe_router[adapter_name] = router
        self.moe_experts[adapter_name] = copies
        self.moe_num_experts[adapter_name] = int(num_experts)
        self.set_top_k(adapter_name, top_k)
        self._set_frozen(adapter_name, train_mode)
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    def set_top_k(self, adapter_name: str, top_k: int) -> None:
        """Experts per token of ``adapter_name`` in this layer (clipped to its number of experts)."""
        self.moe_top_k[adapter_name] = int(min(top_k, self.moe_num_experts[adapter_name]))

    def _set_frozen(self, adapter_name: str, train_mode: str) -> None:
        if train_mode == "routers":
            self.frozen_peft_weight_names[adapter_name] = ("moe_experts",)
        else:
            self.frozen_peft_weight_names.pop(adapter_name, None)

    def set_train_mode(self, adapter_name: str, train_mode: str) -> None:
        """``experts``: router + new experts of ``adapter_name`` trainable; ``routers``: the router only.
        The frozen original MLP (expert 0) never trains."""
        self._set_frozen(adapter_name, train_mode)
        self.moe_router[adapter_name].requires_grad_(True)
        self.moe_experts[adapter_name].requires_grad_(train_mode == "experts")

    # -- merging is meaningless for a routed mixture ------------------------------------------
    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        raise NotImplementedError("NeuronMoE experts are routed per token and cannot be merged into the base MLP")

    def unmerge(self) -> None:
        return None

    def experts_of(self, adapter_name: str) -> list[nn.Module]:
        return [self.base_layer, *self.moe_experts[adapter_name]]

    def _active(self) -> Optional[str]:
        if self.disable_adapters:
            return None
        names = [a for a in self.active_adapters if a in self.moe_router]
        if not names:
            return None
        if len(names) > 1:
            raise ValueError(f"layer {self.layer_idx}: only one NeuronMoE adapter can be active, got {names}")
        return names[0]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = self._active()
        if name is None:
            return self.base_layer(x, *args, **kwargs)
        shape = x.shape
        xf = x.reshape(-1, shape[-1])
        router = self.moe_router[name]
        experts = self.experts_of(name)
        logits, probs, weights, expert_idx = route(xf, router.weight, self.moe_top_k[name])

        cap = self._moe_capture
        run_expert = cap.expert_runner(self, experts) if cap is not None and cap.activations else None
        y = sparse_dispatch(xf, expert_idx, weights, experts, run_expert=run_expert)

        ctx = self._moe_ctx
        valid, old = ctx.token_masks(shape, x.device) if ctx is not None else (None, None)
        if ctx is not None:
            # computed the same way in a gradient-checkpoint recompute (same saved tensors), collected once
            with _fp32_region(x):
                f, p = routing_fractions(probs, expert_idx, valid)
                # = load_balancing_loss(probs, expert_idx, valid, form)
                aux = balance_from_fractions(f, p, expert_idx.shape[-1], ctx.aux_loss_form)
                lpr = lpr_loss(logits, old, ctx.lpr_input) if ctx.old is not None else None
            if not ctx.closed:
                ctx.losses.append((self.layer_idx, aux, lpr))
            self._moe_stats = (f.detach(), p.detach())
        else:
            with torch.no_grad():
                self._moe_stats = routing_fractions(probs, expert_idx, valid)
        if cap is not None:
            cap.record_routing(self.layer_idx, shape[:-1], expert_idx, weights)
        return y.view(*shape[:-1], y.shape[-1]).to(x.dtype)

    def __repr__(self) -> str:
        return "neuronmoe." + super().__repr__()


def _hidden_size(mlp: nn.Module) -> int:
    for name in ("gate_proj", "up_proj"):
        proj = getattr(mlp, name, None)
        if isinstance(proj, nn.Linear):
            return int(proj.in_features)
    if hasattr(mlp, "hidden_size"):
        return int(mlp.hidden_size)
    raise InputError(f"{type(mlp).__name__}: cannot tell the hidden size (no gate_proj/up_proj Linear)")
