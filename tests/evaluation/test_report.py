"""Uncertainty in the report: standard errors, paired tests, significance marks, the paper beside ours."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neuronmoe.evaluation import stats
from neuronmoe.evaluation.report import paired, paper_comparison, render, report_markdown
from neuronmoe.evaluation.table import build_table


# ------------------------------------------------------------------------------------------ stats
@pytest.mark.parametrize("k,n", [(0, 0), (0, 5), (3, 10), (7, 10), (40, 100), (480, 1000), (6000, 12500)])
def test_exact_binomial_p_matches_scipy(k, n):
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = 1.0 if n == 0 else scipy_stats.binomtest(k, n, 0.5).pvalue
    assert stats.binom_two_sided_p(k, n) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_counts_discordant_pairs_only():
    a = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
    b = [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    r = stats.mcnemar(a, b)
    assert (r.a_only, r.b_only, r.n) == (6, 1, 10) and r.diff == pytest.approx(0.5)
    assert r.p == pytest.approx(stats.binom_two_sided_p(1, 7))
    assert stats.mcnemar(a, a).p == 1.0 and stats.mcnemar(a, a).diff == 0.0
    with pytest.raises(ValueError, match="pair them first"):
        stats.mcnemar([1, 0], [1])


def test_mean_se_is_lm_evals_closed_form():
    x = [1, 0, 1, 1, 0, 1, 1, 0]
    assert stats.mean_se(x) == pytest.approx(np.std(x, ddof=1) / math.sqrt(len(x)))
    assert stats.mean_se([1]) is None


def test_bootstrap_ratio_agrees_with_the_closed_form_for_a_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=400)
    value, se, (lo, hi) = stats.bootstrap_ratio(x, np.ones_like(x))
    assert value == pytest.approx(x.mean())
    assert se == pytest.approx(x.std(ddof=1) / math.sqrt(x.size), rel=0.1)
    assert lo < value < hi
    # a constant ratio has no sampling error at all
    d = rng.uniform(1, 5, size=50)
    assert stats.bootstrap_ratio(3 * d, d)[1] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------- report
def _run(tmp_path, label, cloze, bpb_ll, experts=None):
    """A run folder like `neuronmoe evaluate` writes: results.json + items/ for two local cells."""
    d = tmp_path / label
    (d / "items").mkdir(parents=True)
    specs = [
        {"task": "udhr_cloze_el", "benchmark": "udhr_cloze", "lang": "el", "shots": 0, "metric": "acc", "label": "UDHR-cloze",
         "lower_is_better": False},
        {"task": "heldout_ppl_el", "benchmark": "heldout_ppl", "lang": "el", "shots": 0, "metric": "bits_per_byte",
         "label": "Held-out BPB", "lower_is_better": True},
    ]
    nbytes = [300 + 10 * i for i in range(len(bpb_ll))]
    (d / "items" / "udhr_cloze__el.jsonl").write_text("".join(
        json.dumps({"task": "udhr_cloze_el", "doc_id": i, "doc_hash": f"h{i}", "acc": float(v)}) + "\n" for i, v in enumerate(cloze)))
    (d / "items" / "heldout_ppl__el.jsonl").write_text("".join(
        json.dumps({"task": "heldout_ppl_el", "doc_id": i, "doc_hash": f"d{i}", "bits_per_byte": [ll, b]}) + "\n"
        for i, (ll, b) in enumerate(zip(bpb_ll, nbytes))))
    acc = float(np.mean(cloze))
    bpb = -sum(bpb_ll) / sum(nbytes) / math.log(2)
    results = {
        "results": {"udhr_cloze_el": {"acc,none": acc, "acc_stderr,none": float(np.std(cloze, ddof=1) / math.sqrt(len(cloze)))},
                    "heldout_ppl_el": {"bits_per_byte,none": bpb, "bits_per_byte_stderr,none": "N/A"}},
        "neuronmoe": {"label": label, "experts": experts, "added_params": 0, "tasks": specs,
                      "cells": {"udhr_cloze/el": {"status": "done", "items": "items/udhr_cloze__el.jsonl"},
                                "heldout_ppl/el": {"status": "done", "items": "items/heldout_ppl__el.jsonl"}}},
    }
    (d / "results.json").write_text(json.dumps(results))
    from neuronmoe.evaluation.table import load_run

    return load_run(d)


@pytest.fixture
def three_runs(tmp_path):
    rng = np.random.default_rng(3)
    n = 200
    truth = rng.random(n) < 0.5
    dense = truth.astype(float)
    better = dense.copy()
    better[np.flatnonzero(dense == 0)[:30]] = 1.0  # 30 more items right, none lost
    close = dense.copy()
    close[np.flatnonzero(dense == 0)[:2]] = 1.0  # 2 more: not significant
    ll = list(-rng.uniform(200, 400, size=40))
    return [
        _run(tmp_path, "Dense", dense, ll),
        _run(tmp_path, "LayerMoE-S1", close, [x * 0.999 for x in ll], experts=84),
        _run(tmp_path, "NeuronMoE-S1", better, [x * 0.95 for x in ll], experts=49),  # 5% fewer nats: lower BPB
    ]


def test_paired_tests_and_marks(three_runs):
    table = build_table(three_runs)
    col = {f"{c['benchmark']}/{c['lang']}": c for c in table.columns}
    r = paired(three_runs[2], three_runs[0], col["udhr_cloze/el"])
    assert r.test.startswith("McNemar") and (r.a_only, r.b_only) == (30, 0) and r.significant
    r = paired(three_runs[1], three_runs[0], col["udhr_cloze/el"])
    assert (r.a_only, r.b_only) == (2, 0) and not r.significant
    r = paired(three_runs[2], three_runs[0], col["heldout_ppl/el"])
    assert r.test.startswith("paired permutation") and r.diff < 0 and r.significant
    md = render(table, three_runs)
    table_lines = md.split("\n\n")[0].splitlines()  # the Table-1 block (the list of differences follows)
    rows = {line.split("|")[1].strip(): line for line in table_lines[2:]}
    assert "▲D" in rows["NeuronMoE-S1"] and "▲L" in rows["NeuronMoE-S1"]  # better than both, on both cells
    assert rows["NeuronMoE-S1"].count("▲") == 4 and "▼" not in rows["NeuronMoE-S1"]
    assert "▲" not in rows["Dense"] and "±" in rows["Dense"]
    assert "D = Dense, L = LayerMoE-S1" in md and "Paired tests:" in md and "| NeuronMoE-S1 | Dense | udhr_cloze/el (acc) | +15.00 pts (better)" in md  # noqa: E501 (an exact message/data row)
    # a bits-per-byte difference in thousandths with the interval of its permutation test; a Monte Carlo p at
    # its floor (2 / 2001) as the bound it is
    bpb_line = next(line for line in md.splitlines() if line.startswith("| NeuronMoE-S1 | Dense | heldout_ppl/el"))
    r = paired(three_runs[2], three_runs[0], col["heldout_ppl/el"])
    assert f"| {r.diff:+.3f} [{r.ci[0]:+.3f}, {r.ci[1]:+.3f}] (better) | < 0.001 | 40 | paired permutation (2000 sign flips) |" in bpb_line
    # every test is listed with its p-value, the ones that are not significant too
    close = next(line for line in md.splitlines() if line.startswith("| LayerMoE-S1 | Dense | udhr_cloze/el"))
    assert "(not significant) | 0.5 | 200 | McNemar (exact) |" in close
    # accuracy ± closed form in points; bits per byte ± bootstrap over documents
    dense_acc = three_runs[0]["results"]["udhr_cloze_el"]
    assert f"{100 * dense_acc['acc,none']:.2f} ± {100 * dense_acc['acc_stderr,none']:.2f}" in rows["Dense"]


def test_items_must_match_to_be_paired(three_runs, tmp_path):
    other = _run(tmp_path, "Other", [1.0] * 200, [-300.0] * 40)
    (tmp_path / "Other" / "items" / "udhr_cloze__el.jsonl").write_text("".join(
        json.dumps({"task": "udhr_cloze_el", "doc_id": i, "doc_hash": f"other{i}", "acc": 1.0}) + "\n" for i in range(200)))
    table = build_table([three_runs[0], other])
    col = next(c for c in table.columns if c["benchmark"] == "udhr_cloze")
    assert paired(other, three_runs[0], col) is None  # same ids, different documents: no test


def _mmlu_run(tmp_path, label, acc):
    d = tmp_path / label.replace(" ", "_")
    d.mkdir()
    spec = {"task": "mmlu_el", "benchmark": "mmlu", "lang": "el", "shots": 5, "metric": "acc", "label": "MMLU"}
    se = math.sqrt(acc * (1 - acc) / 999)
    (d / "results.json").write_text(json.dumps({"results": {"mmlu_el": {"acc,none": acc, "acc_stderr,none": se}},
                                                "neuronmoe": {"label": label, "tasks": [spec]}}))
    from neuronmoe.evaluation.table import load_run

    return load_run(d)


def test_paper_comparison_reads_each_gap_by_what_can_cause_it(tmp_path):
    """Same items as the paper: a Dense gap beyond rounding is a protocol difference, a trained row's gap is
    training-seed variance, estimated only from several seeds; no item-sampling standard errors of the gap."""
    paper = {"rows": {"Dense": {"mmlu/el": 41.17}, "NeuronMoE-S1": {"mmlu/el": 42.00}}, "sources": {"Dense": "Table 1"}}
    runs = [_mmlu_run(tmp_path, "Dense", 0.45)]
    md = paper_comparison(build_table(runs), runs, paper)
    line = next(x for x in md.splitlines() if x.startswith("| Dense | mmlu/el"))
    assert "| 41.17 | +3.83 | protocol difference: investigate (same model, same items) | Table 1 |" in line
    assert "in SE" not in md and "same items" in md
    (tmp_path / "b").mkdir()
    runs = [_mmlu_run(tmp_path / "b", "Dense", 0.41174)]
    line = next(x for x in paper_comparison(build_table(runs), runs, paper).splitlines() if x.startswith("| Dense |"))
    assert "| +0.00 | within rounding |" in line  # 41.174 prints as 41.17: no gap to explain
    one = [_mmlu_run(tmp_path, "NeuronMoE-S1", 0.43)]
    line = next(x for x in paper_comparison(build_table(one), one, paper).splitlines() if x.startswith("| NeuronMoE-S1 |"))
    assert "| +1.00 | seed variance not estimated (one seed) |" in line
    seeds = [_mmlu_run(tmp_path, f"NeuronMoE-S1 (seed {i})", a) for i, a in enumerate((0.43, 0.44, 0.45))]
    line = next(x for x in paper_comparison(build_table(seeds), seeds, paper).splitlines() if x.startswith("| NeuronMoE-S1 |"))
    assert "| 44.00 | 42.00 | +2.00 | 3 seeds, s.d. 1.00 pts: gap +2.0 seed s.d. |" in line  # the mean of the seeds
    full, _ = report_markdown([_mmlu_run(tmp_path / "b", "x", 0.4)], with_paper=True)
    assert "## Beside the paper" in full and "No run label matches" in full


def test_paper_tables_hold_the_published_numbers():
    from neuronmoe.evaluation.report import load_paper_tables

    rows = load_paper_tables()["rows"]
    assert rows["NeuronMoE-S1"]["arc/el"] == 34.16 and rows["LayerMoE-S1"]["belebele/el"] == 66.33
    assert rows["Dense"]["hellaswag/hu"] == 44.63 and rows["NeuronMoE-S1 (tr)"]["mmlu/tr"] == 43.37
    assert rows["NeuronMoE-S1 (bn)"]["belebele/bn"] == 46.89 and len(rows["Dense"]) == 24


def test_quoted_rows_are_shown_never_compared(tmp_path):
    """Table 3's LayerMoE rows are Zhang et al.'s joint el+hu+tr model with LayerMoE's recipe: our Table 7-recipe
    LayerMoE-S1 (tr) is shown beside them, not as a difference, and the footnote says why."""
    from neuronmoe.evaluation.table import load_run

    d = tmp_path / "layermoe-tr"
    d.mkdir()
    spec = {"task": "arc_tr", "benchmark": "arc", "lang": "tr", "shots": 25, "metric": "acc_norm", "label": "ARC"}
    (d / "results.json").write_text(json.dumps({"results": {"arc_tr": {"acc_norm,none": 0.35, "acc_norm_stderr,none": 0.014}},
                                                "neuronmoe": {"label": "LayerMoE-S1 (tr)", "tasks": [spec]}}))
    runs = [load_run(d)]
    md = paper_comparison(build_table(runs), runs)
    line = next(x for x in md.splitlines() if x.startswith("| LayerMoE-S1 (tr) | arc/tr"))
    assert "| 36.55 |" in line and "not compared (unlike runs*)" in line and "-1.55" not in line
    assert "* LayerMoE-S1 (tr): the paper's numbers are quoted, not reproduced here" in md and "joint" in md


def test_cloze_baselines_are_shown_on_the_items_each_run_evaluated(three_runs, tmp_path):
    from neuronmoe.evaluation.report import baselines_section

    def add_baselines(label, unigram, prefix="h"):
        p = tmp_path / label / "items" / "udhr_cloze__el.jsonl"
        rows = [json.loads(x) for x in p.read_text().splitlines()]
        for i, r in enumerate(rows):
            r["baselines"] = {"chance": 0.25, "unigram": unigram[i % len(unigram)]}
            r["doc_hash"] = f"{prefix}{i}"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))

    for run in three_runs:
        add_baselines(run["neuronmoe"]["label"], [0.0, 1.0, 0.0, 0.0])
    table = build_table(three_runs)
    lines = baselines_section(table, three_runs)
    rows = [x for x in lines if x.startswith("| UDHR-cloze EL")]
    se = 100 * float(np.std([0.0, 1.0, 0.0, 0.0] * 50, ddof=1)) / math.sqrt(200)
    assert rows == [f"| UDHR-cloze EL | 200 | 25.00 | 25.00 ± {se:.2f} | every run |"]
    assert "Baselines on the same items" in render(table, three_runs)
    # a run that evaluated other items gets its own line
    add_baselines("NeuronMoE-S1", [0.5], prefix="other")
    rows = [x for x in baselines_section(table, three_runs) if x.startswith("| UDHR-cloze EL")]
    assert rows[0].endswith("| Dense, LayerMoE-S1 |") and rows[1].startswith("| UDHR-cloze EL | 200 | 25.00 | 50.00 |")
    assert rows[1].endswith("| NeuronMoE-S1 |")
