"""Figures drawn from stage outputs: neuron counts, allocation comparison, expert heatmap, training curves."""
from __future__ import annotations

import json

import pytest


@pytest.fixture
def stage_outputs(tmp_path, tiny_model_dir):
    from neuronmoe.allocation import allocate, build_record, write_allocation
    from neuronmoe.models import load_config

    o = tmp_path / "out"
    (o / "neurons").mkdir(parents=True)
    (o / "neurons" / "counts.json").write_text(json.dumps(
        {"languages": ["en", "el"], "num_layers": 3, "per_layer": {"en": [9, 1, 5], "el": [4, 0, 7]}}))
    cfg = load_config(str(tiny_model_dir))
    scores = [12.0, 1.0, 11.0]
    for name, mode, epl in (("neuronmoe", "pair", allocate(scores)), ("layermoe", "similarity", [3, 3, 2])):
        rec = build_record(epl, mode=mode, source="en", targets=["el"], scores=scores, config=cfg, name=name,
                           e_min=1, e_max=6, rounding="floor")
        write_allocation(rec, o / "allocation" / f"{name}.json")
    for run, n in (("neuronmoe-s1", 6), ("layermoe-s1", 4)):
        d = o / "train" / run
        d.mkdir(parents=True)
        rows = [{"step": s, "loss": 3.0 / s, "lm_loss": 3.0 / s, "aux_loss": 1.0 + 0.1 / s, "lpr_loss": None} for s in range(1, n)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9, "lm_lo')  # cut line
    (o / "analysis").mkdir()
    (o / "analysis" / "expert_ap.json").write_text(json.dumps({"target": "el", "threshold": 0.9, "experts": [
        {"layer": 0, "expert": "base", "expert_index": 0, "ratio_pct": {"el": 0.1}},
        {"layer": 0, "expert": "exp_0", "expert_index": 1, "ratio_pct": {"el": 2.0}},
        {"layer": 2, "expert": "base", "expert_index": 0, "ratio_pct": {"el": 0.0}}]}))
    return o


def test_figures_cli_draws_everything(stage_outputs, capsys):
    from neuronmoe.analysis.figures import read_metrics
    from neuronmoe.cli import main

    assert main(["figures", "--output-dir", str(stage_outputs)]) == 0
    fig = stage_outputs / "figures"
    for stem in ("neuron_counts", "allocation", "expert_heatmap", "training_curves"):
        for ext in ("png", "pdf"):
            assert (fig / f"{stem}.{ext}").stat().st_size > 1000, (stem, ext)
    man = json.loads((fig / "manifest.json").read_text())
    assert "neuron_counts.png" in man["files"] and man["counts"]["figures"] == 4
    assert len(read_metrics(stage_outputs / "train" / "neuronmoe-s1" / "metrics.jsonl")) == 5  # the cut line is skipped


def test_figures_cli_without_outputs_is_an_error(tmp_path, capsys):
    from neuronmoe.cli import main

    assert main(["figures", "--output-dir", str(tmp_path)]) == 2
    assert "no stage outputs" in capsys.readouterr().err


def test_heatmap_marks_missing_experts(stage_outputs):
    import numpy as np

    from neuronmoe.analysis.expert_ap import heatmap_matrix

    data = json.loads((stage_outputs / "analysis" / "expert_ap.json").read_text())
    mat, layers, names = heatmap_matrix(data["experts"], "el")
    assert layers == [0, 2] and names == ["base", "exp_0"] and np.isnan(mat[1, 1]) and mat[0, 1] == 2.0
