"""`neuronmoe allocate` end to end on fixture neuron outputs and a tiny model."""
from __future__ import annotations

import json

import pytest

from neuronmoe.cli import main

MLP = 3 * 32 * 64  # tiny Llama: hidden 32, intermediate 64, gated MLP without biases


def _run(*argv):
    return main(["allocate", *map(str, argv)])


def _load(root, name):
    return json.loads((root / "allocation" / f"{name}.json").read_text())


def test_pair_mode_writes_allocation_env_and_params(tiny_neurons, tiny_model_dir):
    root, _ = tiny_neurons
    assert _run("--output-dir", root, "--source", "en", "--targets", "el") == 0
    d = _load(root, "neuronmoe")
    # layer 0: {q1,q2,gate1} U {q1,k9} = 4; layer 1: {up5} = 1; layer 2: {down3} U {down3,gate7,gate8,up7,o0} = 5
    assert d["scores"] == [4, 1, 5]
    assert d["experts_per_layer"] == [4, 1, 6]  # (4-1)*5/4 = 3.75 -> 3 (floor)
    assert (d["total_experts"], d["new_experts"], d["num_layers"]) == (11, 8, 3)
    assert (d["mode"], d["source"], d["targets"], d["e_min"], d["e_max"], d["rounding"]) == ("pair", "en", ["el"], 1, 6, "floor")
    assert d["model"] == str(tiny_model_dir)  # taken from the neuron manifest
    assert d["base_model_fingerprint"]["hidden_size"] == 32
    assert d["params"]["new_expert_params"] == 8 * MLP
    assert d["params"]["router_params"] == 32 * (4 + 6)
    assert d["added_params"] == 8 * MLP + 320
    assert (root / "allocation" / "neuronmoe.env").read_text() == "ADA_MOE_NUM_EXPERTS_LIST=4,1,6\n"


def test_params_match_a_real_upcycled_count(tiny_model_dir):
    """The meta-device count equals the parameters of the actual MLP modules of the model."""
    from neuronmoe.allocation import count_params
    from neuronmoe.models import decoder_layers, load_config, load_model

    m = load_model(str(tiny_model_dir), device="cpu")
    mlp = [sum(p.numel() for p in layer.mlp.parameters()) for layer in decoder_layers(m)]
    p = count_params([2, 3, 1], load_config(str(tiny_model_dir)))
    assert p["new_expert_params"] == mlp[0] * 1 + mlp[1] * 2
    assert p["base_params"] == sum(x.numel() for x in m.parameters())


def test_round_source_only_and_multi_modes(tiny_neurons):
    root, _ = tiny_neurons
    assert _run("--output-dir", root, "--mode", "source-only", "--targets", "el") == 0
    assert _load(root, "neuronmoe-en")["experts_per_layer"] == [6, 1, 1]  # en: [3, 1, 1]
    assert _run("--output-dir", root, "--mode", "multi", "--targets", "el,tr") == 0
    d = _load(root, "neuronmoe-multi")
    assert d["scores"] == [4, 1.5, 3.5]  # en + mean(el, tr) = [3,1,1] + [(2+0)/2, (0+1)/2, (5+0)/2]
    assert d["experts_per_layer"] == [6, 1, 5]
    assert _run("--output-dir", root, "--targets", "el", "--rounding", "round", "--name", "r") == 0
    assert _load(root, "r")["experts_per_layer"] == [5, 1, 6]  # 3.75 -> 4


def test_env_defaults_are_used(tiny_neurons, monkeypatch):
    root, _ = tiny_neurons
    monkeypatch.setenv("OUTPUT_DIR", str(root))
    monkeypatch.setenv("MODE", "source-only")
    monkeypatch.setenv("E_MAX", "3")
    monkeypatch.setenv("ALLOCATION_NAME", "envrun")
    assert _run() == 0
    d = _load(root, "envrun")
    assert d["mode"] == "source-only" and d["e_max"] == 3 and d["experts_per_layer"] == [3, 1, 1]


