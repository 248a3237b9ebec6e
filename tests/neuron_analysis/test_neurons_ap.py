"""average_precision equals sklearn's average_precision_score, ties included."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from neuronmoe.neuron_analysis import average_precision


def sk_ap(scores, labels, L):
    return np.array([[average_precision_score(labels == lang, scores[:, u]) for lang in range(L)] for u in range(scores.shape[1])])


@pytest.mark.parametrize("levels", [2, 3, 7, 1000])
def test_matches_sklearn_integer_labels_with_ties(levels):
    rng = np.random.default_rng(levels)
    N, U, L = 300, 40, 5
    scores = rng.integers(0, levels, (N, U)).astype(np.float32)  # few levels -> heavy ties
    scores[:, 0] = 1.0  # all tied
    labels = rng.integers(0, L, N)
    got = average_precision(scores, labels)
    assert got.shape == (U, L)
    np.testing.assert_allclose(got, sk_ap(scores, labels, L), atol=1e-6, rtol=0)


def test_bool_labels_return_one_column_and_match():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (120, 17)).astype(np.float16)
    labels = rng.random(120) < 0.3
    got = average_precision(scores, labels)
    assert got.shape == (17,)
    ref = [average_precision_score(labels, scores[:, u].astype(np.float64)) for u in range(17)]
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)


def test_torch_input_small_chunks_and_perfect_unit():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 90)
    scores = rng.standard_normal((90, 25)).astype(np.float32)
    scores[:, 3] = (labels == 2) * 5.0  # a perfect detector of language 2
    full = average_precision(scores, labels)
    tiny = average_precision(torch.from_numpy(scores), torch.from_numpy(labels), max_chunk_bytes=1)  # one unit per chunk
    assert isinstance(tiny, torch.Tensor)
    np.testing.assert_allclose(tiny.numpy(), full, atol=1e-12)
    assert full[3, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(full, sk_ap(scores, labels, 3), atol=1e-6)


def test_memmap_input(tmp_path):
    rng = np.random.default_rng(3)
    arr = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=(60, 9))
    arr[:] = rng.integers(0, 3, (60, 9))
    arr.flush()
    labels = np.repeat(np.arange(3), 20)
    got = average_precision(np.load(tmp_path / "x.npy", mmap_mode="r"), labels)
    np.testing.assert_allclose(got, sk_ap(np.asarray(arr, dtype=np.float64), labels, 3), atol=1e-6)


def test_no_positive_is_an_error():
    scores = np.zeros((5, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="no positive"):
        average_precision(scores, np.zeros(5, dtype=bool))
    with pytest.raises(ValueError, match=r"language id\(s\) \[1\] have no samples"):
        average_precision(scores, np.array([0, 0, 2, 2, 0]))
    with pytest.raises(ValueError, match="have no samples"):
        average_precision(scores, np.array([0, 0, 1, 1, 0]), num_labels=3)


def test_bad_shapes_and_nan():
    with pytest.raises(ValueError, match="expected shape"):
        average_precision(np.zeros((5, 2)), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="2-D"):
        average_precision(np.zeros(5), np.array([0, 1, 0, 1, 0]))
    x = np.zeros((4, 3), dtype=np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="unit 2 has a NaN"):
        average_precision(x, np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="floats"):
        average_precision(np.zeros((4, 3)), np.array([0.0, 1.0, 0.0, 1.0]))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    levels=st.integers(1, 5),
    n_langs=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_equals_sklearn(n, levels, n_langs, seed):
    rng = np.random.default_rng(seed)
    n_langs = min(n_langs, n)
    labels = rng.integers(0, n_langs, n)
    labels[:n_langs] = np.arange(n_langs)  # every language present
    scores = rng.integers(0, levels, (n, 4)).astype(np.float32) * rng.choice([-1.5, 0.25, 3.0])
    np.testing.assert_allclose(average_precision(scores, labels), sk_ap(scores, labels, n_langs), atol=1e-6, rtol=0)
