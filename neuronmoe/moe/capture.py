"""Routing statistics and routing capture for analysis (CPU copies; not for training loops)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn as nn

from neuronmoe.errors import InputError
from neuronmoe.moe.layer import MoELayer

PROJ_KEYS = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}


def moe_layers(model: nn.Module) -> dict[int, MoELayer]:
    """``{decoder layer index: MoELayer}`` of a (PEFT-wrapped) model."""
    return {m.layer_idx: m for m in model.modules() if isinstance(m, MoELayer)}


def router_stats(model: nn.Module) -> dict[int, dict[str, list[float]]]:
    """``{layer: {"load": [E], "mean_prob": [E]}}`` of the last forward (non-padding tokens).

    ``load[e]`` is the fraction of top-k slots routed to expert ``e`` (sums to 1); ``mean_prob[e]``
    the mean router probability of ``e``. Layers that have not run yet are left out.
    """
    out = {}
    for idx, layer in sorted(moe_layers(model).items()):
        if layer._moe_stats is None:
            continue
        f, p = layer._moe_stats
        out[idx] = {"load": f.float().cpu().tolist(), "mean_prob": p.float().cpu().tolist()}
    return out


class RoutingCapture:
    """What ``capture_routing`` records; ``layers`` holds the last forward, ``forwards`` all of them
    when ``keep_all`` is set.

    ``layers[l] = {"expert_ids": LongTensor[B, T, k], "weights": [B, T, k] fp32,
    "acts": {e: {"token_index": LongTensor[n_e] (flat b*T+t), "gate": [n_e, I], "up": [n_e, I],
    "down": [n_e, H]}}}`` (``acts`` only with ``activations=True``; expert 0 is the base MLP).
    """

    def __init__(self, activations: bool = False, keep_all: bool = False) -> None:
        self.activations = activations
        self.keep_all = keep_all
        self.layers: dict[int, dict[str, Any]] = {}
        self.forwards: list[dict[int, dict[str, Any]]] = []
        self._pending: dict[int, dict[str, Any]] = {}

    def _slot(self, layer_idx: int) -> dict[str, Any]:
        return self._pending.setdefault(layer_idx, {"acts": {}} if self.activations else {})

    def expert_runner(self, layer: MoELayer, experts: list[nn.Module]):
        slot = self._slot(layer.layer_idx)
        # a new forward of this layer starts: drop what an earlier forward left in the slot
        if "expert_ids" in slot:
            self._flush()
            slot = self._slot(layer.layer_idx)

        def run(e: int, tok: torch.Tensor, xe: torch.Tensor) -> torch.Tensor:
            rec: dict[str, torch.Tensor] = {"token_index": tok.detach().cpu()}
            hooks = []
            for attr, key in PROJ_KEYS.items():
                mod = getattr(experts[e], attr, None)
                if mod is None:
                    continue

                def hook(_m, _inp, out, key=key):
                    rec[key] = out.detach().float().cpu()

                hooks.append(mod.register_forward_hook(hook))
            try:
                y = experts[e](xe)
            finally:
                for h in hooks:
                    h.remove()
            slot["acts"][e] = rec
            return y

        return run

    def record_routing(self, layer_idx: int, lead_shape: torch.Size, expert_idx: torch.Tensor,
                       weights: torch.Tensor) -> None:
        slot = self._slot(layer_idx)
        if "expert_ids" in slot:  # the same layer ran again without activations: new forward
            self._flush()
            slot = self._slot(layer_idx)
        k = expert_idx.shape[-1]
        slot["expert_ids"] = expert_idx.detach().reshape(*lead_shape, k).cpu()
        slot["weights"] = weights.detach().float().reshape(*lead_shape, k).cpu()

    def _flush(self) -> None:
        if not self._pending:
            return
        self.layers = self._pending
        if self.keep_all:
            self.forwards.append(self._pending)
        self._pending = {}

    def close(self) -> None:
        self._flush()


@contextlib.contextmanager
def capture_routing(model: nn.Module, activations: bool = False, keep_all: bool = False) -> Iterator[RoutingCapture]:
    """Record the routing (and optionally per-expert activations) of every MoE layer.

    ``cap.layers`` is filled when the block exits (and after each completed forward when a
    second forward runs inside the block; ``keep_all=True`` keeps every forward in ``cap.forwards``).
    """
    layers = moe_layers(model)
    if not layers:
        raise InputError("capture_routing: the model has no NeuronMoE layer (was get_peft_model applied?)")
    cap = RoutingCapture(activations=activations, keep_all=keep_all)
    for layer in layers.values():
        if layer._moe_capture is not None:
            raise RuntimeError("capture_routing blocks cannot be nested on the same model")
        layer._moe_capture = cap
    try:
        yield cap
    finally:
        for layer in layers.values():
            layer._moe_capture = None
        cap.close()
