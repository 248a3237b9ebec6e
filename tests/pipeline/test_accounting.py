"""Per-stage accounting: a stage process's tokens and linear-layer FLOPs (counted by the hooks that
``python -m neuronmoe`` installs from $NEURONMOE_WORK_FILE), its CPU time and peak RSS (wait4), the cached matmul
calibration, and the table at the end of report.md."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import torch
    from neuronmoe.utils.work import install_from_env
    from neuronmoe.testing import tiny_model
    install_from_env()
    m = tiny_model("llama")
    ids = torch.randint(3, 200, (2, 7))
    mask = torch.ones_like(ids); mask[1, :2] = 0
    with torch.no_grad():
        m(input_ids=ids, attention_mask=mask)            # 12 real tokens of 14 positions, no gradient
    m.train()
    m(input_ids=ids[:1], labels=ids[:1]).loss.backward()  # 7 tokens forward and backward
""")


def _run_stage(tmp_path, code: str):
    """``code`` run as a stage process by the pipeline's runner, its work counted into a file under ``tmp_path``."""
    from neuronmoe.pipeline.run import StageRunner, stage_environment

    runner = StageRunner(stage_environment())
    runner.work_file = tmp_path / "work" / "s.json"
    assert runner([sys.executable, "-c", code]) == 0
    return runner


def _linear_macs(model) -> int:
    import torch

    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_stage_runner_records_tokens_flops_cpu_and_rss(tmp_path):
    from neuronmoe.pipeline.run import stage_usage
    from neuronmoe.testing import tiny_model

    runner = _run_stage(tmp_path, CHILD)
    usage = stage_usage(runner, seconds=2.0)
    assert usage["tokens_forward"] == 12 + 7 and usage["tokens_backward"] == 7
    assert usage["positions_forward"] == 14 + 7
    per_token = 2 * _linear_macs(tiny_model("llama"))  # every Linear (LM head included) on every position
    assert usage["flops"] == pytest.approx(per_token * (14 + 7) + 2 * per_token * 7)
    assert usage["flops_per_s"] == pytest.approx(usage["flops"] / 2.0)
    assert usage["cpu_s"] > 0 and usage["peak_rss_mb"] > 50  # torch alone is more than that
    assert usage["dtype"] == "float32" and usage["device"] == "cpu" and usage["threads"] >= 1
    assert isinstance(usage["native_bf16"], bool)
    assert runner([sys.executable, "-c", "raise SystemExit(3)"]) == 3  # exit status passed through


def test_counting_is_off_without_the_variable(tmp_path, monkeypatch):
    from neuronmoe.utils import work

    monkeypatch.delenv(work.ENV, raising=False)
    monkeypatch.setattr(work, "_STATE", {})
    work.install_from_env()
    assert "counts" not in work._STATE and work.counts()["tokens_forward"] == 0


