"""``NEW_LANGS=X reproduce-paper --dry-run`` for a language the paper never ran (issue 28): the full plan, LayerMoE
measured with G1's settings for it alone, the coverage table, no paper reference and no allocation gate."""
from __future__ import annotations

import shlex

import pytest

from neuronmoe.pipeline.paper import paper_dry_run, plan_runs
from neuronmoe.pipeline.paper_check import MISMATCH, NO_REFERENCE


def _cmd(facts, start):
    return [shlex.split(c) for c in facts["commands"] if c.startswith(start)]


def _opt(argv, flag):
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("lang", ["sw", "hi"])
def test_new_language_plans_every_stage_without_a_paper_reference(lang):
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", [lang], nproc=8)
    assert not facts["mismatches"]
    sims = _cmd(facts, "neuronmoe similarity")
    assert len(sims) == 1 and _opt(sims[0], "--targets") == lang and _opt(sims[0], "--old-langs") == "en,es,zh"
    assert _opt(sims[0], "--setting") == "g1" and _opt(sims[0], "--name") == f"layermoe-{lang}"
    data = _cmd(facts, "neuronmoe prepare-data")[0]
    assert _opt(data, "--new-langs") == lang  # G1's el/hu/tr are not prepared: no G1 measurement runs
    runs = [_opt(c, "--run-name") for c in _cmd(facts, "torchrun")]
    assert runs == [f"layermoe-{lang}-s1", f"neuronmoe-{lang}-s1", f"neuronmoe-en-{lang}-s1", f"layermoe-{lang}-s2",
                    f"neuronmoe-{lang}-s2"]
    assert [_opt(c, "--allocation") for c in _cmd(facts, "torchrun")][:3] == [f"layermoe-{lang}", f"neuronmoe-{lang}",
                                                                              f"neuronmoe-en-{lang}"]
    assert not _cmd(facts, "neuronmoe allocation-gate")  # no allocation of the plan has a paper reference
    assert all("(no paper reference)" in a["source"] for a in facts["allocations"].values())
    setting = next(r for r in facts["settings"] if r["key"] == "layermoe.setting")
    assert setting["status"] == NO_REFERENCE and lang in str(setting["plan"])
    evals = _cmd(facts, "neuronmoe evaluate")
    assert len(evals) == 6 and all(_opt(c, "--languages") == f"en,{lang}" for c in evals)
    cov = facts["eval_coverage"]
    assert cov["from_families"] == [lang] and cov["languages"] == ["en", lang]


def test_paper_languages_keep_their_plan():
    assert plan_runs(["el", "tr", "hu", "bn"]) == plan_runs(["el", "tr", "hu", "bn"], None)
    kinds = {(k, s, t) for k, s, t in plan_runs(["el", "tr", "bn", "sw"])}
    assert ("neuronmoe-en", 1, "el") in kinds and ("neuronmoe", 2, "el") in kinds and ("neuronmoe", 2, "sw") in kinds
    assert not any(t in ("tr", "bn") and s == 2 for _, s, t in kinds)
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el", "sw"], nproc=8)
    sims = _cmd(facts, "neuronmoe similarity")  # G1 for Greek (the paper's 84 experts), sw's own beside it
    assert [_opt(c, "--name") for c in sims] == ["layermoe", "layermoe-sw"] and _opt(sims[0], "--targets") == "el,hu,tr"
    gate = _cmd(facts, "neuronmoe allocation-gate")[0]  # Greek has a reference: the gate runs, sw passes as no reference
    assert "layermoe-sw=layermoe/sw" in _opt(gate, "--allocations")
    assert next(r for r in facts["settings"] if r["key"] == "layermoe.setting")["status"] == "ok"
    assert not [r for r in facts["settings"] if r["status"] == MISMATCH]


def test_reproduce_paper_script_prints_the_coverage_table(tmp_path, monkeypatch, capsys):
    from neuronmoe.cli import main

    monkeypatch.setenv("NEW_LANGS", "th")
    assert main(["reproduce-paper", "--dry-run", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "# evaluation coverage (benchmark x language" in out
    assert "| family | benchmark | en | th |" in out and "| knowledge | (none in lm-eval) |  | MISSING |" in out
    assert "xcopa_th (cambridgeltl/xcopa, 0-shot, acc, UNPINNED)" in out
