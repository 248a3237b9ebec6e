"""A language the paper never ran, through lm-eval, in process, on the embedded model, against offline replicas:
Swahili (Belebele, XCOPA, XStoryCloze, Global-MMLU: every family lm-eval has for it) and Hindi (Devanagari:
Belebele and Okapi's ARC, HellaSwag and MMLU), dense and with an MoE adapter, as the paper cells run
(test_paper_replicas.py). The cells are the ones ``--suite paper`` resolves for them (eval_families.yaml)."""
from __future__ import annotations

import json

import pytest
from test_paper_replicas import FAST, adapter_dir, replicas  # noqa: F401  (module fixtures)

from neuronmoe.cli import main

LANGS = "sw,hi"
EXPECTED = {"belebele/sw": "belebele_swh_Latn", "xcopa/sw": "xcopa_sw", "xstorycloze/sw": "xstorycloze_sw",
            "global_mmlu/sw": "global_mmlu_full_sw", "belebele/hi": "belebele_hin_Deva", "arc/hi": "arc_hi",
            "hellaswag/hi": "hellaswag_hi", "mmlu/hi": "m_mmlu_hi"}


@pytest.mark.slow
def test_swahili_and_hindi_run_dense_and_adapter(embedded_model_dir, replicas, adapter_dir, fast_replica_loading,  # noqa: F811
                                                 tmp_path):
    from neuronmoe.evaluation.report import estimates
    from neuronmoe.evaluation.suites import resolve_suite
    from neuronmoe.evaluation.table import build_table, load_run

    assert {s.key: s.task for s in resolve_suite("paper", LANGS.split(","))} == EXPECTED
    common = ["evaluate", "--model", str(embedded_model_dir), "--output-dir", str(tmp_path), "--suite", "paper",
              "--languages", LANGS, "--dataset-replicas", str(replicas), *FAST]
    assert main([*common, "--run-name", "dense", "--label", "Dense", "--log-samples"]) == 0
    assert main([*common, "--run-name", "moe", "--label", "NeuronMoE-S1", "--adapter", str(adapter_dir), "--log-samples"]) == 0
    runs = [load_run(tmp_path / "eval" / r) for r in ("dense", "moe")]
    for run in runs:
        nm = run["neuronmoe"]
        assert nm["complete"] and set(nm["cells"]) == set(EXPECTED)
        assert all(v["status"] == "done" for v in nm["cells"].values())
        assert set(nm["datasets"]) >= {"cambridgeltl/xcopa", "juletxara/xstory_cloze", "CohereForAI/Global-MMLU",
                                       "alexandrainst/m_arc", "facebook/belebele"}
    table = build_table(runs)
    est = estimates(table, runs)
    for row in table.rows:
        for key in EXPECTED:
            e = est[(row["model"], key)]
            assert e.value is not None and 0.0 <= e.value <= 1.0 and e.n and e.n >= 1, (row["model"], key)
    assert est[("Dense", "global_mmlu/sw")].n == 57  # a group: one item per subject (limit 1)
    res = runs[0]
    assert res["n-shot"]["xcopa_sw"] == 0 and res["n-shot"]["global_mmlu_full_sw_anatomy"] == 5 and res["n-shot"]["arc_hi"] == 25

    def lls(run, cell):
        rows = [json.loads(x) for x in (tmp_path / "eval" / run / "samples" / f"{cell}.jsonl").read_text().splitlines()]
        return {r["doc_hash"]: [float(c[0]) for c in r["filtered_resps"]] for r in rows}

    for cell in ("xcopa__sw", "arc__hi"):  # the adapter really ran: the same items, other log-likelihoods
        dense_ll, moe_ll = lls("dense", cell), lls("moe", cell)
        assert dense_ll.keys() == moe_ll.keys() and dense_ll
        assert max(abs(a - b) for h in dense_ll for a, b in zip(dense_ll[h], moe_ll[h])) > 1e-4
    assert main(["report", str(tmp_path / "eval" / "dense"), str(tmp_path / "eval" / "moe"), "--out", str(tmp_path / "t")]) == 0
    head = (tmp_path / "t.md").read_text().splitlines()[0]
    for col in ("XCOPA SW", "XStoryCloze SW", "Global-MMLU SW", "Belebele HI", "ARC HI"):
        assert col in head
