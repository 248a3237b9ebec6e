"""NeuronMoE adapter: per-layer MoE upcycling of dense MLPs as a PEFT method (docs/moe.md).

Importing this package registers the method (``import neuronmoe`` alone does it lazily, on the
first ``import peft``); then ``peft.get_peft_model(model, MoEConfig(...))``, ``save_pretrained``
and ``PeftModel.from_pretrained`` work as for LoRA.
"""
from neuronmoe.moe._registry import PEFT_NAME, PEFT_TYPE, PREFIX, extend_str_enum, peft_type, register
from neuronmoe.moe.capture import RoutingCapture, capture_routing, moe_layers, router_stats
from neuronmoe.moe.config import MoEConfig
from neuronmoe.moe.layer import MoELayer, naive_dispatch, route, sparse_dispatch
from neuronmoe.moe.losses import load_balancing_loss, lpr_loss, routing_fractions
from neuronmoe.moe.model import MoEModel

__all__ = [
    "MoEConfig", "MoEModel", "MoELayer", "register", "router_stats", "capture_routing", "RoutingCapture",
    "moe_layers", "route", "sparse_dispatch", "naive_dispatch", "load_balancing_loss", "lpr_loss",
    "routing_fractions", "peft_type", "extend_str_enum", "PEFT_NAME", "PEFT_TYPE", "PREFIX",
]

register()  # first use of the adapter classes: PEFT must know the method from here on