def test_uniform_and_scores_csv(tmp_path, tiny_model_dir):
    assert _run("--output-dir", tmp_path, "--mode", "uniform", "--num-experts", 3, "--model", tiny_model_dir) == 0
    d = _load(tmp_path, "uniform-3")
    assert d["experts_per_layer"] == [3, 3, 3] and d["params"]["new_expert_params"] == 6 * MLP
    csv = tmp_path / "s.csv"
    csv.write_text("layer,score\n1,5\n0,0\n2,10\n3,7.5\n")
    assert _run("--output-dir", tmp_path, "--scores-csv", csv) == 0  # no model: layer count from the file
    d = _load(tmp_path, "scores-s")
    assert d["experts_per_layer"] == [1, 1, 6, 3] and d["model"] is None and d["added_params"] is None


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--targets", "hu"], "target language 'hu' has no neuron results.*selected_hu.csv"),
        (["--targets", "el", "--e-min", "0"], "--e-min"),
        (["--targets", "el", "--e-min", "4", "--e-max", "3"], "--e-max"),
        (["--targets", "el,tr"], "pair mode.*exactly one"),
        (["--targets", "el", "--model", "llama-3.2-3b"], "3 layers, but --model llama-3.2-3b has 28"),
        (["--targets", "el", "--source", "xx"], "unknown language code 'xx'"),
        (["--targets", "el", "--reference", "nope"], "--reference 'nope'"),
        (["--targets", "el", "--reference", "llama-3.2-3b-el-layermoe"], r"another base model \(28 layers, the base model \(llama\) has 3; hidden_size"),  # noqa: E501 (an exact message/data row)
    ],
)
def test_bad_input_is_one_line_error_and_nothing_written(tiny_neurons, capsys, argv, match):
    import re

    root, _ = tiny_neurons
    assert _run("--output-dir", root, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not (root / "allocation").exists()


@pytest.mark.parametrize(
    "rows,match",
    [("layer,score\n0,1\n2,3\n", "missing layer.*1"), ("layer,score\n0,1\n0,3\n1,2\n", "layer 0 appears twice"),
     ("layer,score\n0,1\n1,x\n", "score a number"), ("lay,score\n0,1\n", "needs columns layer,score"),
     ("layer,score\n0,1\n1,2\n2,3\n3,4\n", "beyond the model's 3 layers")],
)
def test_bad_scores_csv(tmp_path, tiny_model_dir, capsys, rows, match):
    import re

    csv = tmp_path / "s.csv"
    csv.write_text(rows)
    assert _run("--output-dir", tmp_path, "--scores-csv", csv, "--model", tiny_model_dir) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "allocation").exists()


def test_missing_neuron_stage_is_clear(tmp_path, capsys):
    assert _run("--output-dir", tmp_path, "--targets", "el") == 2
    assert "neuronmoe neurons" in capsys.readouterr().err


def test_compare_with_draws_figure_one_and_records_reduction(tiny_neurons, tiny_model_dir, drawn):
    root, _ = tiny_neurons
    assert _run("--output-dir", root, "--mode", "uniform", "--num-experts", 5, "--model", tiny_model_dir) == 0
    d = _load(root, "uniform-5")
    assert d["experts_per_layer"] == [5, 5, 5]
    assert _run("--output-dir", root, "--targets", "el", "--compare-with", "uniform-5") == 0
    rec = _load(root, "neuronmoe")
    assert rec["reference"]["name"] == "uniform-5" and rec["reference"]["total_experts"] == 15
    assert rec["reference"]["experts_change"] == pytest.approx(11 / 15 - 1)
    assert rec["reference"]["moe_ffn_params_change"] < 0
    fig = drawn["allocation_neuronmoe_vs_uniform-5"]
    assert sorted(fig.ax.bars.values()) == sorted([[float(x) for x in rec["experts_per_layer"]], [5.0, 5.0, 5.0]])
    assert all(p.exists() and p.parent == root / "figures" for p in fig.files)


def test_source_only_does_not_need_target_results(tiny_neurons):
    root, _ = tiny_neurons
    assert _run("--output-dir", root, "--mode", "source-only", "--targets", "hu") == 0
    assert _load(root, "neuronmoe-en")["targets"] == ["hu"]
