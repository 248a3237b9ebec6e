"""Every script honours the canonical variables: its resolved plan (NEURONMOE_PRINT_ARGS=1, or the dry run
of the pipeline and the paper plan) shows them; old spellings still work with a warning; a variable of ours
that a script ignores is named at start."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: the canonical variables, with values no default has
CANONICAL = {"NEW_LANGS": "hu", "OLD_LANGS": "en,de", "BASE_MODEL_PATH": "smollm2-135m", "NEURONS_BATCH_SIZE": "5",
             "SIMILARITY_BATCH_SIZE": "6", "TRAIN_BATCH_SIZE": "2", "TRAIN_SEED": "7", "TRAIN_TOP_K": "1",
             "DATA_SEED": "9", "EVAL_SEED": "11", "PEFT_MODEL_PATH": "/x/run/adapter", "TRAIN_PROFILE": "cpu"}


def _run(script: str, tmp_path: Path, extra: dict[str, str] | None = None, args: tuple[str, ...] = (),
         print_args: bool = True) -> subprocess.CompletedProcess:
    ours = {k for k in os.environ if k in CANONICAL or k.startswith(("NEURONMOE_PRINT", "NEURONMOE_ENV"))}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(NEURONMOE_SKIP_SETUP="1", PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               OUTPUT_DIR=str(tmp_path / "o"), **(extra or {}))
    if print_args:
        env["NEURONMOE_PRINT_ARGS"] = "1"
    r = subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _args(r: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_stage_scripts_resolve_the_canonical_variables(tmp_path):
    out = str(tmp_path / "o")
    (a,) = _args(_run("prepare_data.sh", tmp_path, CANONICAL))
    assert (a["new_langs"], a["old_langs"], a["seed"], a["model"], a["output_dir"]) == (["hu"], ["en", "de"], 9, "smollm2-135m", out)
    (a,) = _args(_run("run_neuron_analysis.sh", tmp_path, CANONICAL))
    assert a["batch_size"] == 5 and a["output_dir"] == out
    (a,) = _args(_run("run_similarity.sh", tmp_path, CANONICAL))
    assert (a["targets"], a["old_langs"], a["source"], a["batch_size"]) == (["hu"], ["en", "de"], "en", 6)
    (a,) = _args(_run("run_expert_allocation.sh", tmp_path, CANONICAL))
    assert (a["targets"], a["source_lang"]) == (["hu"], "en")
    (c,) = _args(_run("run_stage1.sh", tmp_path, CANONICAL))
    assert (c["languages"], c["replay_languages"], c["per_device_train_batch_size"], c["seed"], c["top_k"]) == \
        (["hu"], [], 2, 7, 1)  # OLD_LANGS is stage 2's replay: stage 1 has none
    # the cpu profile's effective batch 4 holds: TRAIN_BATCH_SIZE=2 -> accumulation 2
    assert c["gradient_accumulation_steps"] == 2 and c["effective_batch_size"] == 4
    (c,) = _args(_run("run_stage2.sh", tmp_path, CANONICAL))
    assert c["replay_languages"] == ["en", "de"] and c["languages"] == ["hu"] and c["settings_sources"]["languages"] == "env NEW_LANGS"
    ev, rep = _args(_run("run_eval.sh", tmp_path, CANONICAL))
    assert (ev["adapter"], ev["seed"], ev["model"]) == ("/x/run/adapter", 11, "smollm2-135m") and rep["output_dir"] == out


@pytest.mark.slow
def test_pipeline_and_paper_plans_follow_new_langs(tmp_path):
    """`NEW_LANGS=hu bash scripts/run_pipeline.sh` plans the Hungarian experiment."""
    r = _run("run_pipeline.sh", tmp_path, {"NEW_LANGS": "hu"}, args=("--dry-run",), print_args=False)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("[pipeline] model smollm2-135m; new language hu; old en")
    plan = "\n".join(lines)
    assert "--new-langs hu --old-langs en" in plan and "--targets el" not in plan and "--languages el" not in plan
    assert plan.count("--languages hu --profile auto") == 3 and "--target hu" in plan
    assert "--languages en,hu," in plan  # neuron analysis and expert analysis
    r = _run("run_pipeline.sh", tmp_path, {"NEW_LANGS": "hu", "OLD_LANGS": "en,de", "TRAIN_BATCH_SIZE": "3",
                                           "NPROC": "2"}, args=("--dry-run",), print_args=False)
    assert "--replay-languages en,de" in r.stdout and "--old-langs en,de --neg-langs tr,es,fr,ja,zh" in r.stdout
    assert "NPROC is set but scripts/run_pipeline.sh does not read it" in r.stderr  # no torchrun in the pipeline
    assert "TRAIN_BATCH_SIZE" not in r.stderr  # read by its training stages
    r = _run("reproduce_paper.sh", tmp_path, {"NEW_LANGS": "hu", "BASE_MODEL_PATH": "/models/llama"},
             args=("--dry-run",), print_args=False)
    trains = [c for c in r.stdout.splitlines() if " train " in c]
    assert trains and all("--languages hu" in c and "--model /models/llama" in c for c in trains)


@pytest.mark.slow
def test_old_names_still_work_and_ignored_ones_are_named(tmp_path):
    r = _run("run_stage1.sh", tmp_path, {"TARGET_LANGS": "tr", "TOPK": "1", "BATCH_SIZE": "2", "PEFT_MODEL_PATH": "/a",
                                         "NPROC": "1", "TRAIN_PROFILE": "cpu"})
    (c,) = _args(r)
    assert (c["languages"], c["top_k"], c["per_device_train_batch_size"]) == (["tr"], 1, 2)
    for old, new in (("TARGET_LANGS", "NEW_LANGS"), ("TOPK", "TRAIN_TOP_K"), ("BATCH_SIZE", "TRAIN_BATCH_SIZE")):
        assert f"{old} is deprecated, use {new}" in r.stderr
    assert "PEFT_MODEL_PATH is set but scripts/run_stage1.sh does not read it" in r.stderr
    assert "NPROC" not in r.stderr  # the script itself reads it
    r = _run("run_pipeline.sh", tmp_path, {"TARGET_LANG": "tr"}, args=("--dry-run",), print_args=False)
    assert "TARGET_LANG is deprecated, use NEW_LANGS" in r.stderr and "new language tr" in r.stdout
