"""Misspelled variables and empty values (issue 24, item 7): a variable that is not ours but looks like one of
ours is named with the closest of ours, by every command and script (one place: ``envvars.report``); an empty
variable and an empty flag mean the same (unset: the default; ``none`` is the empty list)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from neuronmoe.envvars import VARS, misspelled, report

ROOT = Path(__file__).resolve().parents[2]


def test_misspellings_name_the_closest_variable():
    env = {"MAX_STEP": "3", "LERNING_RATE": "1e-4", "NUM_SENTENCE": "9", "HOSTNAME": "n1", "TMPDIR": "/t",
           "OMP_NUM_THREAD": "2", "PATH": "/bin", "MAX_STEPS": "2"}
    lines = report("train", environ=env)
    assert any("MAX_STEP is not a NeuronMoE variable: did you mean MAX_STEPS" in ln for ln in lines), lines
    assert any("LERNING_RATE is not a NeuronMoE variable: did you mean LEARNING_RATE" in ln for ln in lines), lines
    assert any("did you mean NUM_SENTENCES" in ln for ln in lines), lines
    assert not any(n in ln for ln in lines for n in ("HOSTNAME", "TMPDIR", "OMP_NUM_THREAD", "PATH "))


def test_no_variable_of_ours_is_taken_for_a_misspelling():
    known = {v.name for v in VARS} | {a.name for v in VARS for a in v.aliases}
    assert misspelled(dict.fromkeys(known, "1"), known) == []


@pytest.mark.slow
def test_a_script_warns_about_a_misspelled_variable():
    env = {**os.environ, "NEURONMOE_SKIP_SETUP": "1", "NEURONMOE_PRINT_ARGS": "1", "HF_HUB_OFFLINE": "1",
           "LERNING_RATE": "1e-4"}
    r = subprocess.run(["bash", "scripts/run_stage1.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "LERNING_RATE is not a NeuronMoE variable: did you mean LEARNING_RATE" in r.stderr


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_neg_langs_flag_means_the_same_as_the_empty_variable(value):
    from neuronmoe.pipeline.settings import DEFAULT_NEG_LANGS, PipelineSettings

    def negatives(flags, environ):
        return PipelineSettings.resolve(flags, environ=environ).negatives

    assert negatives({"neg_langs": value}, {}) == negatives({}, {"NEG_LANGS": value}) == list(DEFAULT_NEG_LANGS)
    assert negatives({"neg_langs": "none"}, {}) == negatives({}, {"NEG_LANGS": "none"}) == []