"""Bootstrap stability, sample sizes and threshold sensitivity of an allocation (issue 26)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from stored_neurons import planted, write_stored

from neuronmoe.allocation.resample import (
    Pass,
    Rule,
    Sweep,
    allocation_of,
    full_selection,
    resample_weights,
    run_passes,
    select,
)
from neuronmoe.cli import main
from neuronmoe.neuron_analysis.ap import average_precision
from neuronmoe.neuron_analysis.stored import load_stored

LANGS = ["en", "el", "tr"]
LAYERS, WIDTH = 4, 16


def _run(*argv):
    return main(["allocate", *map(str, argv)])


def _rule(stored, mode="pair"):
    return Rule(mode=mode, source="en", targets=("el",), e_min=1, e_max=6, rounding="floor", top_k=stored.top_k,
                ap_threshold=stored.ap_threshold)


@pytest.fixture
def mixed(tmp_path):
    """Weak, uneven language signals over noise: a sample whose allocation changes with the sentences drawn."""
    acts, labels = planted(LANGS, 24, LAYERS, WIDTH, {"en": {0: 5, 3: 2}, "el": {2: 4, 3: 3}, "tr": {1: 3}},
                           strength=1.0, seed=2)
    write_stored(tmp_path, acts, labels, LANGS, LAYERS, top_k=8, ap_threshold=0.5)
    return tmp_path


def _brute(stored, rule, weights):
    """Materialise the resample and recompute AP over every unit with the neuron stage's own function."""
    rows = np.repeat(np.arange(len(stored.labels)), weights)
    acts = np.concatenate([np.asarray(x) for x in stored.layers], axis=1)
    ap = average_precision(acts[rows], stored.labels[rows], num_labels=len(stored.languages)).astype(np.float32)
    units = np.arange(stored.num_units)
    sel = {lang: select(ap[:, stored.languages.index(lang)], units, rule.top_k, rule.ap_threshold) for lang in rule.languages}
    return sel, allocation_of(rule, sel, stored.unit_layer, stored.num_layers)


def test_one_replicate_drawing_every_row_once_is_the_plain_allocation(mixed, capsys):
    assert _run("--output-dir", mixed, "--source", "en", "--targets", "el") == 0
    trained = json.loads((mixed / "allocation" / "neuronmoe.json").read_text())["experts_per_layer"]
    stored = load_stored(mixed / "neurons")
    rule = _rule(stored)
    p = Pass("once", None, np.ones((1, len(stored.labels)), dtype=int), margin=1.0)
    sels = run_passes(Sweep(stored, rule, verify=0, device="cpu"), [p])["once"]
    assert np.array_equal(p.aps[0], stored.ap[:, [0, 1]])  # the stage's AP, bit for bit
    assert allocation_of(rule, sels[0], stored.unit_layer, LAYERS) == trained
    assert {k: v.tolist() for k, v in sels[0].items()} == {k: v.tolist() for k, v in full_selection(stored, rule).items()}


@pytest.mark.parametrize("margin", [0.15, 0.01])  # 0.01: too narrow, so the verification fails and widens it
def test_the_shortcut_equals_brute_force_on_twelve_replicates(mixed, margin):
    stored = load_stored(mixed / "neurons")
    rule = _rule(stored)
    w = resample_weights(stored.labels, 12, seed=5)
    p = Pass("bootstrap", None, w, margin)
    sels = run_passes(Sweep(stored, rule, verify=2, device="cpu", max_bytes=1 << 16), [p])["bootstrap"]
    assert len(p.cand) < stored.num_units or p.widened  # a real shortcut, or one the verification widened
    if margin == 0.01:
        assert p.widened and p.widened[0] == 0.01
    changed = 0
    for r in range(12):
        sel, alloc = _brute(stored, rule, w[r])
        assert {k: v.tolist() for k, v in sels[r].items()} == {k: v.tolist() for k, v in sel.items()}
        assert allocation_of(rule, sels[r], stored.unit_layer, LAYERS) == alloc
        changed += alloc != allocation_of(rule, full_selection(stored, rule), stored.unit_layer, LAYERS)
    assert changed  # the replicates do differ from the full sample: the comparison is not trivial


