"""LPR across layers: the mean over MoE layers (default) and the published code's form, the mean over groups of
layers with the same expert count, both checked on a real adapted model against LPR losses computed by hand from
each layer's router input."""
from __future__ import annotations

import peft
import pytest
import torch
import torch.nn.functional as F

from neuronmoe.moe import MoEConfig, MoELayer
from neuronmoe.moe.losses import combine_lpr
from neuronmoe.testing import tiny_model


def test_combine_lpr_by_hand():
    per_layer = [(2, torch.tensor(1.0)), (2, torch.tensor(3.0)), (6, torch.tensor(8.0))]
    assert combine_lpr(per_layer).item() == pytest.approx(4.0)  # (1 + 3 + 8) / 3
    assert combine_lpr(per_layer, "expert_count_groups").item() == pytest.approx(5.0)  # (mean(1, 3) + 8) / 2
    same_e = [(4, torch.tensor(1.0)), (4, torch.tensor(2.0))]  # MoE-LPR's setting: the two forms agree
    assert combine_lpr(same_e).item() == combine_lpr(same_e, "expert_count_groups").item()
    with pytest.raises(ValueError, match="lpr_layer_mean must be one of layers, expert_count_groups"):
        combine_lpr(per_layer, "groups")


@pytest.mark.parametrize("form", ["layers", "expert_count_groups"])
def test_model_lpr_follows_the_layer_mean(form):
    torch.manual_seed(0)
    epl = [3, 2, 2]  # E groups: {3: [layer 0], 2: [layers 1, 2]}: the two forms differ
    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=epl, top_k=2))
    model.base_model.set_loss_options("hf", "probs", lpr_layer_mean=form)
    inputs: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, i=i: inputs.__setitem__(i, args[0].detach()))
             for i, m in enumerate(x for x in model.modules() if isinstance(x, MoELayer))]
    ids = torch.randint(3, 250, (2, 9))
    out = model(input_ids=ids, lang_flags=torch.ones_like(ids))  # every token old: LPR over all of them
    for h in hooks:
        h.remove()
    layers = [m for m in model.modules() if isinstance(m, MoELayer)]
    by_hand = []
    for i, layer in enumerate(layers):
        w = layer.moe_router["default"].weight.float()
        probs = (inputs[i].reshape(-1, inputs[i].shape[-1]).float() @ w.T).softmax(-1)
        by_hand.append((epl[i], F.cross_entropy(probs, torch.zeros(probs.shape[0], dtype=torch.long))))
    want = combine_lpr(by_hand, form)
    assert out.lpr_loss.item() == pytest.approx(want.item(), rel=1e-5)
    other = combine_lpr(by_hand, "layers" if form != "layers" else "expert_count_groups")
    assert abs(out.lpr_loss.item() - other.item()) > 1e-6  # the allocation makes the two forms differ


def test_lpr_layer_mean_saved_only_when_not_the_default():
    cfg = MoEConfig(experts_per_layer=[2, 1], top_k=2)
    assert "lpr_layer_mean" not in cfg.to_dict()  # adapters of the default stay byte-identical to earlier ones
    grouped = MoEConfig(experts_per_layer=[2, 1], top_k=2, lpr_layer_mean="expert_count_groups")
    assert grouped.to_dict()["lpr_layer_mean"] == "expert_count_groups"
    with pytest.raises(ValueError, match="lpr_layer_mean must be one of"):
        MoEConfig(experts_per_layer=[2, 1], top_k=2, lpr_layer_mean="mean")
