"""The adapter as a PEFT method: equivalence at init, save/load, trainability, errors, dtypes, capture."""
from __future__ import annotations

import json

import peft
import pytest
import torch
from safetensors.torch import load_file

from neuronmoe.models.arch import decoder_layers
from neuronmoe.moe import MoEConfig, MoELayer, capture_routing, router_stats
from neuronmoe.testing import tiny_model

EPL = [3, 1, 4]  # tiny models have 3 layers; layer 1 stays dense


def test_init_equals_dense_model(arch, ids):
    dense = tiny_model(arch)
    with torch.no_grad():
        ref = dense(input_ids=ids).logits
    model = peft.get_peft_model(tiny_model(arch), MoEConfig(experts_per_layer=EPL, top_k=2))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert torch.allclose(out.logits, ref, atol=1e-5), (out.logits - ref).abs().max()
    # routing really happened: every MoE layer used more than the base expert
    stats = router_stats(model)
    assert sorted(stats) == [0, 2]
    assert all(sum(1 for v in s["load"] if v > 0) >= 2 for s in stats.values())
    assert out.aux_loss.item() > 0 and out.lpr_loss.item() == 0.0


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("mode", ["experts", "routers"])
def test_trainable_parameters_and_untouched_dense_layer(mode):
    base = tiny_model("llama")
    dense_mlp = base.model.layers[1].mlp
    model = peft.get_peft_model(base, MoEConfig(experts_per_layer=EPL, train_mode=mode))
    layers = decoder_layers(model)
    assert layers[1].mlp is dense_mlp and not isinstance(layers[1].mlp, MoELayer)
    assert isinstance(layers[0].mlp, MoELayer) and isinstance(layers[2].mlp, MoELayer)
    names = _trainable(model)
    routers = {n for n in names if ".moe_router." in n}
    assert routers == {f"base_model.model.model.layers.{i}.mlp.moe_router.default.weight" for i in (0, 2)}
    experts = names - routers
    if mode == "routers":
        assert experts == set()
    else:
        # exactly the new experts: (E-1) copies x 3 projections per MoE layer, nothing of the base
        assert len(experts) == (2 + 3) * 3 and all(".moe_experts.default." in n for n in experts)
    for layer in (layers[0].mlp, layers[2].mlp):
        assert layer.moe_router["default"].weight.dtype == torch.float32
        assert layer.moe_router["default"].bias is None
        assert type(layer.moe_experts["default"][0]) is type(layer.base_layer)


def test_save_load_roundtrip(tmp_path, ids, perturb):
    model = peft.get_peft_model(tiny_model("mistral"), MoEConfig(experts_per_layer=EPL))
    perturb(model)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "NEURONMOE" and cfg["experts_per_layer"] == EPL
    assert cfg["base_model_fingerprint"]["num_layers"] == 3
    tensors = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    routers = [k for k in tensors if k.endswith("mlp.moe_router.weight")]
    experts = [k for k in tensors if ".mlp.moe_experts." in k]
    assert len(routers) == 2 and len(experts) == (2 + 3) * 3 and len(tensors) == len(routers) + len(experts)
    assert not any("default" in k or "base_layer" in k for k in tensors)
    assert tensors["base_model.model.model.layers.2.mlp.moe_router.weight"].shape == (4, 32)
    assert tensors["base_model.model.model.layers.2.mlp.moe_router.weight"].dtype == torch.float32

    loaded = peft.PeftModel.from_pretrained(tiny_model("mistral"), tmp_path / "ad")
    with torch.no_grad():
        after = loaded(input_ids=ids).logits
    assert torch.equal(before, after)
    assert _trainable(loaded) == set()  # inference mode by default
    again = peft.PeftModel.from_pretrained(tiny_model("mistral"), tmp_path / "ad", is_trainable=True)
    assert len(_trainable(again)) == 2 + 15


@pytest.mark.parametrize(
    "overrides,match",
    [({"num_hidden_layers": 4}, r"another base model \(3 layers, the base model \(llama\) has 4\)"),
     ({"hidden_size": 64, "head_dim": 16}, "hidden_size: recorded 32, this model 64")],
)
def test_load_onto_other_base_fails_clearly(tmp_path, overrides, match):
    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL))
    model.save_pretrained(tmp_path / "ad")
    with pytest.raises(ValueError, match=match):
        peft.PeftModel.from_pretrained(tiny_model("llama", **overrides), tmp_path / "ad")


def test_layer_count_mismatch_names_both_numbers():
    with pytest.raises(ValueError, match=r"4 layers, the base model \(llama\) has 3"):
        peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=[2, 1, 1, 2]))


