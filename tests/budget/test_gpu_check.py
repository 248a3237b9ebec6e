"""benchmarks/gpu_check.sh: every GPU check of docs/benchmarks.md in one run, one JSON file; its --tiny mode runs the
same code paths on a CPU (here), so that a session with a GPU can just run it."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stage1_step_estimate_on_cpu():
    """The step runs (fp32 weights, AdamW) and carries the budget's estimate of the same run; the peak is measured on
    a GPU only."""
    res = _gpu_check().stage1_step("cpu", tiny=True)
    assert len(res["step_seconds"]) == 2 and res["estimate_gib"] > res["estimate_static_gib"] > 0
    assert "peak_gib" not in res  # no CUDA here


def test_summary_prefers_the_whole_step_mfu():
    s = _gpu_check().summary({"moe_throughput": {"mfu_needed_flops": 0.5, "mfu": 0.6},
                              "stage1_step": {"mfu": 0.3, "peak_gib": 40.0, "estimate_gib": 38.0, "peak_over_estimate": 1.05}})
    assert s["mfu_for_budget"] == 0.3 and s["mfu_source"] == "stage1_step" and s["mfu_bench_moe"] == 0.5
    assert _gpu_check().summary({"moe_throughput": {"mfu_needed_flops": 0.5}})["mfu_source"] == "moe_throughput"


@pytest.mark.slow
def test_tiny_run_writes_one_json_with_every_check(tmp_path):
    env = {**os.environ, "NEURONMOE_SKIP_SETUP": "1", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(tmp_path), "--tiny"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(doc["results"]) == {"moe_throughput", "ap", "neuron_stage", "stage1_step"} and doc["errors"] == {}
    assert doc["tiny"] and doc["results"]["moe_throughput"]["tokens_per_s"] > 0
    assert doc["results"]["neuron_stage"]["neurons_s"] > 0 and doc["results"]["ap"]["max_abs_diff_vs_sklearn"] < 1e-6
    assert doc["summary"]["estimate_gib"] > 0