def test_resampling_is_stratified_and_reproducible():
    labels = np.repeat([0, 1, 2], [5, 7, 4])
    w = resample_weights(labels, 6, seed=1)
    assert (np.stack([w[:, labels == i].sum(1) for i in range(3)], 1) == [5, 7, 4]).all()
    assert np.array_equal(w, resample_weights(labels, 6, seed=1))
    assert np.array_equal(w[:3], resample_weights(labels, 3, seed=1))  # replicate r depends on (seed, size, r) only
    sub = resample_weights(labels, 4, seed=1, size=3)
    assert set(np.unique(sub)) <= {0, 1} and (np.stack([sub[:, labels == i].sum(1) for i in range(3)], 1) == 3).all()


def test_a_planted_strong_signal_gives_probability_one(tmp_path, capsys):
    acts, labels = planted(LANGS, 20, LAYERS, WIDTH, {"en": {0: 4, 3: 2}, "el": {2: 4, 3: 2}, "tr": {1: 6}}, strength=8.0)
    write_stored(tmp_path, acts, labels, LANGS, LAYERS, top_k=6, ap_threshold=0.5)
    assert _run("--output-dir", tmp_path, "--targets", "el", "--bootstrap", 30, "--no-progress") == 0
    d = json.loads((tmp_path / "allocation" / "neuronmoe.stability.json").read_text())
    b = d["bootstrap"]
    assert d["experts_per_layer"] == [6, 1, 6, 6]  # scores 4, 0, 4, 4
    assert (b["p_equal"], b["equal"], b["replicates"]) == (1.0, 30, 30)
    assert b["uncertain_layers"] == [] and all(x["interval90"][0] == x["interval90"][1] for x in b["layers"])
    assert b["total"]["interval90"] == [19, 19] and b["units"]["stable_share"] == 1.0
    assert b["p_equal_interval90"][0] > 0.9  # Wilson: 30/30 still leaves some doubt
    assert "P(allocation = trained) = 100%" in capsys.readouterr().out


def test_pure_noise_gives_a_spread_distribution(tmp_path):
    acts, labels = planted(LANGS, 20, LAYERS, WIDTH, {}, seed=7)
    write_stored(tmp_path, acts, labels, LANGS, LAYERS, top_k=6, ap_threshold=0.0)
    assert _run("--output-dir", tmp_path, "--targets", "el", "--bootstrap", 30, "--no-progress") == 0
    b = json.loads((tmp_path / "allocation" / "neuronmoe.stability.json").read_text())["bootstrap"]
    assert b["p_equal"] < 0.3
    assert len(b["total"]["counts"]) > 2 and b["uncertain_layers"]
    assert any(len(x["counts"]) > 2 for x in b["layers"])
    assert b["units"]["stable_share"] < 0.5  # noise units come and go


def test_sample_sizes_and_the_figure(mixed, monkeypatch, capsys):
    import neuronmoe.plotting as plotting

    drawn = {}
    real_save = plotting.save_figure

    def keep(fig, stem, *a, **k):
        drawn[str(stem)] = fig
        return real_save(fig, stem, *a, **k)

    monkeypatch.setattr(plotting, "save_figure", keep)
    assert _run("--output-dir", mixed, "--targets", "el", "--bootstrap", 10, "--sample-sizes", "6,12,24,40",
                "--no-progress") == 0
    d = json.loads((mixed / "allocation" / "neuronmoe.stability.json").read_text())
    assert [r["n"] for r in d["sample_sizes"]] == [6, 12]
    assert [r["n"] for r in d["sample_sizes_skipped"]] == [24, 40]  # 24 sentences per language are stored
    assert "whole sample" in d["sample_sizes_skipped"][0]["reason"]
    for r in d["sample_sizes"]:
        assert r["replicates"] == 10 and 0 <= r["p_equal"] <= 1 and r["mean_abs_change"] >= 0
    stem = str(mixed / "figures" / "allocation_neuronmoe_sample_sizes")
    assert d["figures"] == [stem + ".png", stem + ".pdf"]
    ax = drawn[stem].axes[0]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [6, 12] and list(line.get_ydata()) == [r["p_equal"] for r in d["sample_sizes"]]
    assert ax.get_xlabel() == "sentences per language"
    assert "P(allocation = full-sample one)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "6 sentences per language: P(= full-sample allocation)" in capsys.readouterr().out


