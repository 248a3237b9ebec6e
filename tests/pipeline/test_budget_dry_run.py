"""`reproduce-paper --dry-run` budgets every run of every experiment: tokens, steps, FLOPs, GPU-hours, memory per
device and disk; a run that does not fit its device fails the dry run with a split that keeps the effective batch;
the disk and the hub are checked before the plan runs (--print-commands, --check)."""
from __future__ import annotations

import json

import pytest
from test_paper_check import PLAN_ENV

from neuronmoe.cli import main

EXPERIMENTS = [None, "llama-el", "qwen-el", "llama-tr-hu", "llama-bn-ne"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in [*PLAN_ENV, "PAPER_GPU", "PAPER_GPU_MEMORY", "PAPER_MFU", "ACCEPT_ALLOCATION_DIFF", "HF_HUB_OFFLINE",
              "HF_DATASETS_OFFLINE"]:
        monkeypatch.delenv(k, raising=False)


def _dry(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    rc = main(["reproduce-paper", "--dry-run", "--json", *argv])
    cap = capsys.readouterr()
    return rc, json.loads(cap.out), cap.err


@pytest.mark.parametrize("nproc", ["1", "8"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_training_run_has_its_budget(capsys, tmp_path, experiment, nproc):
    rc, facts, err = _dry(capsys, "--nproc", nproc, "--output-dir", str(tmp_path), *(["--experiment", experiment] if experiment else []))
    b = facts["budget"]
    train = [r for r in b["rows"] if r["kind"] == "train"]
    assert train and len(train) == sum(1 for c in facts["commands"] if " train " in c)
    for r in train:
        assert r["tokens"] > 0 and r["steps"] > 0 and r["flops"]["total"] > 0 and r["gpu_hours"] > 0
        assert r["flops"]["total"] == pytest.approx(r["flops"]["forward"] + r["flops"]["backward_activations"]
                                                    + r["flops"]["weight_gradients"])
        assert r["wall_hours"] == pytest.approx(r["gpu_hours"] / int(nproc))
        assert r["memory"]["total_gib"] > r["memory"]["static_gib"] > 0 and r["disk"]["bytes"] > 0
        assert r["per_device_batch"] * r["gradient_accumulation"] * int(nproc) == 32
    assert {"analysis", "evaluate"} <= {r["kind"] for r in b["rows"]}
    t = b["totals"]
    assert t["paper_training_gpu_hours"] == 120 and t["training_vs_paper"] == pytest.approx(t["training_gpu_hours"] / 120)
    fits = all(r["memory"]["fits"] for r in train)
    assert rc == (0 if fits else 2)
    if not fits:
        assert "do not fit a GH200" in err


def test_one_gpu_of_80_gib_proposes_a_split_that_keeps_the_effective_batch(capsys, tmp_path, monkeypatch):
    rc, facts, err = _dry(capsys, "--nproc", "1", "--gpu-memory", "80", "--experiment", "qwen-el", "--output-dir", str(tmp_path))
    assert rc == 2 and "TRAIN_BATCH_SIZE=" in err and "keeps the effective batch 32" in err
    flagged = [r for r in facts["budget"]["rows"] if r["kind"] == "train" and not r["memory"]["fits"]]
    assert flagged
    for r in flagged:
        p = r["memory"]["proposal"]
        assert p["per_device_train_batch_size"] * p["gradient_accumulation_steps"] == 32 and p["bytes"] / 2**30 <= 78
    # the proposal, applied, fits (the settings table still shows the effective batch 32)
    p = flagged[0]["memory"]["proposal"]
    monkeypatch.setenv("TRAIN_BATCH_SIZE", str(p["per_device_train_batch_size"]))
    monkeypatch.setenv("GRADIENT_ACCUMULATION_STEPS", str(p["gradient_accumulation_steps"]))
    rc, facts, _ = _dry(capsys, "--nproc", "1", "--gpu-memory", "80", "--experiment", "qwen-el", "--output-dir", str(tmp_path))
    row = next(r for r in facts["budget"]["rows"] if r["run"] == flagged[0]["run"])
    assert row["memory"]["fits"] and row["per_device_batch"] == p["per_device_train_batch_size"]


def test_stage2_tokens_estimated_until_the_packed_mix_exists(capsys, tmp_path):
    _, facts, _ = _dry(capsys, "--nproc", "8", "--experiment", "llama-el", "--output-dir", str(tmp_path))
    s2 = next(r for r in facts["budget"]["rows"] if r["run"] == "neuronmoe-el-s2")
    assert s2["tokens_basis"].startswith("1 epoch(s) over estimate") and "no data prepared yet" in s2["tokens_basis"]
    run = tmp_path / "llama-el" / "train" / "neuronmoe-el-s2"
    run.mkdir(parents=True)
    (run / "data_manifest.json").write_text(json.dumps({"packed": {"counts": {"packed_tokens": 512 * 32 * 100 + 7}}}))
    _, facts, _ = _dry(capsys, "--nproc", "8", "--experiment", "llama-el", "--output-dir", str(tmp_path))
    s2 = next(r for r in facts["budget"]["rows"] if r["run"] == "neuronmoe-el-s2")
    assert "packed mix" in s2["tokens_basis"] and s2["steps"] == 100 and s2["tokens"] == 100 * 32 * 512


def test_the_table_prints_the_budget_beside_the_paper(capsys, tmp_path):
    assert main(["reproduce-paper", "--dry-run", "--nproc", "8", "--gpu", "H100", "--mfu", "0.4",
                 "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "# budget on H100 (989 TFLOP/s dense bf16, 80 GiB; MFU 0.40, given)" in out
    assert "| layermoe-el-s1 | training s1 | 84 | 491.5M | 15000 |" in out
    assert "(the paper: ~120 on GH200 for all of its training; ratio" in out and "# downloads:" in out
    assert "# note: LayerMoE-S1 (tr): quoted by the paper, not reproduced here" in out


def test_disk_fails_the_run_not_the_dry_run(capsys, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 10**9, 10**9))  # 1 GB free
    assert main(["reproduce-paper", "--dry-run", "--nproc", "8", "--output-dir", str(tmp_path)]) == 0
    assert "DOES NOT FIT" in capsys.readouterr().out
    assert main(["reproduce-paper", "--print-commands", "--nproc", "8", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not fit on disk" in err and "1.0 GB are free" in err


def test_check_offline_says_access_was_not_checked(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["reproduce-paper", "--check", "--nproc", "8", "--gpu-memory", "1000", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "# access: NOT CHECKED (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set" in out
    assert rc in (0, 2)  # 2 only for this machine's disk, which the check compares too


def test_check_names_a_gated_model(capsys, tmp_path, monkeypatch):
    import neuronmoe.budget.access as access
    from neuronmoe.testing import StandInHub

    monkeypatch.setattr(access, "HfHubClient", lambda: StandInHub(gated={"meta-llama/Llama-3.2-3B"}))
    assert main(["reproduce-paper", "--check", "--nproc", "8", "--output-dir", str(tmp_path)]) == 2
    cap = capsys.readouterr()
    assert "# access no access: model meta-llama/Llama-3.2-3B (the base model): gated" in cap.out
    assert "model meta-llama/Llama-3.2-3B (the base model): gated: accept its terms" in cap.err


def test_readme_shows_the_budget_of_the_default_plan(capsys, tmp_path):
    """README's paper-scale section pastes the default plan's budget table: it must be the current one."""
    from pathlib import Path

    assert main(["reproduce-paper", "--dry-run", "--nproc", "8", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split("# budget on", 1)[1]
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [r for r in rows if r not in readme]
    assert rows and not missing, f"README's budget table is out of date (reproduce-paper --dry-run --nproc 8): {missing[:2]}"