def test_stage_switches_reach_every_layer(tmp_path, ids, perturb):
    """MoEModel.set_top_k / set_train_mode / set_loss_coefs: what stage 2 changes on a loaded stage-1 adapter."""
    model = perturb(peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL, top_k=2)))
    model.save_pretrained(tmp_path / "s1")
    loaded = peft.PeftModel.from_pretrained(tiny_model("llama"), tmp_path / "s1", is_trainable=True)
    perturb(loaded, seed=0)  # same adapter weights as `model`
    moe = loaded.base_model
    moe.set_top_k(1)
    with torch.no_grad(), capture_routing(loaded) as cap:
        out = loaded(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert {li: r["expert_ids"].shape[-1] for li, r in cap.layers.items()} == {0: 1, 2: 1}
    assert loaded.peft_config["default"].top_k == 1
    moe.set_top_k(9)  # clipped per layer to its experts
    assert [m.moe_top_k["default"] for m in moe.moe_layers()] == [3, 4]
    moe.set_train_mode("routers")
    assert {n for n in _trainable(loaded)} == {n for n in _trainable(loaded) if ".moe_router." in n} != set()
    moe.set_train_mode("experts")
    assert any(".moe_experts." in n for n in _trainable(loaded))
    assert not any(".moe_" not in n for n in _trainable(loaded))  # the base never trains
    moe.set_loss_coefs(0.5, 2.0)
    out = loaded(input_ids=ids, attention_mask=torch.ones_like(ids), lang_flags=torch.ones_like(ids))
    assert torch.allclose(out.moe_loss, 0.5 * out.aux_loss + 2.0 * out.lpr_loss)
    with pytest.raises(ValueError, match="train_mode"):
        moe.set_train_mode("all")
    with pytest.raises(ValueError, match="top_k"):
        moe.set_top_k(0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_base(ids, dtype):
    model = peft.get_peft_model(tiny_model("qwen2", dtype=dtype), MoEConfig(experts_per_layer=EPL))
    layer = decoder_layers(model)[2].mlp
    assert layer.moe_router["default"].weight.dtype == torch.float32
    assert layer.moe_experts["default"][0].up_proj.weight.dtype == dtype
    flags = torch.zeros_like(ids)
    flags[0] = 1
    out = model(input_ids=ids, labels=ids, lang_flags=flags)
    assert out.logits.dtype == dtype and torch.isfinite(out.logits.float()).all()
    assert torch.isfinite(out.aux_loss) and out.lpr_loss.item() > 0
    (out.loss + out.moe_loss).backward()
    g = layer.moe_router["default"].weight.grad
    assert g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() and g.abs().sum() > 0


def test_losses_in_output_and_lpr_changes_router_grads(ids, perturb):
    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL))
    perturb(model)

    def grads(flags):
        model.zero_grad()
        out = model(input_ids=ids, labels=ids, lang_flags=flags)
        (out.loss + out.moe_loss).backward()
        return out, torch.cat([l.moe_router["default"].weight.grad.flatten()
                               for l in model.modules() if isinstance(l, MoELayer)])

    out_old, g_old = grads(torch.ones_like(ids))
    out_new, g_new = grads(torch.zeros_like(ids))
    out_none, g_none = grads(None)
    assert out_old.lpr_loss.item() > 0 and out_new.lpr_loss.item() == 0 and out_none.lpr_loss.item() == 0
    assert torch.allclose(g_new, g_none) and not torch.allclose(g_old, g_new)
    assert out_old.moe_loss.item() == pytest.approx(0.01 * out_old.aux_loss.item() + 0.1 * out_old.lpr_loss.item())
    # lm loss is untouched by the MoE losses
    assert out_old.loss.item() == pytest.approx(out_new.loss.item())
    with pytest.raises(ValueError, match="lang_flags has shape"):
        model(input_ids=ids, lang_flags=torch.ones(2, 3, dtype=torch.long))


def test_padding_excluded_from_stats_and_capture(ids, perturb):
    model = peft.get_peft_model(tiny_model("gemma3_text"), MoEConfig(experts_per_layer=EPL))
    perturb(model, scale=1.0)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with capture_routing(model, activations=True) as cap:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    stats = router_stats(model)
    valid = mask.bool()
    for layer_idx, rec in cap.layers.items():
        eids, w = rec["expert_ids"], rec["weights"]
        assert eids.shape == (2, 9, 2) and w.shape == (2, 9, 2)
        assert torch.allclose(w.sum(-1), torch.ones(2, 9))
        num_e = EPL[layer_idx]
        counts = torch.bincount(eids[valid].flatten(), minlength=num_e).float()
        assert stats[layer_idx]["load"] == pytest.approx((counts / counts.sum()).tolist())
        # activations: every token slot accounted for, shapes [n_e, I] / [n_e, H]
        acts = rec["acts"]
        assert 0 in acts or not (eids == 0).any()
        total = 0
        for e, a in acts.items():
            n_e = a["token_index"].numel()
            total += n_e
            assert a["gate"].shape == (n_e, 64) and a["up"].shape == (n_e, 64) and a["down"].shape == (n_e, 32)
            assert torch.equal(a["token_index"], torch.nonzero((eids.view(-1, 2) == e).any(-1)).flatten())
        assert total == 2 * 9 * 2
    # expert 0 activations are the base MLP's own projections
    layer0 = decoder_layers(model)[0].mlp
    a0 = cap.layers[0]["acts"].get(0)
    if a0 is not None:
        assert a0["gate"].shape[0] == a0["token_index"].numel()
    assert layer0._moe_capture is None  # capture removed on exit