def test_sensitivity_grid_alone(mixed):
    assert _run("--output-dir", mixed, "--targets", "el", "--sensitivity", "--set", "grid_top_k=[4,8]",
                "--grid-ap-thresholds", "0.5,0.9") == 0
    d = json.loads((mixed / "allocation" / "neuronmoe.stability.json").read_text())
    assert "bootstrap" not in d and "sample_sizes" not in d
    cells = {(c["top_k"], c["ap_threshold"]): c for c in d["sensitivity"]["cells"]}
    assert set(cells) == {(4, 0.5), (4, 0.9), (8, 0.5), (8, 0.9)}
    assert cells[(8, 0.5)]["experts_per_layer"] == d["experts_per_layer"] and cells[(8, 0.5)]["changed_layers"] == []
    stored = load_stored(mixed / "neurons")
    rule = _rule(stored).with_thresholds(4, 0.9)
    sel = full_selection(stored, rule)
    if all(len(u) for u in sel.values()):
        want = allocation_of(rule, sel, stored.unit_layer, LAYERS)
        assert cells[(4, 0.9)]["experts_per_layer"] == want
        assert cells[(4, 0.9)]["changed_layers"] == [i for i in range(LAYERS) if want[i] != d["experts_per_layer"][i]]
    else:
        assert cells[(4, 0.9)]["total_experts"] is None


def test_figure_one_gets_the_bootstrap_intervals(mixed, monkeypatch):
    import neuronmoe.plotting as plotting

    drawn = {}
    real_save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, stem, *a, **k: drawn.setdefault(str(stem), fig) and real_save(fig, stem))
    from neuronmoe.allocation import write_allocation

    write_allocation({"name": "flat", "experts_per_layer": [2] * LAYERS}, mixed / "allocation" / "flat.json")
    assert _run("--output-dir", mixed, "--targets", "el", "--bootstrap", 8, "--compare-with", "flat", "--no-progress") == 0
    d = json.loads((mixed / "allocation" / "neuronmoe.stability.json").read_text())
    fig = drawn[str(mixed / "figures" / "allocation_neuronmoe_vs_flat")]
    bars = [c for c in fig.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1
    segs = bars[0].lines[2][0].get_segments()
    assert [(s[0][1], s[1][1]) for s in segs] == [tuple(map(float, x["interval90"])) for x in d["bootstrap"]["layers"]]


def test_stability_needs_the_stored_activations(mixed, capsys):
    (mixed / "neurons" / "activations" / "layer_002.npy").unlink()
    assert _run("--output-dir", mixed, "--targets", "el", "--bootstrap", 5) == 2
    assert "stored activations are missing" in capsys.readouterr().err
    assert not (mixed / "allocation").exists()  # checked before anything is written


def test_changed_activations_are_named(mixed, capsys):
    p = mixed / "neurons" / "activations" / "layer_001.npy"
    a = np.load(p)
    a[0, 0] += 1
    np.save(p, a)
    assert _run("--output-dir", mixed, "--targets", "el", "--bootstrap", 5) == 2
    assert "layer_001.npy" in capsys.readouterr().err
    assert not (mixed / "allocation").exists()


def test_selected_units_that_ap_npy_does_not_give_are_an_error(mixed, capsys):
    csv = mixed / "neurons" / "selected_el.csv"
    rows = csv.read_text().splitlines()
    csv.write_text("\n".join(rows[:2]) + "\n")  # one unit of el's eight left
    assert _run("--output-dir", mixed, "--targets", "el", "--bootstrap", 5) == 2
    assert "ap.npy selects units that give" in capsys.readouterr().err
    assert not (mixed / "allocation").exists()


@pytest.mark.parametrize("mode", ["pair", "multi", "source-only"])
def test_layer_scores_from_unit_numbers_equal_the_cores_from_csv_units(mode):
    """The replicate scores (unit numbers) are the allocation's own scores (units as (layer, module, index))."""
    from neuronmoe.allocation import core
    from neuronmoe.allocation.resample import layer_scores

    rng = np.random.default_rng(3)
    width, n_layers = 10, 5
    unit_layer = np.repeat(np.arange(n_layers), width)
    sel = {lang: np.sort(rng.choice(width * n_layers, 12, replace=False)) for lang in ("en", "el", "tr")}
    units = {lang: [(int(u) // width, f"m{int(u) % 2}", int(u) % width) for u in s] for lang, s in sel.items()}
    rule = Rule(mode, "en", ("el",) if mode == "pair" else ("el", "tr"), 1, 6, "floor", 12, 0.5)
    got = layer_scores(rule, sel, unit_layer, n_layers)
    if mode == "pair":
        want = core.pair_scores(units["en"], units["el"], n_layers)
    elif mode == "multi":
        want = core.multi_scores(units["en"], {"el": units["el"], "tr": units["tr"]}, n_layers)
    else:
        want = core.source_only_scores(units["en"], n_layers)
    assert got == want
