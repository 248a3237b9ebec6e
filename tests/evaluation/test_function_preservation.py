"""Dense base and base + MoE adapter at initialisation score the same, end to end through lm-eval."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("neuronmoe.moe")

from neuronmoe.cli import main  # noqa: E402

SIZES = "cloze_items=8,heldout_docs=2,heldout_max_chars=240,cloze_prefix_words=6,cloze_suffix_words=2"


def _run(model_dir, root, run, *extra):
    rc = main(["evaluate", "--model", str(model_dir), "--output-dir", str(root), "--device", "cpu", "--dtype", "float32",
               "--languages", "en,el", "--local-sizes", SIZES, "--run-name", run, *extra])
    assert rc == 0
    return json.loads((root / "eval" / run / "results.json").read_text())


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_adapter_at_init_matches_dense(tiny_model_dir, data_root):
    import peft

    import neuronmoe  # noqa: F401  (registers the method)
    from neuronmoe.moe import MoEConfig
    from neuronmoe.testing import tiny_model

    # an adapter saved right after get_peft_model: every new expert is a copy of the dense MLP
    epl = [3, 1, 2]
    moe = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=epl, top_k=2))
    moe.save_pretrained(data_root / "adapter")

    dense = _run(tiny_model_dir, data_root, "dense", "--label", "Dense")
    adapted = _run(tiny_model_dir, data_root, "moe", "--adapter", str(data_root / "adapter"), "--label", "MoE-init")

    assert set(dense["results"]) == set(adapted["results"]) == {"udhr_cloze_en", "udhr_cloze_el", "heldout_ppl_en", "heldout_ppl_el"}
    for task, res in dense["results"].items():
        other = adapted["results"][task]
        for key, val in res.items():
            if isinstance(val, float):
                assert other[key] == pytest.approx(val, rel=1e-5, abs=1e-9), (task, key)
    # the adapter run knows its size: 3+1+2 = 6 experts, 2 + 1 new MLP copies plus two routers
    nm = adapted["neuronmoe"]
    assert nm["experts"] == 6 and nm["new_experts"] == 3 and nm["experts_per_layer"] == epl
    h, i = 32, 64
    assert nm["added_params"] == 3 * (3 * h * i) + h * 3 + h * 2
    man = json.loads((data_root / "eval" / "moe" / "manifest.json").read_text())
    assert "adapter_config.json" in man["inputs"]["adapter"]

    # control: the adapter path is really exercised (perturbed new experts change the scores)
    import torch

    with torch.no_grad():
        for name, p in moe.named_parameters():
            if "moe_experts" in name:
                p.add_(torch.randn_like(p) * 0.5)
    moe.save_pretrained(data_root / "adapter-perturbed")
    perturbed = _run(tiny_model_dir, data_root, "moe-perturbed", "--adapter", str(data_root / "adapter-perturbed"))
    bpb = "bits_per_byte,none"
    assert perturbed["results"]["heldout_ppl_el"][bpb] != pytest.approx(dense["results"]["heldout_ppl_el"][bpb], rel=1e-4)

    assert main(["report", str(data_root / "eval" / "dense"), str(data_root / "eval" / "moe"),
                 "--out", str(data_root / "t1")]) == 0
    md = (data_root / "t1.md").read_text().splitlines()
    dense_row = next(r for r in md if r.startswith("| Dense |"))
    moe_row = next(r for r in md if r.startswith("| MoE-init |"))
    assert dense_row.split("|")[4:] == moe_row.split("|")[4:]  # identical scores, column by column
    assert moe_row.split("|")[2].strip() == "6"
