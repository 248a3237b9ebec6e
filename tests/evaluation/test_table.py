"""The Table-1 builder (pure) and its Markdown / CSV renderings."""
from __future__ import annotations

import csv
import io
import json

import pytest

from neuronmoe.evaluation.table import build_table, load_run, metric_value, to_csv, to_markdown


def _spec(task, bench, lang, metric, label=None, lower=False):
    return {"task": task, "benchmark": bench, "lang": lang, "shots": 0, "metric": metric,
            "label": label or bench.upper(), "lower_is_better": lower}


def _run(label, experts, added, scores):
    specs = [
        _spec("arc_challenge", "arc", "en", "acc_norm", "ARC"),
        _spec("arc_challenge_mt_el", "arc", "el", "acc_norm", "ARC"),
        _spec("mmlu_el", "mmlu", "el", "acc", "MMLU"),
        _spec("mmlu", "mmlu", "en", "acc", "MMLU"),
    ]
    results = {t: {"alias": t, "acc,none": 0.0, f"{m},none": v, f"{m}_stderr,none": 0.01}
               for (t, m), v in scores.items()}
    return {"results": results, "neuronmoe": {"label": label, "experts": experts, "added_params": added, "tasks": specs}}


@pytest.fixture
def runs():
    return [
        _run("Dense", None, 0, {("arc_challenge", "acc_norm"): 0.5111, ("arc_challenge_mt_el", "acc_norm"): 0.3193,
                                ("mmlu", "acc"): 0.5645, ("mmlu_el", "acc"): 0.4117}),
        _run("LayerMoE-S1", 84, 2_000_000_000, {("arc_challenge", "acc_norm"): 0.4727, ("arc_challenge_mt_el", "acc_norm"): 0.3519,
                                                ("mmlu", "acc"): 0.554, ("mmlu_el", "acc"): 0.4341}),
        _run("NeuronMoE-S1", 49, 1_100_000_000, {("arc_challenge", "acc_norm"): 0.4915, ("arc_challenge_mt_el", "acc_norm"): 0.3416,
                                                 ("mmlu", "acc"): 0.5661}),  # MMLU EL missing
    ]


def test_table_layout_matches_table_1(runs):
    t = build_table(runs)
    assert [(c["benchmark"], c["lang"]) for c in t.columns] == [("arc", "en"), ("arc", "el"), ("mmlu", "en"), ("mmlu", "el")]
    assert [r["model"] for r in t.rows] == ["Dense", "LayerMoE-S1", "NeuronMoE-S1"]
    neuron = t.rows[2]
    assert neuron["scores"]["arc/el"] == pytest.approx(0.3416) and neuron["scores"]["mmlu/el"] is None
    assert neuron["experts_change"] == pytest.approx(49 / 84 - 1)  # the paper's "49 (-42%)"
    assert t.rows[1]["experts_change"] is None and t.rows[0]["experts_change"] is None
    md = to_markdown(t)
    lines = md.splitlines()
    assert lines[0] == "| Model | #Exp | Added params | ARC EN | ARC EL | MMLU EN | MMLU EL |"
    assert "| NeuronMoE-S1 | 49 (-42%) | 1.1B | 49.15 | 34.16 | 56.61 | n/a |" in lines
    assert "| Dense | - | - | 51.11 | 31.93 | 56.45 | 41.17 |" in lines
    rows = list(csv.reader(io.StringIO(to_csv(t))))
    assert rows[0] == ["model", "experts", "added_params", "arc_en_acc_norm", "arc_el_acc_norm", "mmlu_en_acc", "mmlu_el_acc"]
    assert rows[2][:3] == ["LayerMoE-S1", "84", "2000000000"] and rows[3][-1] == ""


def test_relative_to_and_unknown_label(runs):
    t = build_table(runs, relative_to="Dense")
    assert all(r["experts_change"] is None for r in t.rows)  # the dense run has no experts to compare with
    with pytest.raises(ValueError, match="no run with that label"):
        build_table(runs, relative_to="Nope")


def test_plain_task_lists_and_metric_fallback():
    run = {"results": {"lambada_openai": {"perplexity,none": 12.0, "acc,none": 0.41},
                       "piqa": {"acc,none": 0.6, "acc_norm,none": 0.62}},
           "neuronmoe": {"label": "x"}}
    t = build_table([run])
    assert [c["benchmark"] for c in t.columns] == ["lambada_openai", "piqa"]
    assert t.rows[0]["scores"] == {"lambada_openai/-": 0.41, "piqa/-": 0.62}
    assert [c["metric"] for c in t.columns] == ["acc", "acc_norm"]
    assert metric_value({"acc_stderr,none": 0.1, "acc,none": 0.3}, "acc") == ("acc", 0.3)
    assert metric_value({"acc,none": "N/A"}, "acc") == ("acc", None)


def test_lower_is_better_is_noted():
    run = {"results": {"heldout_ppl_el": {"word_perplexity,none": 123.456}},
           "neuronmoe": {"label": "d", "tasks": [_spec("heldout_ppl_el", "heldout_ppl", "el", "word_perplexity", "PPL", True)]}}
    md = to_markdown(build_table([run]))
    assert "| d | - | - | 123.46 |" in md and "lower is better" in md


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="not an lm-eval results file"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"results": {}}))
    assert load_run(tmp_path)["neuronmoe"]["label"] == tmp_path.name
