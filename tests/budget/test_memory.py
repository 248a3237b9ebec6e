"""Memory per device. The static part (weights, gradients, optimizer states) equals, byte for byte, the tensors of a
real adapted model after one AdamW step; the ZeRO layout shards what DeepSpeed shards; a split that fits keeps the
effective batch. (The activation part is compared with a measured peak by benchmarks/gpu_check.sh on a GPU.)"""
from __future__ import annotations

import peft
import pytest
import torch

from neuronmoe.budget.flops import Shape, shape_of
from neuronmoe.budget.memory import ParamCounts, activation_memory, divisor_splits, model_facts, param_counts, propose_split, static_memory
from neuronmoe.moe import MoEConfig
from neuronmoe.testing import tiny_model


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("mode, epl", [("experts", [3, 1, 2]), ("routers", [3, 1, 2]), ("experts", [6, 2, 4])])
def test_static_part_equals_the_tensors_after_one_optimizer_step(mode, epl):
    torch.manual_seed(0)
    base = tiny_model("llama")
    model = peft.get_peft_model(base, MoEConfig(experts_per_layer=epl, top_k=2, train_mode=mode))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(3, 250, (2, 12))
    out = model(input_ids=ids, labels=ids, lang_flags=torch.ones_like(ids))
    (out.loss + out.moe_loss).backward()
    opt.step()
    params = list(model.parameters())
    real = {
        "weights_frozen": _bytes(p for p in params if not p.requires_grad),
        "weights_trainable": _bytes(p for p in params if p.requires_grad),
        "gradients": _bytes(p.grad for p in params if p.grad is not None),
        "optimizer": _bytes(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)),
    }
    est = static_memory(param_counts(model_facts(base.config), epl, mode), "torch", world=1)
    assert {k: est[k] for k in real} == real and est["buffers"] == 0


def test_zero_layouts_shard_master_weights_adam_and_gradients():
    c = ParamCounts(frozen=1000, trainable=800, trainable_tensors=4)
    z0 = static_memory(c, "deepspeed", world=8, zero_stage=0, reduce_bucket=100)
    z1 = static_memory(c, "deepspeed", world=8, zero_stage=1, reduce_bucket=100)
    z2 = static_memory(c, "deepspeed", world=8, zero_stage=2, reduce_bucket=100)
    assert z0["weights_frozen"] == z2["weights_frozen"] == 2 * 1000  # DeepSpeed casts the module to bf16
    assert z0["optimizer"] == 12 * 800 and z1["optimizer"] == z2["optimizer"] == 12 * 800 // 8
    assert z1["gradients"] == 2 * 800 + 4 * 800 // 8 and z2["gradients"] == (2 * 800 + 4 * 800) // 8
    assert z2["buffers"] == 2 * 100
    assert static_memory(c, "torch", world=2)["buffers"] == 4 * 800  # DDP's bucket copy of the gradients
    with pytest.raises(ValueError, match="memory layout"):
        static_memory(c, "fsdp")


def test_activations_grow_with_tokens_and_checkpointing_keeps_less():
    shape = Shape(layers=4, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=100)
    epl = [1, 3, 1, 2]
    a1 = activation_memory(shape, epl, 2, 1024)
    a2 = activation_memory(shape, epl, 2, 2048)
    assert a2["total"] == pytest.approx(2 * a1["total"])  # linear in tokens: no S x S matrix (SDPA / flash)
    ck = activation_memory(shape, epl, 2, 1024, checkpointing=True)
    assert ck["total"] < a1["total"] and ck["head"] == a1["head"]
    # nothing is kept below the first trainable layer: moving the first MoE layer up lowers the activations
    later = activation_memory(shape, [1, 1, 3, 2], 2, 1024)
    assert later["layers"] < a1["layers"]


def test_llama_3b_numbers_for_the_record():
    from neuronmoe.allocation import load_allocation
    from neuronmoe.models import load_config

    cfg = load_config("llama-3.2-3b")
    layer = list(load_allocation("llama-3.2-3b-el-layermoe").experts_per_layer)
    counts = param_counts(model_facts(cfg), layer, "experts")
    assert counts.trainable == 4_228_116_480  # 56 new experts x 75.5M + routers
    z2 = static_memory(counts, "deepspeed", world=8, zero_stage=2)
    assert sum(z2.values()) / 2**30 == pytest.approx(23.7, abs=0.1)
    act = activation_memory(shape_of(cfg), layer, 2, 4 * 1024)
    assert 20 < act["total"] / 2**30 < 40  # 4 sequences of 1,024 tokens per device (32 / 8 processes)


def test_a_proposed_split_keeps_the_effective_batch():
    assert divisor_splits(32, 8) == [(4, 1), (2, 2), (1, 4)]
    assert divisor_splits(32, 3) == []

    def needs(batch, ckpt):  # 10 GiB static + 8 GiB per sequence (2 with checkpointing)
        return (10 + batch * (2 if ckpt else 8)) * 2**30

    p = propose_split(32, 2, needs, 50 * 2**30)
    assert (p["per_device_train_batch_size"], p["gradient_accumulation_steps"], p["gradient_checkpointing"]) == (4, 4, False)
    assert p["per_device_train_batch_size"] * p["gradient_accumulation_steps"] * 2 == 32
    p = propose_split(32, 2, needs, 13 * 2**30)
    assert (p["per_device_train_batch_size"], p["gradient_checkpointing"]) == (1, True)
    assert propose_split(32, 2, needs, 5 * 2**30) is None
