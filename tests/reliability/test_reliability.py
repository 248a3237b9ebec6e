"""Runs that collide, die or resume: what issue 14 found, kept true.

* two concurrent ``neurons`` runs into one folder: the second refuses (naming the first) and the first's
  result equals a clean run;
* a ``neurons`` run killed during collection: the next run takes the stale lock over and resumes to the
  result of an uninterrupted run, leaving no temporary files;
* ``train --resume`` with a damaged newest checkpoint: falls back to the previous one and completes;
* the same folders spelled relative and absolute are one input (a complete stage is not recomputed).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neuronmoe.cli import main

#: a `neuronmoe` process whose collection sleeps after each batch (so that it is still running when
#: the test acts); everything else is the real command
SLOW = textwrap.dedent("""
    import sys, time
    import neuronmoe.neuron_analysis.collect as c
    _orig = c._write_progress
    def slow(*a, **k):
        _orig(*a, **k)
        time.sleep(float(sys.argv[1]))
    c._write_progress = slow
    from neuronmoe.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def neurons_argv(ws, out, *extra):
    return ["neurons", "--model", ws["model"], "--output-dir", str(out), "--data-dir", ws["data"], "--languages",
            "en,el,tr", "--dtype", "float32", "--device", "cpu", "--batch-size", "2", "--top-k", "30", "--no-progress",
            *extra]


