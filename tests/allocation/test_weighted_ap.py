"""AP under integer sample weights equals AP of the materialised resample (sklearn, ties included)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from neuronmoe.errors import InputError
from neuronmoe.neuron_analysis.ap import average_precision
from neuronmoe.neuron_analysis.weighted_ap import SortedUnits, Weights, unit_rows, weighted_average_precision


def _data(n=48, u=9, langs=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, langs, n)
    labels[:langs] = np.arange(langs)
    scores = (np.round(rng.standard_normal((n, u)) * 2) / 2).astype(np.float16)  # many ties
    scores[:, 0] += (labels == 1) * np.float16(1.5)
    return scores, labels


@pytest.mark.parametrize("kind", ["bootstrap", "subsample", "large"])
def test_weighted_ap_is_sklearns_ap_of_the_materialised_resample(kind):
    scores, labels = _data()
    rng = np.random.default_rng(1)
    n = len(labels)
    if kind == "bootstrap":  # draws with replacement: duplicated rows tie with each other
        w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(5)])
    elif kind == "subsample":  # 0/1 weights
        w = (rng.random((5, n)) < 0.5).astype(int)
    else:  # weights too large for the int16 prefix sums: the fp32 path
        w = rng.integers(0, 400, (3, n))
    w[:, :3] = np.maximum(w[:, :3], 1)  # every label drawn
    got = weighted_average_precision(scores, labels, w, [0, 2, 1])
    assert got.shape == (len(w), scores.shape[1], 3)
    for r in range(len(w)):
        rows = np.repeat(np.arange(n), w[r])
        brute = average_precision(scores[rows], labels[rows], num_labels=3)
        assert np.array_equal(got[r], brute[:, [0, 2, 1]])  # bit for bit the stage's AP on the resample
        for u in range(scores.shape[1]):
            for i, t in enumerate([0, 2, 1]):
                want = average_precision_score(labels[rows] == t, scores[rows, u].astype(np.float64))
                assert got[r, u, i] == pytest.approx(want, abs=1e-6)  # fp32 quotients, as the stage


def test_unit_weights_give_the_plain_ap_bit_for_bit():
    scores, labels = _data(seed=3)
    got = weighted_average_precision(scores, labels, np.ones((1, len(labels)), dtype=int), [0, 1, 2])[0]
    assert np.array_equal(got, average_precision(scores, labels, num_labels=3))


def test_a_subset_of_sorted_units_gives_the_same_values():
    scores, labels = _data(seed=4)
    lab = torch.as_tensor(labels)
    w = np.random.default_rng(0).integers(1, 3, (4, len(labels)))
    ws = Weights(w, lab, [1], torch.device("cpu"))
    su = SortedUnits(unit_rows(scores, torch.device("cpu")), lab)
    every = su.average_precision(ws, [1])
    rows = torch.tensor([7, 2, 5])
    assert torch.equal(su.average_precision(ws, [1], rows), every[rows])
    assert su.average_precision(ws, [1], torch.tensor([], dtype=torch.int64)).shape == (0, 4, 1)
    ws2 = Weights(w, lab, [1, 2], torch.device("cpu"))
    both = su.average_precision(ws2, [1, 2], rows)
    wanted = torch.tensor([[True, False], [False, False], [True, True]])
    part = su.average_precision(ws2, [1, 2], rows, wanted)
    assert torch.equal(part[wanted.unsqueeze(1).expand_as(part)], both[wanted.unsqueeze(1).expand_as(both)])
    assert (part[~wanted.unsqueeze(1).expand_as(part)] == -1).all()  # pairs not wanted are left at -1


@pytest.mark.parametrize("weights,match", [
    (lambda n: -np.ones((1, n)), "non-negative integer"),
    (lambda n: np.full((1, n), 0.5), "non-negative integer"),
    (lambda n: np.ones((2, n + 1)), r"expected shape \[replicates, 48\]"),
])
def test_bad_weights_are_input_errors(weights, match):
    scores, labels = _data()
    with pytest.raises(InputError, match=match):
        weighted_average_precision(scores, labels, weights(len(labels)), [0])


def test_a_replicate_without_positives_is_an_error():
    scores, labels = _data()
    w = np.ones((2, len(labels)), dtype=int)
    w[1, labels == 2] = 0
    with pytest.raises(InputError, match="replicate 1 draws no row of label 2"):
        weighted_average_precision(scores, labels, w, [2])


def test_non_finite_scores_name_the_unit():
    scores, labels = _data()
    scores = scores.astype(np.float32)
    scores[4, 6] = np.nan
    with pytest.raises(InputError, match="unit 6 has a NaN"):
        weighted_average_precision(scores, labels, np.ones((1, len(labels))), [0])