def test_capture_without_activations_and_errors(ids):
    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL, top_k=1))
    with capture_routing(model, keep_all=True) as cap:
        model(input_ids=ids)
        model(input_ids=ids[:1])
    assert len(cap.forwards) == 2 and cap.layers is cap.forwards[-1]
    assert cap.layers[2]["expert_ids"].shape == (1, 9, 1) and "acts" not in cap.layers[2]
    assert cap.forwards[0][0]["expert_ids"].shape == (2, 9, 1)
    with pytest.raises(ValueError, match="no NeuronMoE layer"):
        with capture_routing(tiny_model("llama")):
            pass


def test_disable_adapter_and_unload_give_dense(ids, perturb):
    dense = tiny_model("llama")
    with torch.no_grad():
        ref = dense(input_ids=ids).logits
    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL))
    perturb(model, scale=1.0)
    with torch.no_grad():
        moe = model(input_ids=ids).logits
        with model.disable_adapter():
            off = model(input_ids=ids).logits
    assert not torch.allclose(moe, ref, atol=1e-4) and torch.allclose(off, ref, atol=1e-6)
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_and_unload()
    base = model.unload()
    assert not any(isinstance(m, MoELayer) for m in base.modules())
    with torch.no_grad():
        assert torch.allclose(base(input_ids=ids).logits, ref, atol=1e-6)


def test_gradient_checkpointing_non_reentrant_same_grads(ids, perturb):
    def router_grads(checkpointing):
        model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL))
        perturb(model)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        out = model(input_ids=ids, labels=ids, lang_flags=torch.ones_like(ids), use_cache=False)
        (out.loss + out.moe_loss).backward()
        return torch.cat([l.moe_router["default"].weight.grad.flatten()
                          for l in model.modules() if isinstance(l, MoELayer)])

    plain, ckpt = router_grads(False), router_grads(True)
    assert plain.abs().sum() > 0 and torch.allclose(plain, ckpt, atol=1e-6)


def test_plain_peft_model_forward_also_gets_losses_and_hides_lang_flags(ids):
    base = tiny_model("llama")
    seen = []
    base.model.register_forward_pre_hook(lambda m, a, kw: seen.append(set(kw)), with_kwargs=True)
    model = peft.PeftModel(base, MoEConfig(experts_per_layer=EPL, task_type=None))
    assert type(model) is peft.PeftModel
    out = model(input_ids=ids, lang_flags=torch.ones_like(ids))
    assert out.lpr_loss.item() > 0 and out.aux_loss.item() > 0
    assert seen and all("lang_flags" not in kw for kw in seen)


def test_top_k_clipped_to_small_layers(ids):
    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=[2, 1, 5], top_k=3))
    with capture_routing(model) as cap:
        model(input_ids=ids)
    assert cap.layers[0]["expert_ids"].shape[-1] == 2 and cap.layers[2]["expert_ids"].shape[-1] == 3


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_fresh_process_loads_adapter_after_import_neuronmoe(tmp_path, ids):
    """Registration happens on `import neuronmoe` alone (as in eval workers and Trainer resumes)."""
    import subprocess
    import sys

    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=EPL))
    model.save_pretrained(tmp_path / "ad")
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    torch.save({"ids": ids, "ref": ref}, tmp_path / "io.pt")
    code = (
        "import sys, torch, neuronmoe, peft\n"
        "from neuronmoe.testing import tiny_model\n"
        f"d = torch.load({str(tmp_path / 'io.pt')!r})\n"
        f"m = peft.PeftModel.from_pretrained(tiny_model('llama'), {str(tmp_path / 'ad')!r})\n"
        "out = m(input_ids=d['ids']).logits\n"
        "sys.exit(0 if torch.allclose(out, d['ref'], rtol=0, atol=1e-5) else 3)  # same weights; kernels may differ by an ulp\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1",
                              # bitwise equality needs the same intra-op thread count (docs/reliability.md)
                              "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert res.returncode == 0, res.stderr[-2000:]
