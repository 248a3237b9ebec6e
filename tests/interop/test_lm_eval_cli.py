"""`neuronmoe lm-eval` (lm-eval's own CLI, method registered) and the stock `lm_eval` CLI on an export,
against `neuronmoe evaluate`, on the embedded model: the same numbers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from interop_helpers import SIZES, TASKS, assert_same_numbers, make_adapter, metrics, subprocess_env

from neuronmoe.cli import main


def _results(output_path: Path) -> tuple[dict, list[Path]]:
    """lm-eval's results JSON under --output_path (one model folder, one results_*.json) and its samples files."""
    found = sorted(output_path.rglob("results_*.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())["results"], sorted(found[0].parent.glob("samples_*.jsonl"))


@pytest.mark.slow
def test_stock_lm_eval_on_export_and_neuronmoe_lm_eval_with_peft_match_evaluate(embedded_model_dir, local_root, tmp_path):
    from transformers import AutoConfig

    n = AutoConfig.from_pretrained(embedded_model_dir).num_hidden_layers
    adapter = make_adapter(embedded_model_dir, tmp_path / "adapter", [3] + [1] * (n - 2) + [2], scale=0.02)
    out = tmp_path / "export"
    assert main(["export", "--adapter", str(adapter), "--out", str(out)]) == 0
    common = ["--tasks", ",".join(TASKS), "--include_path", str(local_root / "eval" / "tasks"), "--device", "cpu",
              "--batch_size", "8", "--log_samples"]
    env = subprocess_env(tmp_path)
    lm_eval_exe = str(Path(sys.executable).with_name("lm_eval"))
    procs = {
        # the published script's habit, on the exported folder: stock lm-eval, no neuronmoe involved
        "stock": subprocess.Popen(
            [lm_eval_exe, "--model", "hf", "--model_args", f"pretrained={out},trust_remote_code=True,dtype=float32",
             *common, "--output_path", str(tmp_path / "stock")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        # the published script's command with `neuronmoe lm-eval` in place of `lm_eval`, adapter through peft=
        "ours": subprocess.Popen(
            [sys.executable, "-m", "neuronmoe", "lm-eval", "--model", "hf", "--model_args",
             f"pretrained={embedded_model_dir},peft={adapter},dtype=float32", *common, "--output_path", str(tmp_path / "ours")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    }
    try:
        assert main(["evaluate", "--model", "smollm2-135m", "--adapter", str(adapter), "--output-dir", str(local_root),
                     "--suite", "local", "--languages", "en", "--local-sizes", SIZES, "--run-name", "smollm2-adapter",
                     "--device", "cpu", "--dtype", "float32", "--overwrite"]) == 0
        logs = {k: p.communicate(timeout=900)[0] for k, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for k, p in procs.items():
        assert p.returncode == 0, (k, logs[k][-4000:])
    ours = metrics(json.loads((local_root / "eval" / "smollm2-adapter" / "results.json").read_text())["results"])
    for k in procs:
        res, samples = _results(tmp_path / k)
        assert_same_numbers(ours, metrics(res), f"neuronmoe evaluate vs {k}")
        assert {s.name.split("_2")[0] for s in samples} == {f"samples_{t}" for t in TASKS}  # --log_samples honoured


def test_lm_eval_passes_every_argument_to_lm_eval(capsys):
    assert main(["lm-eval", "run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--model_args", "--include_path", "--log_samples", "--output_path", "--num_fewshot", "--apply_chat_template"):
        assert flag in out, flag
    assert main(["-v", "lm-eval", "run", "--help"]) == 0 and "--include_path" in capsys.readouterr().out
    assert main(["lm-eval", "run", "--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_top_level_help_lists_export_and_lm_eval(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "lm-eval" in out and "export" in out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    for flag in ("--adapter", "--out", "--dtype", "--overwrite", "--push-to-hub", "--model"):
        assert flag in out, flag
