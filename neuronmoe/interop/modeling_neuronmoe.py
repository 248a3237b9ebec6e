# coding=utf-8
# Copyright the NeuronMoE open implementation authors. Licensed under the Apache License, Version 2.0.
"""NeuronMoE models for ``transformers`` (``trust_remote_code=True``); needs torch and transformers only.

A NeuronMoE model is a dense decoder (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma-2, Gemma-3) in
which the MLP of some decoder layers is upcycled into a routed mixture of experts:

* expert 0 is the base model's own MLP, experts 1..E-1 are further MLPs of the same shape;
* the router is a bias-free ``Linear(hidden, E)`` kept in float32;
* per token: softmax over the E router logits in float32, the top-k experts, their k weights
  renormalised to sum to 1, output ``sum_i w_i * expert_i(x)`` (combined in float32, then cast
  back to the hidden states' dtype).

``config.moe_experts_per_layer[l]`` is E for decoder layer ``l``; a layer with E = 1 keeps the
base architecture's MLP unchanged. ``config.moe_top_k`` is k (clipped to E per layer).

This file is written by ``neuronmoe export`` next to the weights; it does not import the
``neuronmoe`` package. The routing and dispatch below compute exactly what the NeuronMoE PEFT
adapter computes (neuronmoe/moe/layer.py), so exported logits equal base + adapter logits.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

MODEL_TYPE_PREFIX = "neuronmoe_"


# ---------------------------------------------------------------------------------------------
# routing and sparse dispatch
# ---------------------------------------------------------------------------------------------
def route(x: torch.Tensor, router_weight: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, expert_idx)`` [N, k] for flattened tokens ``x`` [N, H]; all routing math in float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        probs = F.linear(x.float(), router_weight.float()).softmax(dim=-1)
        top_p, expert_idx = probs.topk(k, dim=-1)
        weights = top_p / top_p.sum(dim=-1, keepdim=True)
    return weights, expert_idx


def sparse_dispatch(x: torch.Tensor, expert_idx: torch.Tensor, weights: torch.Tensor, experts: nn.ModuleList) -> torch.Tensor:
    """``sum_i weights[:, i] * experts[expert_idx[:, i]](x)``, each expert run on its own tokens only."""
    n, k = expert_idx.shape
    flat = expert_idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=len(experts)).tolist()
    token_of_slot = torch.div(order, k, rounding_mode="floor")
    outs = [experts[e](x.index_select(0, tok)) for e, tok in enumerate(token_of_slot.split(counts)) if tok.numel()]
    ys = torch.cat(outs, dim=0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    ys = ys.index_select(0, inverse).view(n, k, -1)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return (ys.float() * weights.float().unsqueeze(-1)).sum(dim=1)


class NeuronMoEMLP(nn.Module):
    """A routed mixture of ``num_experts`` copies of a dense gated MLP (``experts[0]`` = the original)."""

    def __init__(self, dense_mlp: nn.Module, num_experts: int, top_k: int, hidden_size: int) -> None:
        super().__init__()
        if num_experts < 2:
            raise ValueError(f"an MoE layer needs >= 2 experts, got {num_experts}")
        self.experts = nn.ModuleList([dense_mlp] + [copy.deepcopy(dense_mlp) for _ in range(num_experts - 1)])
        ref = next(dense_mlp.parameters())
        self.router = nn.Linear(hidden_size, num_experts, bias=False, device=ref.device, dtype=torch.float32)
        self.num_experts = int(num_experts)
        self.top_k = int(min(top_k, num_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xf = x.reshape(-1, shape[-1])
        weights, expert_idx = route(xf, self.router.weight, self.top_k)
        y = sparse_dispatch(xf, expert_idx, weights, self.experts)
        return y.view(*shape[:-1], y.shape[-1]).to(x.dtype)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_k={self.top_k}"


def upcycle(model: nn.Module, config) -> None:
    """Replace the MLP of every decoder layer with E > 1 by a :class:`NeuronMoEMLP`."""
    epl = list(config.moe_experts_per_layer or [])
    layers = model.model.layers
    if len(epl) != len(layers):
        raise ValueError(
            f"config.moe_experts_per_layer has {len(epl)} entries but the model has {len(layers)} decoder layers"
        )
    for layer, e in zip(layers, epl):
        if int(e) > 1:
            layer.mlp = NeuronMoEMLP(layer.mlp, int(e), int(config.moe_top_k), int(config.hidden_size))


# ---------------------------------------------------------------------------------------------
# one config + one CausalLM class per supported base architecture
# ---------------------------------------------------------------------------------------------
class _MoEForCausalLM:
    """Mixin: build the base CausalLM, then upcycle the MLPs listed in the config."""

    _keep_in_fp32_modules_strict = ["router"]  # the router stays float32 whatever the load dtype

    def __init__(self, config) -> None:
        super().__init__(config)
        upcycle(self, config)


class NeuronMoELlamaConfig(LlamaConfig):
    model_type = MODEL_TYPE_PREFIX + "llama"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoELlamaForCausalLM(_MoEForCausalLM, LlamaForCausalLM):
    config_class = NeuronMoELlamaConfig


class NeuronMoEMistralConfig(MistralConfig):
    model_type = MODEL_TYPE_PREFIX + "mistral"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoEMistralForCausalLM(_MoEForCausalLM, MistralForCausalLM):
    config_class = NeuronMoEMistralConfig


class NeuronMoEQwen2Config(Qwen2Config):
    model_type = MODEL_TYPE_PREFIX + "qwen2"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoEQwen2ForCausalLM(_MoEForCausalLM, Qwen2ForCausalLM):
    config_class = NeuronMoEQwen2Config


class NeuronMoEQwen3Config(Qwen3Config):
    model_type = MODEL_TYPE_PREFIX + "qwen3"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoEQwen3ForCausalLM(_MoEForCausalLM, Qwen3ForCausalLM):
    config_class = NeuronMoEQwen3Config


class NeuronMoEGemmaConfig(GemmaConfig):
    model_type = MODEL_TYPE_PREFIX + "gemma"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoEGemmaForCausalLM(_MoEForCausalLM, GemmaForCausalLM):
    config_class = NeuronMoEGemmaConfig


class NeuronMoEGemma2Config(Gemma2Config):
    model_type = MODEL_TYPE_PREFIX + "gemma2"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoEGemma2ForCausalLM(_MoEForCausalLM, Gemma2ForCausalLM):
    config_class = NeuronMoEGemma2Config


class NeuronMoEGemma3TextConfig(Gemma3TextConfig):
    model_type = MODEL_TYPE_PREFIX + "gemma3_text"
    moe_experts_per_layer: list[int] | None = None
    moe_top_k: int = 2


class NeuronMoEGemma3ForCausalLM(_MoEForCausalLM, Gemma3ForCausalLM):
    config_class = NeuronMoEGemma3TextConfig


#: base model_type -> (config class, CausalLM class) of its NeuronMoE version
CLASSES = {
    "llama": (NeuronMoELlamaConfig, NeuronMoELlamaForCausalLM),
    "mistral": (NeuronMoEMistralConfig, NeuronMoEMistralForCausalLM),
    "qwen2": (NeuronMoEQwen2Config, NeuronMoEQwen2ForCausalLM),
    "qwen3": (NeuronMoEQwen3Config, NeuronMoEQwen3ForCausalLM),
    "gemma": (NeuronMoEGemmaConfig, NeuronMoEGemmaForCausalLM),
    "gemma2": (NeuronMoEGemma2Config, NeuronMoEGemma2ForCausalLM),
    "gemma3_text": (NeuronMoEGemma3TextConfig, NeuronMoEGemma3ForCausalLM),
}
