"""The streaming driver on a tiny model with forced routing, resume after a kill, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neuronmoe.analysis.expert_ap import expert_units, summarize
from neuronmoe.analysis.runner import analyse, cleanup, read_samples


@pytest.fixture(scope="module")
def tiny():
    from neuronmoe.testing import byte_tokenizer, tiny_model

    return tiny_model("llama"), byte_tokenizer()


@pytest.fixture(autouse=True)
def _forced(forced_capture):
    global make_forced_capture
    make_forced_capture = forced_capture


def _run(tiny, samples_dir, work, epl, policy="exclude", dense=False, capture=None, batch_size=3):
    model, tok = tiny
    samples = read_samples(samples_dir, ["en", "el"])
    lay = expert_units(model.config.intermediate_size, model.config.hidden_size)
    cap = capture or make_forced_capture(tok, [i for i, e in enumerate(epl) if e > 1])
    res, facts = analyse(model, tok, samples, ["en", "el"], epl, lay, work, batch_size=batch_size,
                         policy=policy, dense_layers=dense, capture=cap)
    return {(r.layer, r.name): r for r in res}, summarize(res, ["en", "el"], lay), lay, facts


def test_forced_greek_expert_is_greek_specific(tiny, samples_dir, tmp_path):
    res, summ, lay, facts = _run(tiny, samples_dir, tmp_path / "w1", [1, 3, 1], policy="bottom")
    assert facts["sentences"] == 16 and set(res) == {(1, "base"), (1, "exp_0"), (1, "exp_1")}
    greek = next(s for s in summ if s["expert"] == "exp_0")
    # exp_0 sees only non-ASCII (Greek-letter) tokens: no English sentence reaches it
    assert greek["coverage"] == {"en": 0.0, "el": 1.0}
    assert greek["high_ap"]["el"] == lay.total and greek["high_ap"]["en"] == 0
    np.testing.assert_allclose(res[(1, "exp_0")].ap[:, 1], 1.0)
    # exp_1 (ASCII tokens: spaces in Greek sentences too) sees both languages
    ascii_exp = next(s for s in summ if s["expert"] == "exp_1")
    assert ascii_exp["coverage"] == {"en": 1.0, "el": 1.0}
    assert ascii_exp["high_ap"]["el"] < lay.total


def test_exclude_policy_does_not_count_routing_as_specificity(tiny, samples_dir, tmp_path):
    res, summ, lay, _ = _run(tiny, samples_dir, tmp_path / "w2", [1, 3, 1], policy="exclude")
    greek = next(s for s in summ if s["expert"] == "exp_0")
    assert greek["high_ap"] == {"en": 0, "el": 0} and greek["low_coverage"] == ["en"]
    assert np.isnan(res[(1, "exp_0")].ap).all()


def test_base_expert_equals_dense_analysis(tiny, samples_dir, tmp_path):
    moe, _, _, _ = _run(tiny, samples_dir, tmp_path / "w3", [1, 3, 1], dense=True)
    dense, _, _, facts = _run(tiny, samples_dir, tmp_path / "w4", [1, 1, 1], dense=True, batch_size=5)
    assert facts["dense_layers"] == [0, 1, 2] and (0, "base") in moe and (2, "base") in moe
    for li in range(3):
        np.testing.assert_allclose(moe[(li, "base")].ap, dense[(li, "base")].ap, atol=1e-6)
    assert not np.isnan(dense[(1, "base")].ap).any()


def test_resume_after_kill(tiny, samples_dir, tmp_path):
    model, tok = tiny
    inner = make_forced_capture(tok, [1])
    calls = {"n": 0}

    def dying(m):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return inner(m)

    with pytest.raises(KeyboardInterrupt):
        _run(tiny, samples_dir, tmp_path / "w5", [1, 3, 1], capture=dying)
    prog = json.loads((tmp_path / "w5" / "progress.json").read_text())
    assert prog["rows_done"] == 6
    counted = {"n": 0}

    def counting(m):
        counted["n"] += 1
        return inner(m)

    resumed, _, _, _ = _run(tiny, samples_dir, tmp_path / "w5", [1, 3, 1], capture=counting)
    assert counted["n"] == 4  # batches 3..6 of 3 sentences (16 sentences)
    clean, _, _, _ = _run(tiny, samples_dir, tmp_path / "w6", [1, 3, 1])
    for k in clean:
        np.testing.assert_allclose(resumed[k].ap, clean[k].ap, atol=1e-6, equal_nan=True)
    cleanup(tmp_path / "w5")
    assert not (tmp_path / "w5").exists()


def test_cli_dense_model(tiny_model_dir, samples_dir, monkeypatch, capsys):
    from neuronmoe.cli import main

    out = samples_dir.parent.parent
    argv = ["analyze-experts", "--output-dir", str(out), "--model", str(tiny_model_dir), "--adapter", "none",
            "--target", "el", "--batch-size", "8"]
    assert main(argv) == 0
    ana = out / "analysis"
    for f in ("expert_ap.json", "expert_ap_el.csv", "expert_ap_el.md", "ap.npz", "expert_heatmap_el.png",
              "expert_heatmap_el.pdf", "manifest.json"):
        assert (ana / f).exists(), f
    assert not (ana / "activations").exists()
    data = json.loads((ana / "expert_ap.json").read_text())
    assert [e["layer"] for e in data["experts"]] == [0, 1, 2] and data["units_per_expert"] == 64 + 64 + 32
    man = json.loads((ana / "manifest.json").read_text())
    assert set(man["files"]) >= {"expert_ap.json", "ap.npz"} and man["counts"]["sentences"] == 16
    capsys.readouterr()
    assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(argv + ["--threshold", "0.8"]) == 0  # a changed option recomputes
    assert json.loads((ana / "manifest.json").read_text())["config"]["threshold"] == 0.8


def test_forward_stops_after_the_last_analysed_layer(tiny, samples_dir, tmp_path):
    """Without dense layers only the MoE layers are read: the layers after the last one do not run, and the results
    are those of the whole forward."""
    import torch

    from neuronmoe.analysis import runner

    model, _ = tiny
    ran = []
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(model.model.layers)]
    try:
        short, _, _, _ = _run(tiny, samples_dir, tmp_path / "s", [1, 3, 1])
        assert ran and max(ran) == 1  # layer 2 never ran
        ran.clear()
        orig = runner._stop_after
        runner._stop_after = lambda m, layer: []  # the whole forward, for reference
        try:
            full, _, _, _ = _run(tiny, samples_dir, tmp_path / "f", [1, 3, 1])
        finally:
            runner._stop_after = orig
        assert max(ran) == 2
    finally:
        for h in hooks:
            h.remove()
    assert set(short) == set(full)
    for k in full:
        np.testing.assert_allclose(short[k].ap, full[k].ap, equal_nan=True)
    assert torch.is_grad_enabled()


class _CharTokenizer:
    """One token per byte, as SmolLM2 reads Greek: Greek sentences are twice as long in tokens as in characters."""

    def __call__(self, texts, truncation=True, max_length=None):
        ids = [list(t.encode("utf-8"))[:max_length] for t in texts]
        return {"input_ids": ids}


def test_sentences_are_batched_by_token_count_not_characters():
    from neuronmoe.analysis.runner import _by_token_length

    texts = ["αβγδεζηθ", "abcdefghij", "αβγ", "abcdefghijklmnop", "αβγδεζ"]  # 16, 10, 6, 16, 12 bytes
    order = _by_token_length(_CharTokenizer(), texts, max_length=256)
    lengths = [len(texts[i].encode("utf-8")) for i in order]
    assert lengths == sorted(lengths) and order == [2, 1, 4, 0, 3]  # ties by index; by characters 0 would come before 1
    assert _by_token_length(_CharTokenizer(), texts, max_length=8) == [2, 0, 1, 3, 4]  # truncation counts
