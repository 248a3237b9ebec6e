"""Where the parts of a decoder live, per architecture.

Every stage finds decoder layers, attention projections and the gated MLP through this
table, never by a model's name. Sizes (layer count, hidden size, MLP size) are read from
the model's config. An architecture that is not in the table, or a model whose modules do
not match its entry, is a clear error that names what is missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from neuronmoe.errors import InputError
from neuronmoe.utils.hfconfig import SIZE_KEYS, config_sizes, text_config

if TYPE_CHECKING:  # torch is imported where a model is inspected, so that `neuronmoe --help` stays fast
    import torch.nn as nn


@dataclass(frozen=True)
class ArchSpec:
    """Module paths inside one decoder architecture.

    ``layers``: dotted path from the *CausalLM* model to the ``nn.ModuleList`` of decoder
    layers. ``attn``/``mlp``: attribute of a decoder layer. ``attn_proj``/``mlp_proj``:
    the linear projections inside them. ``mlp_input_norm``: the norm whose output is the
    MLP's input (LayerMoE similarity captures it); ``attn_input_norm``: the norm whose output is
    the attention's input (``neuronmoe similarity --capture-site attn_input``). ``act``: the attribute holding the gate
    activation inside the MLP.
    """

    model_types: tuple[str, ...]
    layers: str = "model.layers"
    attn: str = "self_attn"
    mlp: str = "mlp"
    attn_proj: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    mlp_proj: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")
    mlp_input_norm: str = "post_attention_layernorm"
    attn_input_norm: str = "input_layernorm"
    act: str = "act_fn"
    notes: str = ""
    # config keys: number of layers, hidden size, MLP size
    config_keys: dict[str, str] = field(default_factory=lambda: dict(SIZE_KEYS))

    @property
    def modules(self) -> tuple[str, ...]:
        """Unit-bearing projections in neuron-analysis order: attention then MLP."""
        return self.attn_proj + self.mlp_proj

    def module_path(self, name: str) -> str:
        """Path of a projection relative to its decoder layer, e.g. ``self_attn.q_proj``."""
        if name in self.attn_proj:
            return f"{self.attn}.{name}"
        if name in self.mlp_proj:
            return f"{self.mlp}.{name}"
        raise KeyError(f"unknown module {name!r}; known: {', '.join(self.modules)}")


_LLAMA_LIKE = ArchSpec(model_types=("llama", "mistral", "qwen2", "qwen3"), notes="pre-norm; gated SiLU MLP")
_GEMMA = ArchSpec(
    model_types=("gemma", "gemma2", "gemma3_text", "gemma3"),
    mlp_input_norm="pre_feedforward_layernorm",
    notes="Gemma2/3 sandwich norms: the MLP input is pre_feedforward_layernorm's output "
    "(Gemma-1 uses post_attention_layernorm); gated GeLU(tanh) MLP",
)
_GEMMA1 = ArchSpec(model_types=("gemma",), notes="gated GeLU MLP")

ARCHITECTURES: dict[str, ArchSpec] = {}
for _spec in (_LLAMA_LIKE, _GEMMA):
    for _t in _spec.model_types:
        ARCHITECTURES[_t] = _spec
ARCHITECTURES["gemma"] = _GEMMA1

#: model_type -> human-readable family, for docs and errors
SUPPORTED = {
    "llama": "Llama (1/2/3/3.1/3.2), SmolLM2",
    "mistral": "Mistral",
    "qwen2": "Qwen1.5 / Qwen2 / Qwen2.5",
    "qwen3": "Qwen3 (dense)",
    "gemma": "Gemma",
    "gemma2": "Gemma-2",
    "gemma3_text": "Gemma-3 (text)",
}


class UnsupportedArchitectureError(InputError):
    """A model whose architecture or modules NeuronMoE cannot work with (names what is missing)."""


def _model_type(model_or_config: Any) -> str:
    cfg = getattr(model_or_config, "config", model_or_config)
    mt = getattr(cfg, "model_type", None)
    if mt == "gemma3" and hasattr(cfg, "text_config"):
        return "gemma3"
    return str(mt)


def get_arch(model_or_config: Any) -> ArchSpec:
    mt = _model_type(model_or_config)
    try:
        return ARCHITECTURES[mt]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"architecture {mt!r} is not supported: NeuronMoE needs decoder layers with "
            f"q/k/v/o attention projections and a gated MLP (gate_proj, up_proj, down_proj). "
            f"Supported model_type values: {', '.join(sorted(SUPPORTED))}. "
            f"Add an entry to neuronmoe.models.arch.ARCHITECTURES if yours has that shape."
        ) from None


def model_dims(model_or_config: Any) -> dict[str, int]:
    """``{"num_layers", "hidden_size", "intermediate_size"}`` read from the config."""
    spec = get_arch(model_or_config)
    try:
        return config_sizes(model_or_config, spec.config_keys)
    except InputError as e:
        raise UnsupportedArchitectureError(str(e)) from None


def num_layers(model_or_config: Any) -> int:
    return model_dims(model_or_config)["num_layers"]


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a CausalLM (also reached through a PEFT wrapper)."""
    import torch.nn as nn

    spec = get_arch(model)
    base = model
    # unwrap PEFT (PeftModel.base_model.model) and DDP-style wrappers
    for _ in range(4):
        if hasattr(base, "get_base_model") and base is not base.get_base_model():
            base = base.get_base_model()
            continue
        if hasattr(base, "module") and isinstance(base.module, nn.Module) and not hasattr(base, "model"):
            base = base.module
            continue
        break
    candidates = [spec.layers, "model.language_model.layers", "language_model.model.layers", "model.model.layers"]
    for path in candidates:
        try:
            layers = _get_path(base, path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList):
            return layers
    raise UnsupportedArchitectureError(
        f"{type(base).__name__}: could not find the decoder layers at {spec.layers!r} "
        f"(model_type {_model_type(model)!r})"
    )


