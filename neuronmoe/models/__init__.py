"""Model resolution (aliases, local folders, hub ids, shipped configs) and the architecture table."""
from neuronmoe.models.aliases import ALIASES, DEFAULT_MODEL
from neuronmoe.models.arch import (
    ARCHITECTURES,
    ArchSpec,
    UnsupportedArchitectureError,
    decoder_layers,
    get_arch,
    layer_module,
    mlp_module,
    model_dims,
    num_layers,
    text_config,
    unit_counts,
    validate_model,
)
from neuronmoe.models.loading import (
    ModelNotFoundError,
    describe,
    load_config,
    load_model,
    load_tokenizer,
    model_identity,
    resolve_model,
    shipped_configs,
)

__all__ = [
    "ALIASES", "DEFAULT_MODEL", "ARCHITECTURES", "ArchSpec", "UnsupportedArchitectureError",
    "decoder_layers", "get_arch", "layer_module", "mlp_module", "model_dims", "num_layers",
    "text_config", "unit_counts", "validate_model", "ModelNotFoundError", "describe", "load_config",
    "load_model", "load_tokenizer", "model_identity", "resolve_model", "shipped_configs",
]
