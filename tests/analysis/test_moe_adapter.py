"""The analysis on the real NeuronMoE adapter: forced routing through ``neuronmoe.moe.route``, and the CLI."""
from __future__ import annotations

import json

import pytest
import torch
from support.builders import write_allocation

moe = pytest.importorskip("neuronmoe.moe")


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory, tiny_model_dir):
    import peft

    import neuronmoe  # noqa: F401
    from neuronmoe.models import load_model
    from neuronmoe.moe import MoEConfig

    base = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    model = peft.get_peft_model(base, MoEConfig(experts_per_layer=[1, 3, 1], top_k=2))
    out = tmp_path_factory.mktemp("adapter") / "train" / "neuronmoe-s1"
    model.save_pretrained(out / "adapter")
    write_allocation(out / "allocation.json", [1, 3, 1], targets=["el"])  # the run's copy of its allocation
    return tiny_model_dir, out / "adapter"


@pytest.fixture
def force_by_script(monkeypatch):
    """Route non-ASCII tokens to experts {0, 1} and ASCII tokens to {0, 2}, whatever the router says."""
    from neuronmoe.moe import layer as layer_mod

    box = {}
    real_route = layer_mod.route

    def route(x, w, k):
        logits, probs, _, _ = real_route(x, w, k)
        ids = box["ids"].reshape(-1)
        second = torch.where(box["is_ascii"][ids], 2, 1)
        idx = torch.stack([torch.zeros_like(second), second], dim=1)
        return logits, probs, torch.full(idx.shape, 0.5), idx

    monkeypatch.setattr(layer_mod, "route", route)
    return box


def test_forced_routing_through_the_real_capture(adapter_dirs, force_by_script, samples_dir, tmp_path):
    from peft import PeftModel

    from neuronmoe.analysis.expert_ap import expert_units, summarize
    from neuronmoe.analysis.runner import analyse, read_samples
    from neuronmoe.models import load_model, load_tokenizer

    base_dir, adapter = adapter_dirs
    tok = load_tokenizer(str(base_dir))
    model = PeftModel.from_pretrained(load_model(str(base_dir), dtype="float32", device="cpu"), str(adapter))
    ascii_ids = tok("".join(chr(i) for i in range(32, 127)), add_special_tokens=False)["input_ids"]
    is_ascii = torch.zeros(model.config.vocab_size, dtype=torch.bool)
    is_ascii[ascii_ids] = True
    force_by_script["is_ascii"] = is_ascii
    model.register_forward_pre_hook(lambda _m, a, kw: force_by_script.__setitem__("ids", kw["input_ids"]), with_kwargs=True)

    lay = expert_units(model.config.intermediate_size, model.config.hidden_size)
    samples = read_samples(samples_dir, ["en", "el"])
    res, _ = analyse(model, tok, samples, ["en", "el"], [1, 3, 1], lay, tmp_path / "w", batch_size=4, policy="bottom",
                     dense_layers=True)
    summ = {(s["layer"], s["expert"]): s for s in summarize(res, ["en", "el"], lay)}
    assert set(summ) == {(0, "base"), (1, "base"), (1, "exp_0"), (1, "exp_1"), (2, "base")}
    assert summ[(1, "exp_0")]["coverage"] == {"en": 0.0, "el": 1.0}
    assert summ[(1, "exp_0")]["high_ap"]["el"] == lay.total  # the Greek-only expert's units are all Greek-specific
    assert summ[(1, "exp_1")]["coverage"] == {"en": 1.0, "el": 1.0}
    assert summ[(1, "base")]["tokens"] == summ[(1, "exp_0")]["tokens"] + summ[(1, "exp_1")]["tokens"]


def test_cli_on_a_saved_adapter(adapter_dirs, samples_dir, capsys):
    from neuronmoe.cli import main

    base_dir, adapter = adapter_dirs
    out = samples_dir.parent.parent
    assert main(["analyze-experts", "--output-dir", str(out), "--model", str(base_dir), "--adapter", str(adapter),
                 "--no-dense-layers"]) == 0
    data = json.loads((out / "analysis" / "expert_ap.json").read_text())
    assert data["target"] == "el"  # from the run's allocation.json
    assert [(e["layer"], e["expert"]) for e in data["experts"]] == [(1, "base"), (1, "exp_0"), (1, "exp_1")]
    assert data["experts_per_layer"] == [1, 3, 1]
    from neuronmoe.analysis.runner import read_samples
    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer(str(base_dir))
    n_tokens = sum(len(tok(s.text)["input_ids"]) for s in read_samples(samples_dir, ["en", "el"]))
    assert sum(e["tokens"] for e in data["experts"]) == 2 * n_tokens  # top-2 of 3: two distinct experts per token
    man = json.loads((out / "analysis" / "manifest.json").read_text())
    assert man["inputs"]["adapter"] and "adapter_config.json" in man["inputs"]["adapter"]
    md = (out / "analysis" / "expert_ap_el.md").read_text()
    assert "| 1 | exp_1 | 160 |" in md
