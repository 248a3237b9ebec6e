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


def test_figures_cli_writes_every_figure_and_its_manifest(stage_outputs, drawn):
    from neuronmoe.cli import main

    assert main(["figures", "--output-dir", str(stage_outputs)]) == 0
    fig = stage_outputs / "figures"
    assert set(drawn) == {"neuron_counts", "allocation", "expert_heatmap", "training_curves"}
    for stem, rec in drawn.items():
        assert sorted(p.name for p in rec.files) == [f"{stem}.pdf", f"{stem}.png"] and all(p.exists() for p in rec.files)
    man = json.loads((fig / "manifest.json").read_text())
    assert "neuron_counts.png" in man["files"] and man["counts"]["figures"] == 4


def test_neuron_counts_figure_draws_the_counts(stage_outputs, drawn):
    from neuronmoe.cli import main

    assert main(["figures", "--output-dir", str(stage_outputs)]) == 0
    ax = drawn["neuron_counts"].ax
    assert ax.bars == {"en": [9, 1, 5], "el": [4, 0, 7]}  # counts.json per_layer, one bar per layer
    assert (ax.xlabel, ax.ylabel) == ("layer", "language-specific units") and ax.legend == ["en", "el"]


def test_allocation_figure_draws_both_allocations_and_the_scores(stage_outputs, drawn):
    from neuronmoe.allocation import allocate
    from neuronmoe.cli import main

    assert main(["figures", "--output-dir", str(stage_outputs)]) == 0
    ax = drawn["allocation"].ax
    heights = sorted(ax.bars.values())
    assert sorted([list(map(float, allocate([12.0, 1.0, 11.0]))), [3.0, 3.0, 2.0]]) == heights
    assert "vs" in ax.title
    scores = [y for x, y in (v for v in _all_lines(drawn["allocation"]))]
    assert [12.0, 1.0, 11.0] in scores  # the neuron score line (second axis)


def _all_lines(rec):
    return [line for a in rec.axes for line in a.lines.values()]


def test_heatmap_and_training_curves_draw_the_recorded_values(stage_outputs, drawn):
    import numpy as np

    from neuronmoe.analysis.figures import read_metrics
    from neuronmoe.cli import main

    assert main(["figures", "--output-dir", str(stage_outputs)]) == 0
    heat = drawn["expert_heatmap"].ax
    (img,) = heat.images
    assert img.shape == (2, 2) and img[0, 1] == 2.0 and img[0, 0] == np.float64(0.1) and np.isnan(img[1, 1])
    assert heat.xticklabels == ["base", "exp_0"] and heat.yticklabels == ["0", "2"]
    lm = [y for x, y in _all_lines(drawn["training_curves"]) if len(y) == 5]  # neuronmoe-s1: steps 1-5
    assert any(np.allclose(y, [3.0 / s for s in range(1, 6)]) for y in lm)
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
