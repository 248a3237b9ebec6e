"""Shipped reference allocations, parameter counts, the loader and the files it reads."""
from __future__ import annotations

import json

import pytest
from support.paper_tables import TABLE2_LAYERMOE, TABLE5, TABLE9_QWEN_LAYERMOE, TABLE9_QWEN_NEURONMOE_PRINTED

from neuronmoe.allocation import (
    ENV_KEY,
    Allocation,
    build_record,
    count_params,
    load_allocation,
    shipped_allocations,
    write_allocation,
)
from neuronmoe.models import load_config


@pytest.fixture(scope="module")
def llama3b():
    return load_config("llama-3.2-3b")


@pytest.fixture(scope="module")
def qwen():
    return load_config("qwen1.5-1.8b")


def test_shipped_references_load_and_match_their_configs(llama3b, qwen):
    names = shipped_allocations()
    totals = {n: load_allocation(n).total_experts for n in names}
    assert totals == {
        "llama-3.2-3b-el-layermoe": 84, "llama-3.2-3b-el-neuronmoe": 49, "llama-3.2-3b-el-neuronmoe-en": 37,
        "llama-3.2-3b-tr-neuronmoe": 50, "llama-3.2-3b-hu-neuronmoe": 47, "qwen1.5-1.8b-el-layermoe": 72,
        "qwen1.5-1.8b-el-neuronmoe": 36,
    }
    assert load_allocation("llama-3.2-3b-el-layermoe", llama3b).experts_per_layer == TABLE2_LAYERMOE
    assert load_allocation("qwen1.5-1.8b-el-layermoe", qwen).experts_per_layer == TABLE9_QWEN_LAYERMOE
    # Table 9's NeuronMoE row: 25 numbers summing to 37 for 24 layers; the only 24-number reading that
    # gives the text's 36 drops one of its 1s, and every 1 of the run gives the same row
    qn = load_allocation("qwen1.5-1.8b-el-neuronmoe", qwen)
    printed = qn.data["published_as_printed"]
    assert printed == TABLE9_QWEN_NEURONMOE_PRINTED and (len(printed), sum(printed)) == (25, 37)
    readings = {tuple(printed[:i] + printed[i + 1:]) for i in range(len(printed)) if sum(printed) - printed[i] == 36}
    assert readings == {tuple(qn.experts_per_layer)} and qn.num_layers == 24 and qn.total_experts == 36
    assert round(100 * (qn.total_experts / 72 - 1), 1) == -50.0  # Table 1: 36 (-50%)
    el = load_allocation("llama-3.2-3b-el-neuronmoe", llama3b)
    assert el.scores == TABLE5 and el.data["published_as_printed"][18] == 2 and el.experts_per_layer[16] == 2


def test_reference_for_another_model_is_rejected(llama3b, qwen):
    with pytest.raises(ValueError, match=r"24 layers, the base model \(llama\) has 28"):
        load_allocation("qwen1.5-1.8b-el-layermoe", llama3b)
    with pytest.raises(ValueError, match=r"28 layers, the base model \(qwen2\) has 24"):
        load_allocation("llama-3.2-3b-el-neuronmoe", qwen)


def test_neuronmoe_49_is_minus_41_7_percent_params_vs_layermoe_84(llama3b):
    n = count_params(load_allocation("llama-3.2-3b-el-neuronmoe").experts_per_layer, llama3b)
    l = count_params(load_allocation("llama-3.2-3b-el-layermoe").experts_per_layer, llama3b)
    mlp = 3 * 3072 * 8192  # gate, up, down of Llama-3.2-3B, no biases
    assert n["mlp_params_per_expert"] == mlp
    assert n["new_expert_params"] == 21 * mlp and l["new_expert_params"] == 56 * mlp
    assert n["router_params"] == 3072 * (6 + 2 + 2 + 4 + 4 + 2 + 2 + 4 + 4) and l["router_params"] == 3072 * 84
    change = n["moe_ffn_params"] / l["moe_ffn_params"] - 1
    assert round(change * 100, 1) == -41.7  # the paper's figure: all experts incl. the frozen original
    assert round((n["added_params"] / l["added_params"] - 1) * 100, 1) == -62.5  # what training adds
    assert 3.2e9 < n["base_params"] < 3.3e9


