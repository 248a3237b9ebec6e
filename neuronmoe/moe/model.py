"""``MoEModel``: the PEFT tuner that turns selected dense MLPs into MoE layers.

Targets are found structurally (``neuronmoe.models.arch.decoder_layers`` / ``mlp_module``), not
by name patterns: layer ``l`` is adapted iff ``experts_per_layer[l] > 1``. Before any module is
replaced (and so before ``PeftModel.from_pretrained`` loads weights) the base model's
fingerprint and layer count are checked against the config.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import torch
import torch.nn as nn
from peft.tuners.tuners_utils import BaseTuner
from transformers.utils import ModelOutput

from neuronmoe.errors import ConfigError
from neuronmoe.models.arch import decoder_layers, get_arch, mlp_module
from neuronmoe.moe._registry import PREFIX
from neuronmoe.moe.config import MoEConfig
from neuronmoe.moe.layer import ForwardContext, MoELayer
from neuronmoe.utils.checks import check_fits_base
from neuronmoe.utils.fingerprint import config_fingerprint


class MoEModel(BaseTuner):
    prefix: str = PREFIX
    tuner_layer_cls = MoELayer
    target_module_mapping: dict[str, list[str]] = {}

    # ---- injection ------------------------------------------------------------------------
    def _prepare_adapter_config(self, peft_config: MoEConfig, model_config: dict) -> MoEConfig:
        return peft_config  # targets are computed structurally in _prepare_model

    def _prepare_model(self, peft_config: MoEConfig, model: nn.Module) -> None:
        check_compatible(peft_config, model)
        if peft_config.base_model_fingerprint is None:
            peft_config.base_model_fingerprint = config_fingerprint(model.config)
        spec = get_arch(model)
        names = {id(m): n for n, m in model.named_modules()}
        targets: dict[str, int] = {}
        for idx, layer in enumerate(decoder_layers(model)):
            if peft_config.experts_per_layer[idx] < 2:
                continue
            mlp = getattr(layer, spec.mlp)
            if not isinstance(mlp, MoELayer):
                mlp = mlp_module(layer, spec)  # validates the gated-MLP shape
            targets[names[id(mlp)]] = idx
        self._moe_targets = targets
        peft_config.target_modules = "^(?:" + "|".join(re.escape(n) for n in targets) + ")$"

    def _check_target_module_exists(self, peft_config: MoEConfig, key: str) -> bool:
        return key in getattr(self, "_moe_targets", {})

    def _create_and_replace(self, peft_config: MoEConfig, adapter_name: str, target: nn.Module,
                            target_name: str, parent: nn.Module, current_key: str, **kwargs: Any) -> None:
        idx = self._moe_targets[current_key]
        e = peft_config.experts_per_layer[idx]
        if isinstance(target, MoELayer):
            target.update_layer(adapter_name, e, peft_config.top_k, train_mode=peft_config.train_mode,
                                router_init=peft_config.router_init, inference_mode=peft_config.inference_mode)
            return
        new = MoELayer(target, adapter_name, e, peft_config.top_k, layer_idx=idx,
                       train_mode=peft_config.train_mode, router_init=peft_config.router_init)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        setattr(parent, target_name, new)

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        """``...mlp.moe_experts.<adapter>.3.up_proj.weight`` -> ``...mlp.moe_experts.3.up_proj.weight`` (and routers)."""
        for attr in MoELayer.adapter_layer_names:
            marker = f".{attr}.{adapter_name}."
            if marker in key:
                return key.replace(marker, f".{attr}.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    def _replace_module(self, parent, child_name, new_module, child) -> None:  # used by unload()
        setattr(parent, child_name, new_module)

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        # Experts keep the base dtype (they are copies of the base MLP); routers are fp32 already.
        for layer in self.moe_layers():
            r = layer.moe_router[adapter_name] if adapter_name in layer.moe_router else None
            if r is not None and r.weight.dtype != torch.float32:
                r.float()

    def _unload_and_optionally_merge(self, merge=True, progressbar=False, safe_merge=False, adapter_names=None):
        if merge:
            raise NotImplementedError("NeuronMoE adapters cannot be merged into the dense model; use unload()")
        for name, module in list(self.model.named_modules()):
            if isinstance(module, MoELayer):
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, module.base_layer)
        if hasattr(self.model, "peft_config"):
            del self.model.peft_config
        self._remove_moe_hooks()
        return self.model

    # ---- helpers ----------------------------------------------------------------------------
    def moe_layers(self) -> list[MoELayer]:
        return [m for m in self.model.modules() if isinstance(m, MoELayer)]

    def _active_config(self) -> MoEConfig:
        return self.peft_config[self.active_adapters[0]]

    def _adapter_layers(self, adapter_name: str | None) -> tuple[str, MoEConfig, list[MoELayer]]:
        name = adapter_name or self.active_adapters[0]
        if name not in self.peft_config:
            raise ConfigError(f"no NeuronMoE adapter named {name!r} (have {', '.join(self.peft_config)})")
        return name, self.peft_config[name], [m for m in self.moe_layers() if name in m.moe_router]

    # ---- switches (stage 2 changes them on a loaded stage-1 adapter) ------------------------------
    def set_top_k(self, top_k: int, adapter_name: str | None = None) -> None:
        """Experts per token in every MoE layer (clipped per layer to its experts) and in the config,
        so that training, saving and reloading all route with ``top_k``."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be an int >= 1, got {top_k!r}")
        name, cfg, layers = self._adapter_layers(adapter_name)
        cfg.top_k = top_k
        for layer in layers:
            layer.set_top_k(name, top_k)

    def set_train_mode(self, train_mode: str, adapter_name: str | None = None) -> None:
        """``experts`` (new experts + routers train) or ``routers`` (routers only); the base stays frozen."""
        from neuronmoe.moe.config import TRAIN_MODES

        if train_mode not in TRAIN_MODES:
            raise ConfigError(f"train_mode must be one of {TRAIN_MODES}, got {train_mode!r}")
        name, cfg, layers = self._adapter_layers(adapter_name)
        cfg.train_mode = train_mode
        for layer in layers:
            layer.set_train_mode(name, train_mode)

    def set_loss_coefs(self, aux_loss_coef: float, lpr_loss_coef: float, adapter_name: str | None = None) -> None:
        """Weights of the balance and LPR losses in ``out.moe_loss``."""
        for what, v in (("aux_loss_coef", aux_loss_coef), ("lpr_loss_coef", lpr_loss_coef)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{what} must be a number >= 0, got {v!r}")
        _, cfg, _ = self._adapter_layers(adapter_name)
        cfg.aux_loss_coef, cfg.lpr_loss_coef = float(aux_loss_coef), float(lpr_loss_coef)

    def set_loss_options(self, aux_loss_form: str, lpr_input: str, adapter_name: str | None = None,
                         lpr_layer_mean: str | None = None) -> None:
        """Loss conventions: balance-loss form (``hf`` | ``normalized``), LPR input (``probs`` | ``logits``) and
        the LPR's mean over layers (``layers`` | ``expert_count_groups``; None: unchanged)."""
        from neuronmoe.moe.losses import check_loss_options

        _, cfg, _ = self._adapter_layers(adapter_name)
        mean = lpr_layer_mean or getattr(cfg, "lpr_layer_mean", "layers")
        check_loss_options(aux_loss_form, lpr_input, lpr_layer_mean=mean)
        cfg.aux_loss_form, cfg.lpr_input, cfg.lpr_layer_mean = aux_loss_form, lpr_input, mean

    # ---- forward: per-token context in, losses out ----------------------------------------------
    # Hooks on the wrapped CausalLM (not an override of forward) so that every path works the same:
    # PeftModel.forward (which calls the CausalLM directly), PeftModelForCausalLM.forward, generate,
    # and a direct call of the injected model. The pre-hook pops ``lang_flags`` (so the base model
    # never sees it) and hands the per-token masks to the MoE layers; the post-hook attaches the
    # losses to the output and clears the context.
    def _post_injection_hook(self, model: nn.Module, config: MoEConfig, adapter_name: str) -> None:
        if getattr(self, "_moe_hooks", None):
            return
        self._warned_nograd = False
        self._moe_hooks = [
            model.register_forward_pre_hook(self._moe_pre_forward, with_kwargs=True),
            model.register_forward_hook(self._moe_post_forward, always_call=True),
        ]

    def _moe_pre_forward(self, module: nn.Module, args: tuple, kwargs: dict):
        lang_flags = kwargs.pop("lang_flags", None)
        attention_mask = kwargs.get("attention_mask")
        ref = kwargs.get("input_ids")
        if ref is None:
            ref = kwargs.get("inputs_embeds")
        if ref is None and args and isinstance(args[0], torch.Tensor):
            ref = args[0]
        cfg = self._active_config()
        ctx = ForwardContext(aux_loss_form=getattr(cfg, "aux_loss_form", "hf"), lpr_input=getattr(cfg, "lpr_input", "probs"),
                             lpr_layer_mean=getattr(cfg, "lpr_layer_mean", "layers"))
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            ctx.valid = attention_mask.bool()
        if lang_flags is not None:
            if not isinstance(lang_flags, torch.Tensor):
                lang_flags = torch.as_tensor(lang_flags)
            if ref is not None and tuple(lang_flags.shape) != tuple(ref.shape[:2]):
                raise ValueError(
                    f"lang_flags has shape {tuple(lang_flags.shape)} but the input is {tuple(ref.shape[:2])} "
                    f"([batch, tokens]); 1 marks an old-language token, 0 a new-language one"
                )
            ctx.old = lang_flags.to(device=ref.device if ref is not None else lang_flags.device) == 1
        self._moe_ctx = ctx
        for layer in self.moe_layers():
            layer._moe_ctx = ctx
        return args, kwargs

    def _moe_post_forward(self, module: nn.Module, args: tuple, out: Any):
        # The context stays on the layers (closed) until the next forward: a non-reentrant gradient
        # checkpoint recompute must run exactly the ops of the original forward.
        ctx = getattr(self, "_moe_ctx", None)
        if ctx is None:
            return None
        ctx.closed = True
        if not ctx.losses or not isinstance(out, ModelOutput):
            return None
        cfg = self._active_config()
        aux, lpr = combine_losses(ctx.losses, ctx.old is not None, ctx.lpr_layer_mean, list(cfg.experts_per_layer))
        ctx.losses = []
        if module.training and torch.is_grad_enabled() and not aux.requires_grad and not self._warned_nograd:
            if any(p.requires_grad for layer in self.moe_layers() for p in layer.moe_router.parameters()):
                self._warned_nograd = True
                warnings.warn(
                    "NeuronMoE router losses carry no gradient in this forward: reentrant gradient "
                    "checkpointing runs the layers under no_grad. Use gradient_checkpointing_kwargs="
                    "{'use_reentrant': False}.",
                    stacklevel=2,
                )
        out["aux_loss"] = aux
        out["lpr_loss"] = lpr
        out["moe_loss"] = cfg.aux_loss_coef * aux + cfg.lpr_loss_coef * lpr
        return out

    def _remove_moe_hooks(self) -> None:
        for h in getattr(self, "_moe_hooks", None) or []:
            h.remove()
        self._warned_nograd = False
        self._moe_hooks = []


def combine_losses(records: list, have_flags: bool, lpr_layer_mean: str = "layers",
                   experts_per_layer: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the per-layer ``(layer, aux, lpr)`` records over MoE layers (the LPR as ``lpr_layer_mean`` says:
    :func:`neuronmoe.moe.losses.combine_lpr`; ``experts_per_layer`` gives each layer's E for the grouped form)."""
    from neuronmoe.moe.losses import combine_lpr

    dev = records[0][1].device
    aux = torch.stack([a.to(dev) for _, a, _ in records]).mean()
    e_of = list(experts_per_layer or [])
    lprs = [(e_of[i] if i < len(e_of) else 0, l.to(dev)) for i, _, l in records if l is not None]
    lpr = combine_lpr(lprs, lpr_layer_mean) if (have_flags and lprs) else aux.new_zeros(())
    return aux, lpr


def check_compatible(cfg: MoEConfig, model: nn.Module) -> None:
    """Clear errors when an adapter/config does not fit ``model`` (called before any weight moves)."""
    check_fits_base(cfg.experts_per_layer, cfg.base_model_fingerprint, model,
                    "NeuronMoE adapter (MoEConfig.experts_per_layer, base_model_fingerprint)")
