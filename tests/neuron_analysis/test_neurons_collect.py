"""Batched, hooked, on-device pooling equals per-sentence pooling; resume; NaN/inf errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuronmoe.neuron_analysis.collect import PROGRESS, activation_matrix, collect_activations
from neuronmoe.neuron_analysis.units import UnitLayout

TEXTS = ["hello there", "a", "the quick brown fox jumps", "γειά σου κόσμε", "xyz " * 9, "ok ok"]


def _ids(tok, texts=TEXTS, bos=True):
    return [([tok.bos_token_id] if bos else []) + tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def _reference(model, ids, layout, pool, skip_bos=False):
    """Unbatched: every projection's full output captured, pooled in float64."""
    from neuronmoe.neuron_analysis.collect import _hook_targets

    rows = []
    for seq in ids:
        cap = {}
        hs = [m.register_forward_hook(lambda _m, _i, o, off=off, cap=cap: cap.__setitem__(off, o[0].double()))
              for (_l, _n, m, off, _w) in _hook_targets(model, layout)]
        with torch.no_grad():
            model(input_ids=torch.tensor([seq]))
        for h in hs:
            h.remove()
        row = np.zeros(layout.total)
        for off, out in cap.items():
            x = out[1:] if skip_bos else out
            v = x.mean(0) if pool == "mean" else (x > 0).double().mean(0) if pool == "pos_frac" else x.amax(0)
            row[off : off + out.shape[-1]] = v.numpy()
        rows.append(row)
    return np.stack(rows)


@pytest.mark.parametrize("pool,batch_size,skip", [("mean", 4, False), ("max", 3, False), ("mean", 2, True), ("pos_frac", 4, False)])
def test_batched_pooling_equals_per_sentence(tiny_llama, tiny_tok, tmp_path, pool, batch_size, skip):
    layout = UnitLayout.for_model(tiny_llama.config, metric="lape" if pool == "pos_frac" else "ap")
    ids = _ids(tiny_tok)
    res = collect_activations(tiny_llama, ids, tmp_path, layout, pool=pool, batch_size=batch_size,
                              skip_first=[skip] * len(ids), progress=False)
    assert res["complete"] and res["n_tokens"].tolist() == [len(x) - skip for x in ids]
    got = activation_matrix(tmp_path, layout.num_layers).astype(np.float64)
    assert got.shape == (len(ids), layout.total)
    ref = _reference(tiny_llama, ids, layout, pool, skip_bos=skip)
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3)
    assert np.abs(got).sum() > 0


def test_resume_after_kill_equals_uninterrupted(tiny_llama, tiny_tok, tmp_path):
    layout = UnitLayout.for_model(tiny_llama.config)
    ids = _ids(tiny_tok, TEXTS * 2)
    full = collect_activations(tiny_llama, ids, tmp_path / "full", layout, batch_size=2, progress=False)
    assert full["complete"]
    part = tmp_path / "part"
    r1 = collect_activations(tiny_llama, ids, part, layout, batch_size=2, progress=False, stop_after=2)
    assert not r1["complete"]
    prog = json.loads((part / PROGRESS).read_text())
    assert prog["batches_done"] == 2 and not prog["complete"]
    # a kill in the middle of batch 3: rows of that batch half-written with garbage
    mm = np.load(part / "layer_000.npy", mmap_mode="r+")
    mm[:] = np.where(np.asarray(mm) == 0, 7.0, mm)
    mm.flush()
    del mm
    calls = []
    h = tiny_llama.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    r2 = collect_activations(tiny_llama, ids, part, layout, batch_size=2, progress=False)
    h.remove()
    assert r2["complete"] and len(calls) == r2["num_batches"] - 2  # only the missing batches ran
    a = activation_matrix(tmp_path / "full", layout.num_layers)
    b = activation_matrix(part, layout.num_layers)
    np.testing.assert_array_equal(a, b)


def test_other_config_starts_afresh(tiny_llama, tiny_tok, tmp_path):
    layout = UnitLayout.for_model(tiny_llama.config)
    ids = _ids(tiny_tok)
    collect_activations(tiny_llama, ids, tmp_path, layout, batch_size=2, progress=False, stop_after=1)
    calls = []
    h = tiny_llama.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    r = collect_activations(tiny_llama, ids, tmp_path, layout, pool="max", batch_size=2, progress=False)
    h.remove()
    assert r["complete"] and len(calls) == r["num_batches"]  # nothing reused from the mean run


@pytest.mark.parametrize("value", [float("nan"), 1e6])
def test_non_finite_or_fp16_overflow_names_layer_and_module(tiny_llama, tiny_tok, tmp_path, value):
    from neuronmoe.neuron_analysis import NonFiniteActivationError

    with torch.no_grad():
        tiny_llama.model.layers[1].mlp.down_proj.weight[3, :] = value
    layout = UnitLayout.for_model(tiny_llama.config, ["gate_proj", "down_proj"])
    with pytest.raises(NonFiniteActivationError, match=r"layer 1, module down_proj, unit 3"):
        collect_activations(tiny_llama, _ids(tiny_tok), tmp_path, layout, batch_size=2, progress=False,
                            labels=["en"] * len(TEXTS))
    assert not json.loads((tmp_path / PROGRESS).read_text())["complete"]  # the bad batch was never recorded
