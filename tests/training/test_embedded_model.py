"""The embedded default (smollm2-135m, en -> el): Greek perplexity falls after stage 1, English stays
within a bound of the dense model after stage 2. A shortened CPU profile keeps it to about a minute.
"""
from __future__ import annotations

import pytest
from support.builders import write_allocation
from train_helpers import run_training

#: English held-out perplexity after stage 2 must stay within this factor of the dense model's
EN_PPL_BOUND = 1.15
#: an allocation of the NeuronMoE shape for 30 layers (experts at both ends), 51 experts
EPL = [6, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 4, 1, 4, 2, 2, 4, 4]
SHORT = ["cutoff_len=64", "per_device_train_batch_size=4", "logging_steps=4", "report_to=none",
         "heldout_max_tokens=512", "heldout_block_len=256", "heldout_languages=[el, en]"]


@pytest.mark.slow
def test_stage1_then_stage2_on_the_embedded_model(tmp_path, data_dir, embedded_model_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "data").symlink_to(data_dir)
    write_allocation(out, EPL, name="neuronmoe", model_dir=embedded_model_dir)
    common = dict(model="smollm2-135m", output_dir=str(out), allocation="neuronmoe", profile="cpu",
                  cache_dir=str(tmp_path / "cache"))
    s1 = run_training(1, sets=SHORT + ["max_steps=8", "save_steps=8"], **common)
    el = s1["perplexity"]["el"]
    assert el["perplexity"] < 0.9 * el["dense_perplexity"], s1["perplexity"]
    # same base model and held-out texts: the dense perplexities of stage 1 serve stage 2 as well
    s2 = run_training(2, sets=SHORT + ["max_steps=4", "save_steps=4", "heldout_dense=false"], **common)
    dense = {lang: r["dense_perplexity"] for lang, r in s1["perplexity"].items()}
    assert s2["perplexity"]["en"]["perplexity"] <= EN_PPL_BOUND * dense["en"], (s2["perplexity"], dense)
    assert s2["perplexity"]["el"]["perplexity"] < 0.9 * dense["el"], (s2["perplexity"], dense)
