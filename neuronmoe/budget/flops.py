"""Model FLOPs of the routed model, per token: the one FLOP model of the project (``benchmarks/bench_moe.py`` uses it).

Conventions (matrix multiplies only: 2 FLOPs per multiply-add; norms, activations, softmax and the sparse
dispatch's gathers are left out):

* forward, per decoder layer: attention projections ``2 h (n_q d + 2 n_kv d) + 2 n_q d h``; attention scores
  ``2 * 2 S n_q d`` (QK^T and PV over the full packed length S, the usual MFU convention, not halved for the causal
  mask); the MLP ``2 * 3 h i`` once per active expert: ``min(k, E_l)`` in a MoE layer (``E_l > 1``, top-k), one in a
  dense layer; the router ``2 h E_l`` in a MoE layer. The LM head ``2 h V`` once per token.
* backward through the activations: the same FLOPs as the forward for every weight matrix (input gradient), twice
  the forward for the attention scores (both operands are activations); only where a gradient has to flow, i.e.
  from the MLP of the first layer holding a trainable parameter up to the head (nothing below it trains).
* weight gradients: the forward FLOPs of the *trainable* weights only: the routers, and in ``train_mode`` experts
  the new experts, which receive a share ``(E_l - 1) / E_l`` of a layer's k slots under uniform routing (expert 0,
  the original MLP, stays frozen). A frozen weight therefore costs about 4 x N per token (forward + input
  gradient), a trainable one 6 x N.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from neuronmoe.errors import ConfigError

TRAIN_MODES = ("experts", "routers")


@dataclass(frozen=True)
class Shape:
    """What the FLOP and memory models need of a decoder config."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def shape_of(config: Any) -> Shape:
    """:class:`Shape` of a transformers config (the text config of a multimodal one)."""
    from neuronmoe.models.arch import text_config

    c = text_config(config)
    heads = int(c.num_attention_heads)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return Shape(layers=int(c.num_hidden_layers), hidden=int(c.hidden_size), intermediate=int(c.intermediate_size),
                 heads=heads, kv_heads=int(getattr(c, "num_key_value_heads", None) or heads), head_dim=int(head_dim),
                 vocab=int(c.vocab_size))


def _experts(shape: Shape, experts_per_layer: Sequence[int] | None) -> list[int]:
    experts = [1] * shape.layers if experts_per_layer is None else [int(e) for e in experts_per_layer]
    if len(experts) != shape.layers:
        raise ConfigError(f"allocation has {len(experts)} layers but the model has {shape.layers}")
    return experts


def layer_flops(shape: Shape, experts: int, top_k: int, seq: int) -> dict[str, float]:
    """Forward FLOPs of one token in one decoder layer with ``experts`` experts (1 = dense)."""
    h, d = shape.hidden, shape.head_dim
    return {"attn_proj": 2.0 * h * (shape.q_dim + 2 * shape.kv_dim) + 2.0 * shape.q_dim * h,
            "attn_scores": 2.0 * 2 * seq * shape.heads * d,
            "mlp_one": 2.0 * 3 * h * shape.intermediate,
            "active": float(min(top_k, experts) if experts > 1 else 1),
            "router": 2.0 * h * experts if experts > 1 else 0.0}


def forward_flops_per_token(shape: Shape, experts_per_layer: Sequence[int] | None, top_k: int, seq: int) -> dict[str, float]:
    """Forward FLOPs of one token: ``total`` and its parts (``attention``, ``mlp``, ``router``, ``head``)."""
    parts = {"attention": 0.0, "mlp": 0.0, "router": 0.0}
    for e in _experts(shape, experts_per_layer):
        f = layer_flops(shape, e, top_k, seq)
        parts["attention"] += f["attn_proj"] + f["attn_scores"]
        parts["mlp"] += f["mlp_one"] * f["active"]
        parts["router"] += f["router"]
    parts["head"] = 2.0 * shape.hidden * shape.vocab
    return {"total": sum(parts.values()), **parts}


def first_trainable_layer(experts_per_layer: Sequence[int]) -> int | None:
    """Index of the first MoE layer (where the first trainable router sits), None for a dense model."""
    return next((i for i, e in enumerate(experts_per_layer) if e > 1), None)


def training_flops_per_token(shape: Shape, experts_per_layer: Sequence[int], top_k: int, seq: int,
                             train_mode: str = "experts") -> dict[str, float]:
    """Per token of training: ``forward``, ``backward_activations``, ``weight_gradients`` and their ``total``
    (the module docstring gives the rules)."""
    if train_mode not in TRAIN_MODES:
        raise ConfigError(f"train_mode must be one of {', '.join(TRAIN_MODES)}, got {train_mode!r}")
    experts = _experts(shape, experts_per_layer)
    first = first_trainable_layer(experts)
    fwd = forward_flops_per_token(shape, experts, top_k, seq)["total"]
    back, wgrad = 0.0, 0.0
    for i, e in enumerate(experts):
        f = layer_flops(shape, e, top_k, seq)
        mlp = f["mlp_one"] * f["active"] + f["router"]
        if first is not None and i > first:
            back += f["attn_proj"] + 2 * f["attn_scores"] + mlp
        elif first is not None and i == first:
            back += mlp
        if e > 1:
            wgrad += f["router"]
            if train_mode == "experts":
                wgrad += f["mlp_one"] * f["active"] * (e - 1) / e
    if first is not None:
        back += 2.0 * shape.hidden * shape.vocab
    return {"forward": fwd, "backward_activations": back, "weight_gradients": wgrad, "total": fwd + back + wgrad}


def model_flops_per_token(shape: Shape, experts_per_layer: Sequence[int] | None, top_k: int, seq: int) -> float:
    """The PaLM-style "model FLOPs" (3 x forward, as if every weight took a gradient), for comparison only."""
    return 3.0 * forward_flops_per_token(shape, experts_per_layer, top_k, seq)["total"]
