"""The stage on the real embedded model (smollm2-135m, en -> el): LayerMoE, NeuronMoE, NeuronMoE-EN, Figure 1."""
from __future__ import annotations

import csv
import json

import pytest
from sim_fixtures import write_data

from neuronmoe.cli import main


@pytest.mark.slow
def test_embedded_model_similarity_and_allocations(tmp_path, embedded_model_dir, drawn):
    from neuronmoe.models import load_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    root = tmp_path
    write_data(root, ("en", "el"), fingerprint=tokenizer_fingerprint(load_tokenizer("smollm2-135m")))
    neurons = root / "neurons"
    neurons.mkdir()
    units = {"en": [(0, "q_proj", 1), (0, "gate_proj", 1), (29, "down_proj", 2), (5, "up_proj", 3)],
             "el": [(0, "q_proj", 1), (0, "k_proj", 4), (0, "up_proj", 9), (29, "down_proj", 7)]}
    for lang, us in units.items():
        with open(neurons / f"selected_{lang}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["layer", "module", "index", "ap"])
            w.writerows([[*u, 0.9] for u in us])
    (neurons / "manifest.json").write_text(json.dumps({"stage": "neurons", "config": {
        "model": "smollm2-135m", "languages": ["en", "el"], "num_layers": 30}}))

    assert main(["similarity", "--output-dir", str(root), "--model", "smollm2-135m", "--device", "cpu",
                 "--targets", "el", "--max-tokens", "96"]) == 0
    lm = json.loads((root / "allocation" / "layermoe.json").read_text())
    assert lm["num_layers"] == 30 and lm["budget"] == 75 and lm["total_experts"] >= 75
    assert lm["base_model_fingerprint"]["hidden_size"] == 576
    assert main(["allocate", "--output-dir", str(root), "--mode", "pair", "--targets", "el", "--compare-with", "layermoe"]) == 0
    assert main(["allocate", "--output-dir", str(root), "--mode", "source-only", "--targets", "el",
                 "--reference", "layermoe"]) == 0
    nm = json.loads((root / "allocation" / "neuronmoe.json").read_text())
    assert nm["scores"][0] == 4 and nm["scores"][29] == 2 and nm["experts_per_layer"][0] == 6
    assert nm["params"]["mlp_params_per_expert"] == 3 * 576 * 1536
    assert nm["reference"]["name"] == "layermoe" and nm["reference"]["moe_ffn_params_change"] < 0
    assert (root / "allocation" / "neuronmoe-en.json").exists()
    fig = drawn["allocation_neuronmoe_vs_layermoe"]
    assert sorted(fig.ax.bars.values()) == sorted([[float(x) for x in nm["experts_per_layer"]],
                                                   [float(x) for x in lm["experts_per_layer"]]])