def test_matmul_calibration_is_measured_once_per_machine(tmp_path, monkeypatch):
    from neuronmoe.utils import work

    monkeypatch.setenv("NEURONMOE_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(work, "measure_matmul", lambda *a, **k: calls.append(a) or 1.5e10)
    first = work.matmul_rate(device="cpu", dtype="float32")
    again = work.matmul_rate(device="cpu", dtype="float32")
    assert first["flops_per_s"] == again["flops_per_s"] == 1.5e10 and len(calls) == 1
    assert len(list((tmp_path / "calibration").glob("*.json"))) == 1
    work.matmul_rate(device="cpu", dtype="float32", refresh=True)
    assert len(calls) == 2


def test_measured_matmul_rate_is_plausible():
    from neuronmoe.utils.work import measure_matmul

    rate = measure_matmul("cpu", "float32", n=256, seconds=0.2)
    assert 1e8 < rate < 1e14


def test_report_ends_with_the_stage_table(tmp_path):
    from neuronmoe.pipeline.report import build_report
    from neuronmoe.pipeline.settings import PipelineSettings

    timings = {"_machine": {"flops_per_s": 100e9, "native_bf16": False, "key": {"dtype": "float32", "device": "cpu",
                                                                                "threads": 2, "cpu": "Test CPU"}},
               "neurons": {"seconds": 10.0, "cpu_s": 19.5, "peak_rss_mb": 900.0, "tokens_forward": 50_000,
                           "tokens_backward": 0, "flops": 5e11, "flops_per_s": 5e10, "skipped_last": False},
               "allocate-neuronmoe": {"seconds": 2.0, "skipped_last": True},
               "_last_run_seconds": 12.0}
    md = build_report(PipelineSettings.resolve(environ={}, output_dir=str(tmp_path)), timings)
    table = md[md.index("## Stage times and work"):]
    assert "100.0 GFLOP/s float32 (cpu, 2 threads, Test CPU; native bf16: no" in table
    row = next(ln for ln in table.splitlines() if ln.startswith("| neurons |"))
    assert row.split("|")[1:-1] == [" neurons ", " 10.0 ", " 19.5 ", " n/a ", " 50,000 ", " 0 ", " 500.0 ", " 50.0 ", " 50 ",
                                     " 900 ", " ran "]
    assert "| allocate-neuronmoe | 2.0 | n/a |" in table and "skipped (up to date)" in table
    assert "| total (last invocation) | 12.0 |" in table
    json.dumps(timings)  # what the pipeline stores is JSON


def test_each_stage_is_compared_with_the_rate_of_its_dtype(tmp_path):
    from neuronmoe.pipeline.report import build_report
    from neuronmoe.pipeline.settings import PipelineSettings

    timings = {"_machine": {"flops_per_s": 100e9, "native_bf16": True, "rates": {"float32": 100e9, "bfloat16": 250e9},
                            "key": {"dtype": "float32", "device": "cpu", "threads": 2, "cpu": "Test CPU"}},
               "eval-dense": {"seconds": 10.0, "flops": 1e12, "flops_per_s": 1e11, "dtype": "bfloat16"},
               "similarity": {"seconds": 10.0, "flops": 5e11, "flops_per_s": 5e10, "dtype": "float32"}}
    table = build_report(PipelineSettings.resolve(environ={}, output_dir=str(tmp_path)), timings)
    assert "100.0 GFLOP/s float32, 250.0 GFLOP/s bfloat16" in table
    rows = {ln.split("|")[1].strip(): ln.split("|")[1:-1] for ln in table.splitlines() if ln.startswith("| ")}
    assert rows["eval-dense"][3].strip() == "bfloat16" and rows["eval-dense"][8].strip() == "40"  # 100 of 250
    assert rows["similarity"][3].strip() == "float32" and rows["similarity"][8].strip() == "50"  # 50 of 100


def test_bench_stages_divides_each_stage_by_its_plain_forward_time(tmp_path):
    """benchmarks/bench_stages.py --pipeline-output: stage seconds over the plain time of the tokens it counted."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_stages.py"
    spec = importlib.util.spec_from_file_location("bench_stages", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "timings.json").write_text(json.dumps({
        "_machine": {"flops_per_s": 1e11},
        "eval-dense": {"seconds": 30.0, "tokens_forward": 10_000, "tokens_backward": 0},
        "train-x-s1": {"seconds": 90.0, "tokens_forward": 2_000, "tokens_backward": 2_000},
        "eval-bf16": {"seconds": 15.0, "tokens_forward": 10_000, "tokens_backward": 0, "dtype": "bfloat16"},
        "eval-moe": {"seconds": 60.0, "tokens_forward": 10_000, "tokens_backward": 0, "flops": 2 * 100 * 10_000 * 2},
        "allocate-neuronmoe": {"seconds": 3.0}}))
    out = bench.pipeline_ratios(tmp_path, {"float32": 0.002, "bfloat16": 0.001}, {"float32": 0.03}, macs=100)
    assert set(out) == {"eval-dense", "train-x-s1", "eval-bf16", "eval-moe"}  # no model forward: no floor
    assert out["eval-dense"]["plain_s"] == 20.0 and out["eval-dense"]["stage_over_plain"] == 1.5
    assert out["train-x-s1"]["plain_s"] == 60.0 and out["train-x-s1"]["stage_over_plain"] == 1.5
    assert out["eval-bf16"]["plain_s"] == 10.0  # compared with the bf16 plain forward it ran in
    assert out["eval-moe"]["work_vs_dense"] == 2.0 and out["eval-moe"]["plain_s"] == 40.0  # experts: twice the work


CHILD_DECODER = textwrap.dedent("""
    import torch
    from neuronmoe.utils.work import install_from_env
    from neuronmoe.testing import tiny_model
    install_from_env()
    m = tiny_model("llama")
    ids = torch.randint(3, 200, (1, 5))
    with torch.no_grad():
        m.get_decoder()(input_ids=ids)                  # no LM head (neurons, similarity): 5 tokens
        class Stop(Exception):
            pass
        def stop(*_):
            raise Stop
        h = m.get_decoder().layers[0].register_forward_hook(stop)
        try:
            m(input_ids=ids[:, :3])                     # ended after layer 0 (analyze-experts): 3 tokens
        except Stop:
            pass
        h.remove()
""")


def test_tokens_are_counted_without_the_lm_head_and_in_a_forward_ended_early(tmp_path):
    from neuronmoe.pipeline.run import stage_usage

    usage = stage_usage(_run_stage(tmp_path, CHILD_DECODER), seconds=1.0)
    assert usage["tokens_forward"] == 5 + 3 and usage["tokens_backward"] == 0


CHILD_AUTOCAST = textwrap.dedent("""
    import torch
    from neuronmoe.utils.work import install_from_env
    from neuronmoe.testing import tiny_model
    install_from_env()
    m = tiny_model("llama").float()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # training's bf16: fp32 weights, bf16 compute
        m(input_ids=torch.randint(3, 200, (1, 4)))
""")


def test_the_recorded_dtype_is_the_autocast_one(tmp_path):
    from neuronmoe.pipeline.run import stage_usage

    assert stage_usage(_run_stage(tmp_path, CHILD_AUTOCAST), seconds=1.0)["dtype"] == "bfloat16"


def test_a_small_stage_does_not_report_the_pipeline_process_size(tmp_path):
    """Linux starts a child's ru_maxrss at its parent's RSS at fork: a 1.5 GB pipeline process made every small
    stage report 1.5 GB. The stage's own high-water mark (VmHWM) is what the table shows."""
    from neuronmoe.pipeline.run import stage_usage

    ballast = bytearray(1536 << 20)  # touched: resident in this (the parent) process
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    runner = _run_stage(tmp_path, "from neuronmoe.utils.work import install_from_env; install_from_env()")
    inherited = runner.usage["peak_rss_mb"]
    usage = stage_usage(runner, seconds=1.0)
    del ballast
    assert inherited > 1536  # what wait4 says: the parent's size
    assert 10 < usage["peak_rss_mb"] < 1024  # the child's own: python and torch, well under the ballast
