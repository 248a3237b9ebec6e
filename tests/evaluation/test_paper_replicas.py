"""The whole paper suite through lm-eval, in process, on the embedded model, against offline replicas.

Every (benchmark, language) cell of Table 1's layout (en, el, tr, hu and the paper's Table 11
languages bn, ne) runs for the dense model and for an MoE adapter; the replicas
(``replicas.py``) have the real datasets' configs, splits, fields and quirks, and ``--dataset-replicas``
points every task (ours and lm-eval's) at them without touching a task YAML. A handful of items
per cell: the point is the code path, not the score.
"""
from __future__ import annotations

import json

import pytest

from neuronmoe.cli import main

LANGS = "en,el,tr,hu,bn,ne"
FAST = ["--limit", "1", "--max-length", "48", "--device", "cpu", "--dtype", "float32", "--batch-size", "16"]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    from support.replicas import build_replicas

    return build_replicas(tmp_path_factory.mktemp("replicas"))


@pytest.fixture(scope="module")
def adapter_dir(embedded_model_dir, tmp_path_factory):
    """An MoE adapter for the embedded model, its new experts nudged off the dense MLP (so scores move)."""
    import peft
    import torch

    import neuronmoe  # noqa: F401  (registers the method)
    from neuronmoe.models import load_model
    from neuronmoe.moe import MoEConfig

    base = load_model(str(embedded_model_dir), dtype="float32", device="cpu")
    n = base.config.num_hidden_layers
    moe = peft.get_peft_model(base, MoEConfig(experts_per_layer=[3] + [1] * (n - 2) + [2], top_k=2))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in moe.named_parameters():
            if "moe_experts" in name:
                p.add_(torch.randn_like(p) * 0.02)
    out = tmp_path_factory.mktemp("moe") / "adapter"
    moe.save_pretrained(out)
    return out


@pytest.mark.slow
def test_every_cell_of_the_paper_suite_runs_dense_and_adapter(embedded_model_dir, replicas, adapter_dir, fast_replica_loading, tmp_path):
    from neuronmoe.evaluation.report import estimates
    from neuronmoe.evaluation.suites import resolve_suite
    from neuronmoe.evaluation.table import build_table, load_run

    common = ["evaluate", "--model", str(embedded_model_dir), "--output-dir", str(tmp_path), "--suite", "paper",
              "--languages", LANGS, "--dataset-replicas", str(replicas), *FAST]
    assert main([*common, "--run-name", "dense", "--label", "Dense", "--log-samples"]) == 0
    assert main([*common, "--run-name", "moe", "--label", "NeuronMoE-S1", "--adapter", str(adapter_dir), "--log-samples"]) == 0

    cells = {s.key for s in resolve_suite("paper", LANGS.split(","))}
    assert len(cells) == 4 * 6
    runs = [load_run(tmp_path / "eval" / r) for r in ("dense", "moe")]
    for run in runs:
        nm = run["neuronmoe"]
        assert nm["complete"] and set(nm["cells"]) == cells
        assert all(v["status"] == "done" for v in nm["cells"].values())
        assert nm["dataset_replicas"] == str(replicas)
        assert set(nm["datasets"]) >= {"ilsp/arc_greek", "malhajar/mmlu-tr", "alexandrainst/m_hellaswag", "facebook/belebele"}
    table = build_table(runs)
    assert {f"{c['benchmark']}/{c['lang']}" for c in table.columns} == cells
    est = estimates(table, runs)
    for row in table.rows:  # a number (and its standard error where items allow one) in every cell
        for key in cells:
            e = est[(row["model"], key)]
            assert e.value is not None and 0.0 <= e.value <= 1.0, (row["model"], key)
            assert e.n and e.n >= 1, (row["model"], key)
    # the MMLU cells are groups: one item per subject (limit 1), 57 subjects for en/el/tr
    assert est[("Dense", "mmlu/tr")].n == 57 and est[("Dense", "mmlu/hu")].n == 1
    # Turkish MMLU ran 4-shot (its dev split has 4 rows), English 5-shot
    res = runs[0]
    assert res["n-shot"]["mmlu_tr_anatomy"] == 4 and res["n-shot"]["mmlu_anatomy"] == 5
    assert res["n-shot"]["arc_el"] == 25 and res["n-shot"]["belebele_ell_Grek"] == 0
    # the adapter run really ran the adapter: the same items, but the experts were nudged, so the
    # log-likelihoods lm-eval logged for them moved
    def lls(run):
        rows = [json.loads(x) for x in (tmp_path / "eval" / run / "samples" / "arc__el.jsonl").read_text().splitlines()]
        return {r["doc_hash"]: [float(c[0]) for c in r["filtered_resps"]] for r in rows}

    dense_ll, moe_ll = lls("dense"), lls("moe")
    assert dense_ll.keys() == moe_ll.keys() and dense_ll
    assert max(abs(a - b) for h in dense_ll for a, b in zip(dense_ll[h], moe_ll[h])) > 1e-4
    # the report renders every cell with its uncertainty and the paired tests against Dense
    assert main(["report", str(tmp_path / "eval" / "dense"), str(tmp_path / "eval" / "moe"), "--out", str(tmp_path / "t1")]) == 0
    md = (tmp_path / "t1.md").read_text()
    assert "| Dense | - | - |" in md and "| NeuronMoE-S1 | 33 |" in md and "Paired tests:" in md  # 3 + 28 x 1 + 2 experts
    head = md.splitlines()[0]
    for col in ("ARC EN", "ARC NE", "Belebele BN", "HellaSwag HU", "MMLU TR"):
        assert col in head
    # a rerun of a finished run loads nothing and changes nothing
    before = (tmp_path / "eval" / "dense" / "results.json").read_text()
    assert main([*common, "--run-name", "dense", "--label", "Dense"]) == 0
    assert json.loads((tmp_path / "eval" / "dense" / "results.json").read_text())["results"] == json.loads(before)["results"]