def test_qwen_params_count_bias_free_mlp(qwen):
    p = count_params([1] * 23 + [3], qwen)
    assert p["new_expert_params"] == 2 * 3 * 2048 * 5504
    assert p["router_params"] == 2048 * 3


def test_record_writes_json_and_env_with_params(tmp_path, llama3b):
    ref = load_allocation("llama-3.2-3b-el-layermoe")
    experts = load_allocation("llama-3.2-3b-el-neuronmoe").experts_per_layer
    rec = build_record(experts, name="x", mode="pair", source="en", targets=["el"], e_min=1, e_max=6,
                       rounding="floor", scores=TABLE5, model="llama-3.2-3b", config=llama3b, reference=ref)
    j, e = write_allocation(rec, tmp_path / "allocation" / "x.json")
    assert e.read_text() == f"{ENV_KEY}={','.join(map(str, experts))}\n"
    d = json.loads(j.read_text())
    for key in ("experts_per_layer", "total_experts", "new_experts", "mode", "source", "targets", "e_min", "e_max",
                "rounding", "scores", "model", "num_layers", "base_model_fingerprint", "added_params"):
        assert key in d, key
    assert d["total_experts"] == 49 and d["new_experts"] == 21 and d["num_layers"] == 28
    assert d["base_model_fingerprint"]["num_layers"] == 28
    assert round(d["reference"]["moe_ffn_params_change"], 3) == -0.417
    back = load_allocation(j, llama3b)
    assert back.experts_per_layer == experts and back.name == "x"
    assert load_allocation(e).experts_per_layer == experts  # the .env form loads too


def test_loader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped allocation"):
        load_allocation("no-such-allocation")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experts_per_layer": [2, 0, 1]}))
    with pytest.raises(ValueError, match=r"experts_per_layer\[1\]"):
        load_allocation(bad)
    bad.write_text(json.dumps({"experts_per_layer": [2, 1], "total_experts": 4}))
    with pytest.raises(ValueError, match="total_experts"):
        load_allocation(bad)
    bad.write_text(json.dumps({"mode": "pair"}))
    with pytest.raises(ValueError, match="no experts_per_layer"):
        load_allocation(bad)


def test_loader_finds_names_under_output_dir(tmp_path):
    write_allocation({"name": "mine", "experts_per_layer": [2, 1, 3]}, tmp_path / "allocation" / "mine.json")
    a = load_allocation("mine", output_dir=tmp_path)
    assert isinstance(a, Allocation) and a.total_experts == 6 and a.new_experts == 3


def test_fingerprint_mismatch_is_rejected(tmp_path, llama3b):
    from neuronmoe.testing import tiny_config

    rec = build_record([2, 1, 1], name="t", mode="uniform", source="en", targets=[], e_min=1, e_max=2,
                       rounding=None, scores=None, config=tiny_config("llama"))
    j, _ = write_allocation(rec, tmp_path / "t.json")
    other = tiny_config("llama", hidden_size=64)
    with pytest.raises(ValueError, match="another base model.*hidden_size"):
        load_allocation(j, other)


def test_figure_one_draws_the_published_allocations(tmp_path, drawn):
    from neuronmoe.allocation import load_allocation, plot_allocation_comparison

    paths = plot_allocation_comparison("llama-3.2-3b-el-neuronmoe", "llama-3.2-3b-el-layermoe",
                                       tmp_path / "fig1.v2", params_change=-0.417)
    assert [p.name for p in paths] == ["fig1.v2.png", "fig1.v2.pdf"] and all(p.exists() for p in paths)
    ax = drawn["fig1.v2"].ax
    nm, lm = (load_allocation(n).experts_per_layer for n in ("llama-3.2-3b-el-neuronmoe", "llama-3.2-3b-el-layermoe"))
    assert sum(nm) == 49 and sum(lm) == 84
    assert sorted(ax.bars.values()) == sorted([[float(x) for x in nm], [float(x) for x in lm]])
    assert any("49" in t for t in ax.legend) and any("84" in t for t in ax.legend)
    with pytest.raises(ValueError, match="28 layers.*has 24"):
        plot_allocation_comparison("llama-3.2-3b-el-neuronmoe", "qwen1.5-1.8b-el-layermoe", tmp_path / "bad")
