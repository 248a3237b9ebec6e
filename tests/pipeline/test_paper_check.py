"""`reproduce-paper --dry-run` compares the plan with the paper, setting by setting, at several world sizes,
reading the values the commands will actually run with; it fails on an undocumented difference."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from neuronmoe.pipeline import paper_dry_run
from neuronmoe.pipeline.paper_check import DEVIATION, MISMATCH, OK, row_status

ROOT = Path(__file__).resolve().parents[2]
#: variables that would change the plan's settings: the tests start without them
PLAN_ENV = ["TRAIN_BATCH_SIZE", "BATCH_SIZE", "GRADIENT_ACCUMULATION_STEPS", "EFFECTIVE_BATCH_SIZE", "AUX_LOSS_COEF",
            "LPR_LOSS_COEF", "LPR_INPUT", "AUX_LOSS_FORM", "LEARNING_RATE", "MAX_STEPS", "CUTOFF_LEN", "TRAIN_TOP_K",
            "TOPK", "TRAIN_SEED", "SEED", "BF16", "NUM_TRAIN_EPOCHS", "MAX_SAMPLES", "REPLAY_MAX_SAMPLES", "TRAIN_CONFIG",
            "SOURCE", "REPLAY_DOCS", "MAX_TOKENS", "DATA_CONFIG", "HELDOUT_FRACTION", "SIMILARITY_TOKENS", "BUDGET",
            "SIMILARITY_SPLIT", "E_MIN", "E_MAX", "EVAL_NUM_FEWSHOT", "WORLD_SIZE", "NEW_LANGS", "OLD_LANGS"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in PLAN_ENV:
        monkeypatch.delenv(k, raising=False)


def _rows(facts):
    return {r["key"]: r for r in facts["settings"]}


@pytest.mark.parametrize("nproc", [1, 2, 4, 8])
def test_dry_run_keeps_the_effective_batch_and_table7_tokens(nproc):
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el", "tr", "hu"], nproc=nproc)
    rows = _rows(facts)
    assert facts["mismatches"] == []
    for stage in ("s1", "s2"):
        assert rows[f"{stage}.effective_batch_size"]["plan"] == 32 and rows[f"{stage}.effective_batch_size"]["status"] == OK
    assert rows["s1.per_device_train_batch_size"]["plan"] == 32 // nproc
    assert rows["s1.per_device_train_batch_size"]["status"] == (OK if nproc == 1 else DEVIATION)
    assert rows["s1.gradient_accumulation_steps"]["plan"] == 1
    assert rows["s1.tokens"]["plan"] == 15000 * 32 * 1024 == rows["s1.tokens"]["paper"]
    assert rows["s1.tokens"]["status"] == OK
    # every setting the protocol names is read from the plan
    assert {"s1.learning_rate", "s1.max_steps", "s1.top_k", "s1.aux_loss_coef", "s1.e_range", "s2.lpr_input",
            "s2.aux_loss_coef", "data.replay.en", "data.replay.zh", "data.replay.es", "layermoe.setting",
            "eval.arc", "eval.mmlu"} <= set(rows)
    assert (rows["data.replay.en"]["plan"], rows["data.replay.zh"]["plan"], rows["data.replay.es"]["plan"]) == (
        "cerebras/SlimPajama-627B", "Skywork/SkyPile-150B", "uonlp/CulturaX")
    assert rows["s2.aux_loss_coef"]["plan"] == 0.0 and rows["s2.aux_loss_coef"]["status"] == DEVIATION
    assert rows["layermoe.setting"]["plan"] == "G1: el,hu,tr vs en,es,zh" and rows["layermoe.budget"]["plan"] == 70
    trains = [c for c in facts["commands"] if " train " in c]
    assert all(f"--nproc_per_node={nproc}" in c and "--batch-size" not in c for c in trains)


def test_dry_run_published_allocations_show_table2():
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el", "tr", "hu"], nproc=4, allocations="published")
    rows = _rows(facts)
    assert rows["layermoe.experts"]["plan"] == 84 and rows["layermoe.experts"]["status"] == OK
    # LayerMoE's G1 setting is the published row's, not a similarity this plan runs: shown, never "ok"
    for key in ("layermoe.setting", "layermoe.tokens", "layermoe.include_bos", "layermoe.layer_score", "layermoe.budget"):
        assert rows[key]["status"] == "not run" and str(rows[key]["plan"]) != ""
    assert not any(" similarity " in c for c in facts["commands"]) and facts["mismatches"] == []


def test_the_old_bug_fails_the_dry_run(monkeypatch, capsys):
    """32 per device on 8 processes (an effective batch of 256) is caught, named, and stops the run."""
    from neuronmoe.cli import main

    monkeypatch.setenv("TRAIN_BATCH_SIZE", "32")
    monkeypatch.setenv("GRADIENT_ACCUMULATION_STEPS", "1")
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el"], nproc=8)
    bad = {r["key"]: r for r in facts["mismatches"]}
    assert bad["s1.effective_batch_size"]["plan"] == 256 and bad["s1.tokens"]["plan"] == 15000 * 256 * 1024
    assert main(["reproduce-paper", "--dry-run", "--nproc", "8"]) == 2
    cap = capsys.readouterr()
    assert "| stage 1 | effective batch size (sequences) | 32 | 2048 | 256 | MISMATCH |" in cap.out  # the table is printed
    assert "undocumented setting(s)" in cap.err and "effective batch size (sequences): plan 256" in cap.err
    assert main(["reproduce-paper", "--print-commands", "--nproc", "8"]) == 2  # the script never runs it


@pytest.mark.parametrize("env, key", [({"AUX_LOSS_COEF": "0.05"}, "s1.aux_loss_coef"),
                                      ({"AUX_LOSS_FORM": "normalized"}, "s1.aux_loss_form"),
                                      ({"REPLAY_MAX_SAMPLES": "1000"}, "s2.replay_docs"),
                                      ({"EVAL_NUM_FEWSHOT": "3"}, "eval.arc")])
def test_an_undocumented_change_is_a_mismatch(monkeypatch, env, key):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el", "tr", "hu"], nproc=2)
    assert key in {r["key"] for r in facts["mismatches"]}


def test_replay_from_culturax_only_is_a_mismatch():
    """The previous plan (every language from CulturaX) is caught on English and Chinese."""
    from neuronmoe.pipeline.paper import paper_plan
    from neuronmoe.pipeline.paper_check import settings_table

    rows = {r["key"]: r for r in settings_table(paper_plan(data_source="hf:uonlp/CulturaX", nproc=8), 8, ["el", "tr", "hu"])}
    assert rows["data.replay.en"]["status"] == rows["data.replay.zh"]["status"] == MISMATCH
    assert rows["data.replay.es"]["status"] == OK


def test_world_size_that_cannot_split_the_batch_fails_early():
    with pytest.raises(ValueError, match="effective batch 32 cannot be split over 3 processes"):
        paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el"], nproc=3)


def test_per_language_shots_and_the_missing_rows():
    """Turkish MMLU runs 4-shot and its row says so; neuron analysis and DeepSpeed have rows; the LPR input is the
    reference's (the paper gives no formula)."""
    rows = _rows(paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el", "tr", "hu"], nproc=8))
    assert rows["eval.mmlu/tr"]["plan"] == 4 and rows["eval.mmlu/tr"]["status"] == DEVIATION
    assert rows["eval.mmlu"]["plan"] == 5 and "eval.mmlu/el" not in rows
    assert (rows["neurons.top_k"]["plan"], rows["neurons.ap_threshold"]["plan"], rows["neurons.sentences"]["plan"]) == (1000, 0.5, 500)
    assert rows["neurons.modules"]["status"] == OK
    assert rows["ds.stage"]["plan"] == 2 and rows["ds.overlap_comm"]["status"] == DEVIATION
    assert rows["s2.lpr_input"]["paper"] is None and rows["s2.lpr_input"]["status"] == OK
    assert rows["s2.lpr_layer_mean"]["plan"] == "layers" and rows["s2.lpr_layer_mean"]["status"] == DEVIATION
    assert rows["data.new_shuffle"]["reference"].endswith("seed 1234")
    assert rows["data.replay_shuffle.en"]["plan"] == "train/chunk1*/*, seed 22, buffer 10000"


def test_row_status_rules():
    row = {"paper": 0.01, "reference": 0.0, "deviation": "MoE-LPR has none", "ours": 0.0, "source": "T7"}
    assert row_status(row, 0.01)["status"] == OK
    assert row_status(row, 0.0) == {"status": DEVIATION, "note": "MoE-LPR has none"}
    assert row_status(row, 0.5)["status"] == MISMATCH
    assert row_status({"paper": None, "reference": 512}, 512)["status"] == OK
    assert row_status({"paper": None, "reference": 512}, 1024)["status"] == MISMATCH


@pytest.mark.parametrize("nproc", ["1", pytest.param("8", marks=pytest.mark.slow)])
def test_reproduce_paper_script_prints_the_table(tmp_path, nproc):
    env = {k: v for k, v in os.environ.items() if k not in PLAN_ENV}
    env.update(NEURONMOE_SKIP_SETUP="1", PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", OUTPUT_DIR=str(tmp_path / "o"),
               HF_HUB_OFFLINE="1")
    r = subprocess.run(["bash", "scripts/reproduce_paper.sh", "--dry-run", "--nproc", nproc], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=180)
    if nproc == "1":  # 32 sequences of 1,024 tokens on one GH200: the budget stops it, naming a split that fits
        assert r.returncode == 2 and "training run(s) do not fit a GH200" in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
    assert "| stage 1 | effective batch size (sequences) | 32 | 2048 | 32 | ok |" in r.stdout
    assert f"| stage 1 | batch size per device | 32 | 32 | {32 // int(nproc)} |" in r.stdout
    assert "| stage 1 | gradient accumulation steps | 1 | 8 | 1 | ok |" in r.stdout  # the published script's 32 x 8 x 8
    assert "| evaluation | MMLU shots (Turkish) | 5 | 4 | 4 | deviation |" in r.stdout
    assert "| LayerMoE | tokens per document (longer ones truncated) | - | 10,000 | 10,000 | ok |" in r.stdout
    assert "| data | English replay | cerebras/SlimPajama-627B | - | cerebras/SlimPajama-627B | ok |" in r.stdout
    assert "MISMATCH" not in r.stdout


def test_environment_report_names_only_what_no_command_reads(monkeypatch, caplog):
    """TRAIN_BATCH_SIZE reaches the plan's train commands (and the dry run shows it); NUM_SENTENCES does not
    (prepare-data is given --num-sentences)."""
    from neuronmoe.cli import main

    monkeypatch.setenv("TRAIN_BATCH_SIZE", "4")
    monkeypatch.setenv("NUM_SENTENCES", "3")
    monkeypatch.delenv("NEURONMOE_ENV_REPORTED", raising=False)
    with caplog.at_level("WARNING", logger="neuronmoe.env"):
        assert main(["reproduce-paper", "--dry-run", "--nproc", "8"]) == 0
    assert "NUM_SENTENCES is set but" in caplog.text and "TRAIN_BATCH_SIZE is set but" not in caplog.text
