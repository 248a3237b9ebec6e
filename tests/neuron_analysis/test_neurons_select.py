"""Top-K selection with threshold, per-layer counts, LAPE scores."""
from __future__ import annotations

import numpy as np
import pytest

from neuronmoe.neuron_analysis import (
    UnitLayout,
    activation_probability,
    count_per_layer,
    count_per_layer_module,
    lape_scores,
    select_top_k,
)


def test_select_top_k_threshold_is_strict_and_order_is_best_first():
    scores = np.array([[0.9, 0.1], [0.5, 0.2], [0.7, 0.95], [0.51, 0.5], [0.7, 0.3]], dtype=np.float32)
    sel = select_top_k(scores, top_k=3, threshold=0.5)
    assert sel[0].tolist() == [0, 2, 4]  # ties (0.7) by unit number; 0.51 cut by top_k
    assert sel[1].tolist() == [2]  # 0.5 is not > 0.5
    sel0 = select_top_k(scores, top_k=10, threshold=0.0)  # the published code: no threshold
    assert sel0[0].tolist() == [0, 2, 4, 3, 1]
    assert len(sel0[1]) == 5
    with pytest.raises(ValueError, match="--top-k"):
        select_top_k(scores, top_k=0)


def test_counts_per_layer_and_module_use_full_unit_identity():
    from neuronmoe.testing import tiny_config

    layout = UnitLayout.for_model(tiny_config("llama"))
    assert layout.modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert layout.layer_width == 32 + 16 + 16 + 32 + 64 + 64 + 32
    units = layout.arrays()
    units["module_names"] = np.array(layout.modules)
    # q_proj unit 5 and gate_proj unit 5 of layer 1: two different units
    w = layout.layer_width
    q5, g5 = w + 5, w + 32 + 16 + 16 + 32 + 5
    assert layout.locate(q5) == (1, "q_proj", 5) and layout.locate(g5) == (1, "gate_proj", 5)
    sel = [np.array([q5, g5, 2 * w]), np.array([g5])]
    per_layer = count_per_layer(sel, units["layer"], 3)
    assert per_layer.tolist() == [[0, 0], [2, 1], [1, 0]]
    per_mod = count_per_layer_module(sel, units, 3)
    assert per_mod[1, 0, 0] == 1 and per_mod[1, 4, 0] == 1 and per_mod[1, 4, 1] == 1 and per_mod.sum() == 4


def test_modules_restriction_and_unknown_module():
    from neuronmoe.testing import tiny_config

    cfg = tiny_config("llama")
    lay = UnitLayout.for_model(cfg, ["up_proj", "gate_proj"])
    assert lay.modules == ("gate_proj", "up_proj") and lay.total == 3 * 128
    with pytest.raises(ValueError, match="unknown module"):
        UnitLayout.for_model(cfg, ["mlp_proj"])
    lape = UnitLayout.for_model(cfg, metric="lape")
    assert lape.modules == ("act_fn",) and lape.total == 3 * 64


def test_activation_probability_is_token_weighted():
    frac = np.array([[1.0, 0.0], [0.0, 0.0], [0.5, 1.0]])
    p = activation_probability(frac, n_tokens=np.array([3, 1, 2]), lang_ids=np.array([0, 0, 1]), num_langs=2)
    np.testing.assert_allclose(p, [[0.75, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="no samples"):
        activation_probability(frac, np.ones(3), np.array([0, 0, 0]), 2)


def test_lape_scores_definition():
    p = np.array([
        [0.9, 0.0, 0.0],   # one language only: entropy 0 -> score 1 for lang 0
        [0.9, 0.9, 0.0],   # two languages equally: 1 - ln2/ln3
        [0.3, 0.3, 0.3],   # below the bar everywhere
        [0.0, 0.0, 0.0],   # never active: max entropy, score 0
    ] + [[0.1, 0.1, 0.1]] * 20)
    score, ent, bar = lape_scores(p, 0.95)
    assert bar == pytest.approx(0.3)  # 95% quantile of all p
    assert score[0].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(score[1], [1 - np.log(2) / np.log(3)] * 2 + [0.0])
    assert ent[0] == 0 and ent[3] == pytest.approx(np.log(3))
    assert not score[2:].any()
    with pytest.raises(ValueError, match="two languages"):
        lape_scores(p[:, :1])
