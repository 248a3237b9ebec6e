"""The pure core: routed pooling (eq. 5), per-expert AP with the no-token policies (eq. 6), tables."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuronmoe.analysis import (
    ExpertResult,
    expert_ap,
    expert_index,
    expert_name,
    expert_units,
    heatmap_matrix,
    pool_routed,
    summarize,
    table_rows,
    to_markdown,
)


def test_pool_routed_hand_built():
    # B=2, T=3; sentence 1 has one padding position (t=2)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # tokens routed to this expert: (0,0), (0,2), (1,1), (1,2)=padding
    idx = torch.tensor([0, 2, 4, 5])
    gate = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0], [999.0, 999.0]])
    up = gate * 2
    down = torch.tensor([[1.0], [5.0], [7.0], [999.0]])
    means, counts = pool_routed({"token_index": idx, "gate": gate, "up": up, "down": down}, mask)
    assert counts.tolist() == [2, 1]
    np.testing.assert_allclose(means[0], [2.0, 3.0, 4.0, 6.0, 3.0])
    np.testing.assert_allclose(means[1], [10.0, 20.0, 20.0, 40.0, 7.0])  # padding row ignored


def test_pool_routed_no_token_is_nan_and_zero_count():
    mask = torch.ones(3, 2, dtype=torch.long)
    idx = torch.tensor([1, 4])  # sentences 0 and 2 only
    x = torch.arange(4.0).reshape(2, 2)
    means, counts = pool_routed({"token_index": idx, "gate": x, "up": x, "down": x[:, :1]}, mask)
    assert counts.tolist() == [1, 0, 1]
    assert np.isnan(means[1]).all() and not np.isnan(means[[0, 2]]).any()


def test_pool_routed_rejects_bad_capture():
    mask = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="out of range"):
        pool_routed({"token_index": torch.tensor([5]), "gate": torch.zeros(1, 1), "up": torch.zeros(1, 1),
                     "down": torch.zeros(1, 1)}, mask)
    with pytest.raises(ValueError, match="rows"):
        pool_routed({"token_index": torch.tensor([0, 1]), "gate": torch.zeros(1, 1), "up": torch.zeros(2, 1),
                     "down": torch.zeros(2, 1)}, mask)


def test_unit_layout_llama_3b():
    lay = expert_units(8192, 3072)
    assert lay.total == 19456
    assert lay.unit(0) == ("gate", 0) and lay.unit(8192) == ("up", 0) and lay.unit(19455) == ("down", 3071)
    assert [expert_name(e) for e in range(3)] == ["base", "exp_0", "exp_1"]
    assert expert_index("exp_4") == 5 and expert_index("base") == 0


def _toy(policy, sklearn_ap):
    # 3 units; 4 en (0) + 4 el (1) sentences; sentence 7 (el) routed no token; sentence 0 (en) neither
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    counts = np.array([0, 2, 2, 2, 3, 3, 3, 0])
    pooled = np.array([
        [np.nan] * 3,
        [0.1, 5.0, -0.3], [0.2, 6.0, -0.1], [0.3, 7.0, -0.4],
        [0.9, 1.0, 0.2], [0.8, 2.0, 0.5], [0.7, 3.0, -0.2],
        [np.nan] * 3,
    ], dtype=np.float32)
    return expert_ap(pooled, counts, labels, 2, policy=policy, ap_fn=sklearn_ap), pooled, labels


def test_expert_ap_exclude_policy(sklearn_ap):
    (ap, info), pooled, labels = _toy("exclude", sklearn_ap)
    assert info["covered"] == [3, 3] and info["coverage"] == [0.75, 0.75]
    ref = sklearn_ap(pooled[1:7], labels[1:7])
    np.testing.assert_allclose(ap, ref, rtol=1e-6)
    assert ap[0, 1] == pytest.approx(1.0) and ap[1, 0] == pytest.approx(1.0)  # unit 0: el; unit 1: en


def test_expert_ap_bottom_and_zero_policies(sklearn_ap):
    (ap_b, _), pooled, labels = _toy("bottom", sklearn_ap)
    # sentence 0 (en) and 7 (el) rank last for every unit: unit 0 keeps el perfect up to the last el sentence
    filled = pooled.copy()
    filled[[0, 7]] = np.nanmin(pooled, axis=0) - 1
    np.testing.assert_allclose(ap_b, sklearn_ap(filled, labels), rtol=1e-6)
    (ap_z, _), _, _ = _toy("zero", sklearn_ap)
    zero = np.nan_to_num(pooled, nan=0.0)
    np.testing.assert_allclose(ap_z, sklearn_ap(zero, labels), rtol=1e-6)
    assert not np.allclose(ap_b[2], ap_z[2])  # unit 2 has negative scores: 0 is not the bottom


def test_expert_ap_one_language_covered(sklearn_ap):
    labels = np.array([0, 0, 1, 1])
    counts = np.array([0, 0, 4, 4])  # the expert never saw an en sentence
    pooled = np.array([[np.nan, np.nan], [np.nan, np.nan], [1.0, -3.0], [2.0, -4.0]], dtype=np.float32)
    ap, info = expert_ap(pooled, counts, labels, 2, policy="exclude", ap_fn=sklearn_ap)
    assert np.isnan(ap).all() and info["ap_defined"] == [False, False]
    ap, _ = expert_ap(pooled, counts, labels, 2, policy="bottom", ap_fn=sklearn_ap)
    np.testing.assert_allclose(ap[:, 1], 1.0)  # routing specificity shows up as unit specificity
    with pytest.raises(ValueError, match="policy"):
        expert_ap(pooled, counts, labels, 2, policy="drop", ap_fn=sklearn_ap)


def test_expert_ap_default_is_project_ap(sklearn_ap):
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(20, 7)).astype(np.float32)
    pooled[3] = np.nan
    labels = np.repeat([0, 1, 2], [7, 7, 6])
    counts = np.ones(20, dtype=int)
    counts[3] = 0
    ap, _ = expert_ap(pooled, counts, labels, 3)
    keep = counts > 0
    np.testing.assert_allclose(ap, sklearn_ap(pooled[keep], labels[keep]), rtol=1e-5)


def test_summary_table_markdown_and_heatmap():
    lay = expert_units(8192, 3072)
    ap0 = np.zeros((lay.total, 2), dtype=np.float32)
    ap1 = np.zeros_like(ap0)
    ap1[:405, 1] = 0.95  # 405 gate units high-AP for el
    ap1[8192:8200, 1] = 0.9  # threshold is inclusive: 8 up units
    ap1[8200, 1] = np.nan  # NaN never counts
    res = [ExpertResult(27, 1, ap1, {"coverage": [1.0, 0.3]}), ExpertResult(27, 0, ap0, {"coverage": [1.0, 1.0]}),
           ExpertResult(5, 0, ap0, {}, dense=True)]
    summ = summarize(res, ["en", "el"], lay, threshold=0.9)
    assert [(s["layer"], s["expert"]) for s in summ] == [(5, "base"), (27, "base"), (27, "exp_0")]
    assert summ[2]["high_ap"]["el"] == 413 and summ[2]["high_ap_per_module"]["up"]["el"] == 8
    assert summ[2]["low_coverage"] == ["el"]
    rows = table_rows(summ, "el")
    assert rows[2]["Ratio (%)"] == round(100 * 413 / 19456, 2) == 2.12
    assert len(table_rows(summ, "el", multi_expert_only=True)) == 2
    md = to_markdown(rows, "el", 0.9)
    assert "| L | Expert | Total | High-AP | Ratio (%) |" in md and "| 27 | exp_0 | 19,456 | 413 | 2.12 |" in md
    mat, layers, names = heatmap_matrix(summ, "el")
    assert layers == [5, 27] and names == ["base", "exp_0"]
    assert math.isnan(mat[0, 1]) and mat[1, 1] == pytest.approx(100 * 413 / 19456)
    from neuronmoe.errors import ConfigError

    with pytest.raises(ConfigError, match="target language 'tr' was not analysed"):
        table_rows(summ, "tr")
