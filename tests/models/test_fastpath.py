"""The output head reads a contiguous input (neuronmoe.models.fastpath): same logits, on every model a stage runs."""
from __future__ import annotations

from types import SimpleNamespace

import peft
import pytest
import torch

from neuronmoe.models import load_model
from neuronmoe.models.fastpath import contiguous_output_head
from neuronmoe.moe import MoEConfig
from neuronmoe.testing import tiny_model


def _head_inputs(model):
    """Record whether each call of the output head saw a contiguous input (a pre-hook registered last runs last)."""
    seen: list[bool] = []
    model.get_output_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    return seen


def _hooks(model) -> int:
    return len(model.get_output_embeddings()._forward_pre_hooks)


@pytest.mark.parametrize("keep", [1, 3])
def test_same_logits_and_a_contiguous_head_input(arch, keep):
    ids = torch.randint(5, 250, (3, 9))
    plain = tiny_model(arch, dtype=torch.bfloat16).requires_grad_(False)
    fast = contiguous_output_head(tiny_model(arch, dtype=torch.bfloat16).requires_grad_(False))
    seen_plain, seen_fast = _head_inputs(plain), _head_inputs(fast)
    with torch.no_grad():
        a = plain(input_ids=ids, logits_to_keep=keep).logits
        b = fast(input_ids=ids, logits_to_keep=keep).logits
    assert seen_plain == [False]  # what the hook is for: HF slices the hidden states for logits_to_keep
    assert seen_fast == [True]
    assert a.shape == (3, keep, a.shape[-1]) and torch.equal(a, b)


def test_installed_once_by_every_loader(tiny_model_dir, tmp_path):
    from neuronmoe.models.adapter import load_adapter

    m = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    assert _hooks(m) == 1
    contiguous_output_head(m)
    assert _hooks(m) == 1  # idempotent
    ad = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=[2, 1, 1]))
    ad.save_pretrained(tmp_path / "ad")
    bare = tiny_model("llama")  # built outside load_model: load_adapter installs it
    assert _hooks(bare) == 0
    loaded = load_adapter(bare, tmp_path / "ad")
    assert _hooks(loaded) == 1
    seen = _head_inputs(loaded)
    with torch.no_grad():
        loaded(input_ids=torch.randint(5, 250, (2, 6)), logits_to_keep=1)
    assert seen == [True]


def test_the_training_base_gets_it(tiny_model_dir):
    from neuronmoe.training.run import build_model

    cfg = {"seed": 0, "top_k": 2, "train_mode": "experts", "aux_loss_coef": 0.01, "lpr_loss_coef": 0.0,
           "aux_loss_form": "hf", "lpr_input": "probs", "gradient_checkpointing": False}
    plan = SimpleNamespace(cfg=cfg, opts=SimpleNamespace(stage=1), model_path=str(tiny_model_dir),
                           alloc={"num_layers": 3}, experts_per_layer=[2, 1, 2], model_fp={}, apath="alloc.json")
    model, summary = build_model(plan)
    assert summary["trainable"] > 0 and _hooks(model) == 1
