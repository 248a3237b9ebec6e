"""Parameters an allocation adds, from the model config alone (meta device, no weights).

Each new expert is one copy of its layer's gated MLP; every MoE layer (``E_l > 1``) adds a
router ``nn.Linear(hidden, E_l, bias=False)``. Expert 0 is the frozen original MLP.
"""
from __future__ import annotations

from typing import Any, Sequence

from neuronmoe.errors import InputError

_SHAPES: dict[str, dict[str, Any]] = {}


def model_shape(config: Any) -> dict[str, Any]:
    """``{"mlp_params_per_layer": [..], "base_params": int, "hidden_size": int}`` (meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    from neuronmoe.models.arch import decoder_layers, get_arch, mlp_module, text_config

    key = config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(config)
    if key not in _SHAPES:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        spec = get_arch(model)
        per_layer = [sum(p.numel() for p in mlp_module(layer, spec).parameters()) for layer in decoder_layers(model)]
        _SHAPES[key] = {
            "mlp_params_per_layer": per_layer,
            "base_params": sum(p.numel() for p in model.parameters()),
            "hidden_size": int(text_config(config).hidden_size),
        }
        del model
    return dict(_SHAPES[key])


def count_params(experts_per_layer: Sequence[int], shape: dict[str, Any]) -> dict[str, int]:
    """Parameter counts of an allocation for a model shape (see :func:`model_shape`).

    * ``new_expert_params``: sum over layers of ``(E_l - 1) * mlp_params_l``;
    * ``router_params``: sum over MoE layers (``E_l > 1``) of ``hidden * E_l``;
    * ``added_params``: the two above (what training adds, all trainable in stage 1);
    * ``moe_ffn_params``: every expert incl. the frozen original (``E_l * mlp_params_l``) plus
      routers: the quantity behind the paper's "-41.7% vs LayerMoE" (49 vs 84 experts);
    * ``base_params``, ``total_params`` = base + added.
    """
    mlp = shape["mlp_params_per_layer"]
    if len(experts_per_layer) != len(mlp):
        raise InputError(
            f"allocation has {len(experts_per_layer)} layers but the model has {len(mlp)} decoder layers"
        )
    hidden = shape["hidden_size"]
    new = sum((e - 1) * p for e, p in zip(experts_per_layer, mlp))
    router = sum(hidden * e for e in experts_per_layer if e > 1)
    ffn = sum(e * p for e, p in zip(experts_per_layer, mlp)) + router
    return {
        "mlp_params_per_expert": mlp[0] if len(set(mlp)) == 1 else None,
        "new_expert_params": int(new),
        "router_params": int(router),
        "added_params": int(new + router),
        "moe_ffn_params": int(ffn),
        "base_params": int(shape["base_params"]),
        "total_params": int(shape["base_params"] + new + router),
    }


def relative_change(value: int | float, reference: int | float) -> float:
    """``value / reference - 1`` (``-0.417`` = 41.7% fewer)."""
    if reference == 0:
        return 0.0 if value == 0 else float("inf")
    return value / reference - 1.0
