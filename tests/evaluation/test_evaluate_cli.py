"""`neuronmoe evaluate` / `neuronmoe report` end to end on a tiny model, and the early errors."""
from __future__ import annotations

import json

import pytest

from neuronmoe.cli import main

SIZES = "cloze_items=6,heldout_docs=2,heldout_max_chars=200,cloze_prefix_words=6,cloze_suffix_words=2"


def _eval(model_dir, root, *extra):
    return main(["evaluate", "--model", str(model_dir), "--output-dir", str(root), "--device", "cpu",
                 "--dtype", "float32", "--local-sizes", SIZES, *extra])


def test_local_suite_end_to_end_and_report(tiny_model_dir, data_root, capsys):
    assert _eval(tiny_model_dir, data_root, "--languages", "en,el", "--label", "Dense") == 0
    run = data_root / "eval" / "base-local"
    res = json.loads((run / "results.json").read_text())
    assert set(res["results"]) == {"udhr_cloze_en", "udhr_cloze_el", "heldout_ppl_en", "heldout_ppl_el"}
    for lang in ("en", "el"):
        acc = res["results"][f"udhr_cloze_{lang}"]["acc,none"]
        assert 0.0 <= acc <= 1.0 and res["n-samples"][f"udhr_cloze_{lang}"]["effective"] == 6
        assert res["results"][f"heldout_ppl_{lang}"]["word_perplexity,none"] > 1.0
    assert res["neuronmoe"]["label"] == "Dense" and res["neuronmoe"]["experts"] is None
    man = json.loads((run / "manifest.json").read_text())
    assert man["stage"] == "evaluate" and "results.json" in man["files"]
    assert man["config"]["dtype"] == "float32" and man["inputs"]["model"]["num_layers"] == 3
    # a second run into the same folder needs --overwrite
    assert _eval(tiny_model_dir, data_root, "--languages", "en,el") == 2
    assert "--overwrite" in capsys.readouterr().err
    # report: Table-1 layout as Markdown + CSV
    assert main(["report", "--output-dir", str(data_root)]) == 0
    md = (data_root / "eval" / "table.md").read_text()
    assert md.splitlines()[0] == "| Model | #Exp | Added params | UDHR-cloze EN | UDHR-cloze EL | Held-out BPB EN | Held-out BPB EL |"
    assert md.splitlines()[2].startswith("| Dense | - | - | ")
    assert (data_root / "eval" / "table.csv").read_text().startswith("model,experts,added_params,udhr_cloze_en_acc")


def test_unknown_task_suggests_close_names(tiny_model_dir, data_root, capsys):
    assert main(["evaluate", "--model", str(tiny_model_dir), "--output-dir", str(data_root), "--tasks", "hellaswag_gr,arc_challenge"]) == 2
    err = capsys.readouterr().err
    assert "unknown lm-eval task(s): 'hellaswag_gr'" in err and "hellaswag_tr" in err
    assert not (data_root / "eval" / "tasks-hellaswag_gr").exists()


def test_check_lists_hub_datasets_without_loading_a_model(data_root, capsys):
    assert main(["evaluate", "--model", "/nonexistent/model", "--output-dir", str(data_root), "--suite", "paper",
                 "--languages", "el", "--check"]) == 0
    out = capsys.readouterr().out
    for ds in ("LumiOpen/arc_challenge_mt", "facebook/belebele", "ilsp/hellaswag_greek", "ilsp/mmlu_greek"):
        assert ds in out
    assert "57 configs" in out


def test_offline_paper_suite_fails_early_with_the_dataset_list(data_root, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(data_root / "empty-hf-home"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["evaluate", "--model", "/nonexistent/model", "--output-dir", str(data_root), "--suite", "paper",
                 "--languages", "tr"]) == 2
    err = capsys.readouterr().err
    assert "HF_DATASETS_OFFLINE" in err and "malhajar/mmlu-tr" in err and "--check --prefetch" in err


def test_adapter_for_another_base_is_refused_before_loading(tiny_model_dir, tmp_path):
    from neuronmoe.evaluation.runner import check_adapter, read_adapter_config
    from neuronmoe.models import load_config

    ad = tmp_path / "adapter"
    ad.mkdir()
    cfg = {"peft_type": "NEURONMOE", "experts_per_layer": [2, 1, 1, 2],
           "base_model_fingerprint": {"model_type": "llama", "num_layers": 4, "hidden_size": 32, "intermediate_size": 64},
           "base_model_name_or_path": "other"}
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    from neuronmoe.utils.checks import BaseModelMismatchError

    with pytest.raises(BaseModelMismatchError, match=r"another base model \(4 layers, the base model \(llama\) has 3\)"):
        check_adapter(read_adapter_config(ad), load_config(str(tiny_model_dir)), str(ad))
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        read_adapter_config(tmp_path)


def test_bad_flags(data_root, capsys):
    assert main(["evaluate", "--output-dir", str(data_root), "--local-sizes", "cloze_items"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["evaluate", "--output-dir", str(data_root), "--prefetch"]) == 2
    assert main(["report", "--output-dir", str(data_root / "nothing")]) == 2
    assert "no runs given" in capsys.readouterr().err


@pytest.mark.slow
def test_data_parallel_two_processes_match_one(tiny_model_dir, data_root):
    """torchrun x2 (gloo on CPU): requests split by rank, gathered on rank 0, same scores as one process."""
    import os
    import subprocess
    import sys

    assert _eval(tiny_model_dir, data_root, "--languages", "en,el", "--run-name", "single") == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "neuronmoe",
           "evaluate", "--model", str(tiny_model_dir), "--output-dir", str(data_root), "--device", "cpu", "--dtype", "float32",
           "--local-sizes", SIZES, "--languages", "en,el", "--run-name", "dp"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Building contexts for udhr_cloze_el on rank 1" in proc.stderr  # both ranks took part
    single = json.loads((data_root / "eval" / "single" / "results.json").read_text())["results"]
    dp = json.loads((data_root / "eval" / "dp" / "results.json").read_text())["results"]
    for task, res in single.items():
        for key, val in res.items():
            if isinstance(val, float):
                assert dp[task][key] == pytest.approx(val, rel=1e-5), (task, key)
