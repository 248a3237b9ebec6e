"""``MoEConfig``: the PEFT config of the NeuronMoE adapter (see docs/moe.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from peft.config import PeftConfig

from neuronmoe.errors import ConfigError, InputError, MissingInputError
from neuronmoe.moe._registry import LOAD_LINE_FIELD, load_line, peft_type

TRAIN_MODES = ("experts", "routers")
ROUTER_INITS = ("xavier_normal",)
_ALLOCATION_FINGERPRINT_KEYS = ("base_model_fingerprint", "model_fingerprint", "fingerprint", "model")


@dataclass
class MoEConfig(PeftConfig):
    """Per-layer MoE upcycling of the dense MLPs.

    ``experts_per_layer[l]`` is the number of experts E_l of decoder layer ``l``, counting the
    frozen original MLP as routed expert 0; ``E_l == 1`` leaves layer ``l`` untouched.
    """

    experts_per_layer: list[int] = field(
        default_factory=list,
        metadata={"help": "experts per decoder layer, including the frozen original MLP (expert 0); 1 = dense"},
    )
    top_k: int = field(default=2, metadata={"help": "experts per token (clipped to E_l in small layers)"})
    router_init: str = field(default="xavier_normal", metadata={"help": "router weight init"})
    aux_loss_coef: float = field(default=0.01, metadata={"help": "weight of the load-balancing loss"})
    lpr_loss_coef: float = field(default=0.1, metadata={"help": "weight of the language-prior routing loss"})
    aux_loss_form: str = field(
        default="hf", metadata={"help": "balance loss: 'hf' (slots per token sum to k, HF Mixtral's "
                                        "load_balancing_loss_func) or 'normalized' (slot shares sum to 1)"})
    lpr_input: str = field(
        default="probs", metadata={"help": "LPR cross-entropy on router 'probs' (MoE-LPR's code) or 'logits' (MoE-LPR's text)"})
    lpr_layer_mean: str = field(
        default="layers", metadata={"help": "LPR over layers: 'layers' (mean over MoE layers) or 'expert_count_groups' "
                                            "(mean over groups of layers with the same E: the published code)"})
    train_mode: str = field(
        default="experts", metadata={"help": "'experts': new experts + routers trainable; 'routers': routers only"}
    )
    base_model_fingerprint: Optional[dict[str, Any]] = field(
        default=None, metadata={"help": "neuronmoe.utils.fingerprint.config_fingerprint of the base (filled in)"}
    )
    allocation_source: Optional[str] = field(default=None, metadata={"help": "where experts_per_layer came from"})
    target_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "filled in at injection: the MLP modules that became MoE (informative)"}
    )
    how_to_load: Optional[str] = field(
        default=None, metadata={"help": "written on save: the one line that loads this adapter (needs neuronmoe)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = peft_type()
        if self.task_type is None:
            self.task_type = "CAUSAL_LM"
        self.validate()

    def validate(self) -> None:
        epl = self.experts_per_layer
        if isinstance(epl, tuple):
            epl = self.experts_per_layer = list(epl)
        if not isinstance(epl, list) or not epl:
            raise InputError("MoEConfig.experts_per_layer must be a non-empty list (one int per decoder layer)")
        bad = [(i, e) for i, e in enumerate(epl) if isinstance(e, bool) or not isinstance(e, int) or e < 1]
        if bad:
            raise InputError(f"MoEConfig.experts_per_layer: entries must be ints >= 1; bad (layer, value): {bad[:5]}")
        if max(epl) < 2:
            raise InputError("MoEConfig.experts_per_layer: no layer has more than 1 expert, so there is nothing to adapt")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"MoEConfig.top_k must be an int >= 1, got {self.top_k!r}")
        if self.train_mode not in TRAIN_MODES:
            raise ConfigError(f"MoEConfig.train_mode must be one of {TRAIN_MODES}, got {self.train_mode!r}")
        if self.router_init not in ROUTER_INITS:
            raise ConfigError(f"MoEConfig.router_init must be one of {ROUTER_INITS}, got {self.router_init!r}")
        from neuronmoe.moe.losses import check_loss_options

        check_loss_options(self.aux_loss_form, self.lpr_input, "MoEConfig.", self.lpr_layer_mean)
        for name in ("aux_loss_coef", "lpr_loss_coef"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"MoEConfig.{name} must be a number >= 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        """PEFT's dict (what save_pretrained writes), with the line that loads the adapter."""
        d = super().to_dict()
        if d.get("lpr_layer_mean") == "layers":  # the default is not written: adapters from before it stay byte-equal
            d.pop("lpr_layer_mean")
        d[LOAD_LINE_FIELD] = load_line(d.get("base_model_name_or_path"))
        return d

    # ---- derived facts -------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.experts_per_layer)

    @property
    def moe_layers(self) -> list[int]:
        return [i for i, e in enumerate(self.experts_per_layer) if e > 1]

    @property
    def total_experts(self) -> int:
        return int(sum(self.experts_per_layer))

    @property
    def new_experts(self) -> int:
        return int(sum(e - 1 for e in self.experts_per_layer))

    def k_for(self, num_experts: int) -> int:
        return min(self.top_k, num_experts)

    # ---- construction from an allocation file -------------------------------------------
    @classmethod
    def from_allocation(cls, path_or_dict: Union[str, Path, dict[str, Any]], **overrides: Any) -> "MoEConfig":
        """Build from an allocation JSON (``{"experts_per_layer": [...], "num_layers": n, ...}``)."""
        if isinstance(path_or_dict, dict):
            alloc, where = path_or_dict, "allocation dict"
        else:
            p = Path(path_or_dict)
            if not p.is_file():
                raise MissingInputError(f"allocation file {p} does not exist")
            try:
                alloc = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise InputError(f"{p}: not valid JSON ({e})") from None
            where = str(p)
            if not isinstance(alloc, dict):
                raise InputError(f"{p}: expected a JSON object with 'experts_per_layer'")
        if "experts_per_layer" not in alloc:
            raise InputError(f"{where}: missing field 'experts_per_layer'")
        epl = alloc["experts_per_layer"]
        if not isinstance(epl, list):
            raise InputError(f"{where}: 'experts_per_layer' must be a list, got {type(epl).__name__}")
        n = alloc.get("num_layers")
        if n is not None and int(n) != len(epl):
            raise InputError(f"{where}: 'num_layers' is {n} but 'experts_per_layer' has {len(epl)} entries")
        kw: dict[str, Any] = {"experts_per_layer": [int(e) for e in epl]}
        if "top_k" in alloc and "top_k" not in overrides:
            kw["top_k"] = int(alloc["top_k"])
        for key in _ALLOCATION_FINGERPRINT_KEYS:
            fp = alloc.get(key)
            if isinstance(fp, dict) and "num_layers" in fp and "hidden_size" in fp:
                kw["base_model_fingerprint"] = dict(fp)
                break
        src = alloc.get("mode") or alloc.get("name")
        kw["allocation_source"] = f"{where}" + (f" ({src})" if src else "")
        kw.update(overrides)
        return cls(**kw)

