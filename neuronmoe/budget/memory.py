"""Memory per device of a training run: the static part (weights, gradients, optimizer states, as the chosen
ZeRO stage shards them) and the activations at the packed length x per-device batch, with and without gradient
checkpointing; and the per-device batch x accumulation that fits a card while keeping the effective batch.

Static part, two layouts (:func:`static_memory`):

* ``torch`` (no DeepSpeed; what ``neuronmoe train`` runs without ``--deepspeed``): weights in fp32 (bf16 is an
  autocast), fp32 gradients of the trainable weights, AdamW's ``exp_avg`` and ``exp_avg_sq`` (fp32) and one fp32
  ``step`` scalar per trainable tensor; DDP (world size > 1) adds one fp32 gradient bucket copy, and bf16 autocast
  its cached bf16 copy of every trainable weight (2 bytes) during the forward and backward. Exact for the weights,
  gradients and optimizer states: a test compares them with the bytes of a real model's tensors after one optimizer
  step.
* ``deepspeed`` with bf16 (the paper plan: ZeRO-2): DeepSpeed casts the module to bf16 (frozen and trainable
  weights 2 bytes); the fp32 master copy and Adam's two states of the trainable weights (12 bytes) are split over
  the world size from ZeRO stage 1 on; bf16 gradients are split from stage 2 on, plus the fp32 copy of this rank's
  gradient partition at the optimizer step and the reduce bucket (``reduce_bucket_size`` bf16 elements). A model of
  DeepSpeed's layout, not measured here: ``benchmarks/gpu_check.sh`` compares the whole estimate with the peak.

Activations (:func:`activation_memory`), bytes per token, bf16 activations (``b`` = 2), HF Llama-style layers with
SDPA/flash attention (no S x S matrix is kept):

* attention block: the RMSNorm's fp32 input ``4h`` and bf16 output ``2h``, q, k, v ``2(q + 2 kv)``, the attention
  output ``2q`` and its log-sum-exp ``4 n_q``;
* dense MLP: norm ``6h`` + gate, SiLU, up and their product ``4 x 2i``;
* MoE MLP: norm ``6h``, the router's fp32 input ``4h`` and logits/probabilities ``8E``, and per routed slot (k per
  token) the gathered input ``2h``, the expert's ``8i`` and its fp32 output kept for the weighted sum ``4h``;
* nothing is kept below the first trainable layer's MLP (no gradient flows there);
* head and loss: the final norm ``6h``; bf16 logits ``2V``, the fp32 log-softmax ``4V`` and, at the start of the
  backward, two fp32 logit gradients ``8V`` (the peak of the step);
* gradient checkpointing keeps each layer's input (the residual stream, fp32 under autocast, bf16 under DeepSpeed)
  and recomputes one layer at a time: the layer inputs + the largest layer + head and loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from neuronmoe.budget.flops import Shape, first_trainable_layer
from neuronmoe.errors import ConfigError

LAYOUTS = ("torch", "deepspeed")
_FACTS: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class ParamCounts:
    frozen: int  #: parameters without a gradient (the base, expert 0; the stage-1 experts in stage 2)
    trainable: int
    trainable_tensors: int


def model_facts(config: Any) -> dict[str, Any]:
    """``allocation.params.model_shape`` + ``mlp_tensors`` (parameter tensors of one layer's MLP), cached."""
    from neuronmoe.allocation.params import model_shape

    key = config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(config)
    if key not in _FACTS:
        import torch
        from transformers import AutoModelForCausalLM

        from neuronmoe.models.arch import decoder_layers, get_arch, mlp_module

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        mlp = mlp_module(decoder_layers(model)[0], get_arch(model))
        _FACTS[key] = {**model_shape(config), "mlp_tensors": sum(1 for _ in mlp.parameters())}
        del model
    return dict(_FACTS[key])


def param_counts(facts: dict[str, Any], experts_per_layer: Sequence[int], train_mode: str) -> ParamCounts:
    """Frozen and trainable parameters (and trainable tensors) of the adapted model in ``train_mode``."""
    mlp, hidden = facts["mlp_params_per_layer"], facts["hidden_size"]
    if len(experts_per_layer) != len(mlp):
        raise ConfigError(f"allocation has {len(experts_per_layer)} layers but the model has {len(mlp)}")
    new = sum((e - 1) * p for e, p in zip(experts_per_layer, mlp))
    new_tensors = sum((e - 1) * facts["mlp_tensors"] for e in experts_per_layer)
    routers = sum(hidden * e for e in experts_per_layer if e > 1)
    router_tensors = sum(1 for e in experts_per_layer if e > 1)
    base = int(facts["base_params"])
    if train_mode == "experts":
        return ParamCounts(base, new + routers, new_tensors + router_tensors)
    if train_mode == "routers":
        return ParamCounts(base + new, routers, router_tensors)
    raise ConfigError(f"train_mode must be experts or routers, got {train_mode!r}")


def static_memory(counts: ParamCounts, layout: str = "torch", world: int = 1, zero_stage: int = 0,
                  reduce_bucket: int = 500_000_000, autocast: bool = False) -> dict[str, int]:
    """Bytes per device of weights, gradients, optimizer states and buffers (module docstring); ``autocast``
    (torch layout under bf16 autocast) adds the bf16 copies autocast caches of the trainable weights."""
    if layout not in LAYOUTS:
        raise ConfigError(f"memory layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if world < 1 or zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"world size {world} / ZeRO stage {zero_stage}: expected world >= 1 and a stage 0-3")
    t = counts.trainable
    if layout == "torch":
        return {"weights_frozen": 4 * counts.frozen, "weights_trainable": 4 * t, "gradients": 4 * t,
                "optimizer": 8 * t + 4 * counts.trainable_tensors,
                "buffers": (4 * t if world > 1 else 0) + (2 * t if autocast else 0)}
    shard = world if zero_stage >= 1 else 1
    grad_shard = world if zero_stage >= 2 else 1
    weights_t = 2 * t if zero_stage < 3 else -(-2 * t // world)
    return {"weights_frozen": 2 * counts.frozen if zero_stage < 3 else -(-2 * counts.frozen // world),
            "weights_trainable": weights_t,
            "gradients": -(-2 * t // grad_shard) + -(-4 * t // shard),
            "optimizer": -(-12 * t // shard),
            "buffers": 2 * min(reduce_bucket, t)}


def _layer_bytes(shape: Shape, experts: int, top_k: int, keep_attention: bool) -> float:
    """Activation bytes one token keeps in one layer (module docstring)."""
    h, i = shape.hidden, shape.intermediate
    attn = (6 * h + 2 * (shape.q_dim + 2 * shape.kv_dim) + 2 * shape.q_dim + 4 * shape.heads) if keep_attention else 0
    if experts > 1:
        mlp = 6 * h + 4 * h + 8 * experts + min(top_k, experts) * (2 * h + 8 * i + 4 * h)
    else:
        mlp = 6 * h + 8 * i
    return float(attn + mlp)


def activation_memory(shape: Shape, experts_per_layer: Sequence[int], top_k: int, tokens: int,
                      checkpointing: bool = False, residual_bytes: int = 4) -> dict[str, float]:
    """Activation bytes of one micro-batch of ``tokens`` (per-device batch x packed length): ``layers``,
    ``head`` (head and loss at the step's peak) and ``total``."""
    first = first_trainable_layer(experts_per_layer)
    per_layer = [0.0 if first is None or i < first else _layer_bytes(shape, e, top_k, keep_attention=i > first)
                 for i, e in enumerate(experts_per_layer)]
    v, h = shape.vocab, shape.hidden
    head = (6 * h + 14 * v) * tokens if first is not None else 0.0
    if checkpointing:
        layers = shape.layers * residual_bytes * h * tokens + max(per_layer, default=0.0) * tokens
    else:
        layers = sum(per_layer) * tokens
    return {"layers": layers, "head": head, "total": layers + head}


def divisor_splits(effective: int, world: int) -> list[tuple[int, int]]:
    """Every ``(per-device batch, accumulation)`` with ``batch x accumulation x world = effective``, largest batch
    first; empty when ``world`` does not divide ``effective``."""
    if effective % world:
        return []
    per_rank = effective // world
    return [(b, per_rank // b) for b in range(per_rank, 0, -1) if per_rank % b == 0]


def propose_split(effective: int, world: int, needs: Callable[[int, bool], float],
                  available: float) -> dict[str, Any] | None:
    """The largest per-device batch (fewest accumulation steps) whose ``needs(batch, checkpointing)`` bytes fit
    ``available``, without gradient checkpointing if possible; None when nothing fits."""
    for ckpt in (False, True):
        for b, acc in divisor_splits(effective, world):
            need = needs(b, ckpt)
            if need <= available:
                return {"per_device_train_batch_size": b, "gradient_accumulation_steps": acc,
                        "gradient_checkpointing": ckpt, "bytes": need}
    return None