def layer_module(layer: nn.Module, spec: ArchSpec, name: str) -> nn.Module:
    """A projection (``q_proj``...``down_proj``) of one decoder layer, with a clear error."""
    path = spec.module_path(name)
    try:
        return _get_path(layer, path)
    except AttributeError:
        raise UnsupportedArchitectureError(
            f"decoder layer {type(layer).__name__} has no {path!r}; NeuronMoE needs a gated MLP "
            f"({', '.join(spec.mlp_proj)}) and attention projections ({', '.join(spec.attn_proj)})"
        ) from None


def mlp_module(layer: nn.Module, spec: ArchSpec) -> nn.Module:
    import torch.nn as nn

    try:
        mlp = getattr(layer, spec.mlp)
    except AttributeError:
        raise UnsupportedArchitectureError(f"decoder layer {type(layer).__name__} has no {spec.mlp!r}") from None
    missing = [n for n in spec.mlp_proj if not isinstance(getattr(mlp, n, None), nn.Module)]
    if missing:
        raise UnsupportedArchitectureError(
            f"{type(mlp).__name__} is not a gated MLP: missing {', '.join(missing)} "
            f"(NeuronMoE upcycles gated MLPs with {', '.join(spec.mlp_proj)})"
        )
    return mlp


def validate_model(model: nn.Module) -> ArchSpec:
    """Check that every decoder layer has every projection the table promises."""
    spec = get_arch(model)
    layers = decoder_layers(model)
    n = num_layers(model)
    if len(layers) != n:
        raise UnsupportedArchitectureError(f"config says {n} layers but the model has {len(layers)}")
    for layer in layers:
        mlp_module(layer, spec)
        for name in spec.modules:
            layer_module(layer, spec, name)
    return spec


def unit_counts(model_or_config: Any) -> dict[str, int]:
    """Units (output features) per projection, from the config alone."""
    cfg = text_config(model_or_config)
    spec = get_arch(model_or_config)
    hidden = int(cfg.hidden_size)
    inter = int(cfg.intermediate_size)
    heads = int(cfg.num_attention_heads)
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    sizes = {
        "q_proj": heads * head_dim,
        "k_proj": kv * head_dim,
        "v_proj": kv * head_dim,
        "o_proj": hidden,
        "gate_proj": inter,
        "up_proj": inter,
        "down_proj": hidden,
    }
    return {m: sizes[m] for m in spec.modules}