def start_slow(argv, delay=0.6):
    return subprocess.Popen([sys.executable, "-c", SLOW, str(delay), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(pred, timeout=120.0):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


def progress(out: Path) -> int:
    try:
        return json.loads((out / "neurons" / "activations" / "progress.json").read_text())["batches_done"]
    except (OSError, ValueError, KeyError):
        return -1


def results(out: Path) -> dict[str, bytes]:
    nd = out / "neurons"
    names = ["ap.npy", "counts.json", "counts_per_layer.csv", *(f"selected_{x}.csv" for x in ("en", "el", "tr"))]
    return {n: (nd / n).read_bytes() for n in names}


@pytest.fixture(scope="module")
def clean_mean(ws, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    assert main(neurons_argv(ws, out, "--pool", "mean")) == 0
    return results(out)


@pytest.mark.slow
def test_concurrent_neurons_second_refuses_first_equals_clean_run(ws, tmp_path, clean_mean, capsys):
    out = tmp_path / "shared out"
    first = start_slow(neurons_argv(ws, out, "--pool", "mean"))
    try:
        wait_for(lambda: progress(out) >= 1 or first.poll() is not None)
        assert first.poll() is None, first.communicate()
        capsys.readouterr()
        rc = main(neurons_argv(ws, out, "--pool", "max"))
        err = capsys.readouterr().err
        assert rc == 2
        assert f"is in use by another run (pid {first.pid} on " in err and "--pool mean" in err
        assert progress(out) >= 1  # the second run deleted nothing
        assert first.wait(timeout=300) == 0, first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
    assert results(out) == clean_mean
    man = json.loads((out / "neurons" / "manifest.json").read_text())
    assert man["config"]["pool"] == "mean"
    assert not list(out.rglob("*.tmp")) and not list(out.glob(".neurons.lock*"))


@pytest.mark.slow
def test_killed_collection_resumes_to_the_uninterrupted_result(ws, tmp_path, clean_mean, caplog):
    out = tmp_path / "out"
    first = start_slow(neurons_argv(ws, out, "--pool", "mean"))
    wait_for(lambda: progress(out) >= 2 or first.poll() is not None)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "neurons" / "manifest.json").exists()
    (out / "neurons" / ".ap.npy.x1y2.tmp").write_bytes(b"half")  # as an atomic write cut by the kill
    with caplog.at_level("INFO"):
        assert main(neurons_argv(ws, out, "--pool", "mean")) == 0
    assert "ended without releasing its lock" in caplog.text and "resuming activation collection" in caplog.text
    assert results(out) == clean_mean
    assert not list(out.rglob("*.tmp"))


def test_relative_and_absolute_paths_are_one_input(ws, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    shutil.copytree(ws["data"], out / "data")
    shutil.copytree(ws["model"], tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    argv = ["neurons", "--languages", "en,el,tr", "--dtype", "float32", "--device", "cpu", "--top-k", "30", "--no-progress"]
    assert main([*argv, "--model", "m", "--output-dir", "o", "--data-dir", "o/data"]) == 0
    capsys.readouterr()
    assert main([*argv, "--model", str(tmp_path / "m") + "/", "--output-dir", str(out), "--data-dir", str(out / "data")]) == 0
    assert "up to date" in capsys.readouterr().out


TRAIN_SETS = ["cutoff_len=32", "per_device_train_batch_size=4", "max_steps=6", "logging_steps=2", "save_steps=2", "save_last=true",
              "save_total_limit=5", "learning_rate=0.003", "bf16=false", "report_to=none", "heldout_max_tokens=64",
              "heldout_block_len=32", "max_samples=24"]


@pytest.mark.slow
def test_resume_skips_a_damaged_newest_checkpoint(ws, tmp_path, caplog):
    out = tmp_path / "out"
    (out / "allocation").mkdir(parents=True)
    shutil.copy(Path(ws["out"]) / "allocation" / "tiny.json", out / "allocation" / "tiny.json")
    argv = ["train", "--stage", "1", "--model", ws["model"], "--output-dir", str(out), "--data-dir", ws["data"],
            "--allocation", "tiny", "--run-name", "r", "--profile", "cpu", "--device", "cpu", "--no-cache",
            *(x for s in TRAIN_SETS for x in ("--set", s))]
    assert main(argv) == 0
    run = out / "train" / "r"
    assert {p.name for p in run.glob("checkpoint-*")} >= {"checkpoint-4", "checkpoint-6"}
    (run / "manifest.json").unlink()  # as if killed after its last checkpoint
    opt = run / "checkpoint-6" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        assert main([*argv, "--resume"]) == 0
    assert "checkpoint-6/optimizer.pt: damaged" in caplog.text and "continuing from checkpoint-4" in caplog.text
    man = json.loads((run / "manifest.json").read_text())
    assert man["counts"]["global_step"] == 6 and man["result"]["resumed_from"].endswith("checkpoint-4")


DET = textwrap.dedent("""
    import hashlib, sys, tempfile
    import numpy as np, torch
    from neuronmoe.neuron_analysis.collect import collect_activations
    from neuronmoe.neuron_analysis.units import UnitLayout
    from neuronmoe.testing import tiny_model
    torch.set_num_threads(int(sys.argv[1]))
    m = tiny_model("llama", seed=0).to(torch.bfloat16).eval()
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(3, m.config.vocab_size, size=int(n))) for n in rng.integers(4, 60, size=40)]
    layout = UnitLayout.for_model(m.config, None, "ap")
    with tempfile.TemporaryDirectory() as d:
        collect_activations(m, ids, d, layout, pool="mean", batch_size=8, progress=False)
        h = hashlib.sha256(b"".join(open(f"{d}/layer_{i:03d}.npy", "rb").read() for i in range(layout.num_layers)))
    print(h.hexdigest())
""")


@pytest.mark.slow
def test_bf16_collection_is_bitwise_reproducible_on_this_cpu():
    """Two processes (other addresses; 1 and 2 intra-op threads) collect bf16 activations: the same bytes."""
    digests = {subprocess.run([sys.executable, "-c", DET, str(t)], capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(t)}).stdout.strip().splitlines()[-1]
               for t in (1, 2)}
    assert len(digests) == 1, digests


@pytest.mark.slow
def test_pipeline_reports_the_failed_stage_in_one_line(ws, tmp_path, capfd):
    """A stage that fails ends the pipeline with one line naming it and how to resume (no traceback)."""
    out = tmp_path / "out"
    shutil.copytree(ws["data"], out / "data")
    (out / "neurons").write_text("a file where the neuron results go\n")  # the stage will refuse it
    rc = main(["pipeline", "--output-dir", str(out), "--model", ws["model"], "--target", "el", "--neg-langs", "tr",
               "--only", "neurons"])
    err = capfd.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert lines[-1].startswith("neuronmoe pipeline: error: stage neurons failed (exit status 2")
    assert "run the same pipeline command again" in lines[-1] and "resumes at neurons" in lines[-1]
    assert any(ln.startswith("neuronmoe neurons: error:") and "is a file" in ln for ln in lines)  # the stage's own line
