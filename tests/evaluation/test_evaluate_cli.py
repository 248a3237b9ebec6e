"""`neuronmoe evaluate` / `neuronmoe report` end to end on a tiny model, resume, failures, and the early errors."""
from __future__ import annotations

import json

import pytest

from neuronmoe.cli import main

SIZES = "cloze_items=6,heldout_docs=2,heldout_max_chars=200,cloze_prefix_words=6,cloze_suffix_words=2"


def _eval(model_dir, root, *extra):
    return main(["evaluate", "--model", str(model_dir), "--output-dir", str(root), "--device", "cpu",
                 "--dtype", "float32", "--local-sizes", SIZES, *extra])


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything tries to load model weights."""
    from neuronmoe.evaluation import runner

    def boom(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runner, "load_for_eval", boom)


def test_local_suite_end_to_end_resume_and_report(tiny_model_dir, data_root, capsys):
    assert _eval(tiny_model_dir, data_root, "--languages", "en,el", "--label", "Dense") == 0
    run = data_root / "eval" / "base-local"
    res = json.loads((run / "results.json").read_text())
    assert set(res["results"]) == {"udhr_cloze_en", "udhr_cloze_el", "heldout_ppl_en", "heldout_ppl_el"}
    for lang in ("en", "el"):
        assert 0.0 <= res["results"][f"udhr_cloze_{lang}"]["acc_norm,none"] <= 1.0  # shown beside acc, which decides
        acc = res["results"][f"udhr_cloze_{lang}"]["acc,none"]
        assert 0.0 <= acc <= 1.0 and res["n-samples"][f"udhr_cloze_{lang}"]["effective"] == 6
        se = res["results"][f"udhr_cloze_{lang}"]["acc_stderr,none"]
        assert isinstance(se, float) and se == pytest.approx((acc * (1 - acc) / 5) ** 0.5)  # closed form kept (not "N/A")
        assert res["results"][f"heldout_ppl_{lang}"]["word_perplexity,none"] > 1.0
    nm = res["neuronmoe"]
    assert nm["label"] == "Dense" and nm["experts"] is None and nm["complete"]
    assert {k: v["status"] for k, v in nm["cells"].items()} == dict.fromkeys(
        ["udhr_cloze/en", "udhr_cloze/el", "heldout_ppl/en", "heldout_ppl/el"], "done")
    # per-item rows for the paired tests: 0/1 per cloze item, (loglik, bytes) per held-out document
    cloze = [json.loads(x) for x in (run / "items" / "udhr_cloze__el.jsonl").read_text().splitlines()]
    assert len(cloze) == 6 and {r["acc"] for r in cloze} <= {0, 1} and all(r["doc_hash"] for r in cloze)
    # each item carries its two baselines; the cell's summary is in results.json
    assert all(r["baselines"]["chance"] == 0.25 and 0 <= r["baselines"]["unigram"] <= 1 for r in cloze)
    base = nm["cells"]["udhr_cloze/el"]["baselines"]
    assert base["items"] == 6 and base["chance"] == 0.25
    assert base["unigram"] == pytest.approx(sum(r["baselines"]["unigram"] for r in cloze) / 6)
    ppl = [json.loads(x) for x in (run / "items" / "heldout_ppl__en.jsonl").read_text().splitlines()]
    assert len(ppl) == 2 and all(r["bits_per_byte"][0] < 0 and r["bits_per_byte"][1] > 0 for r in ppl)
    man = json.loads((run / "manifest.json").read_text())
    assert man["stage"] == "evaluate" and "results.json" in man["files"] and "items/udhr_cloze__el.jsonl" in man["files"]
    assert man["config"]["dtype"] == "float32" and man["inputs"]["model"]["num_layers"] == 3
    assert man["counts"]["cells_run"] == 4
    from neuronmoe.utils.device import cpu_has_native_bf16

    assert man["counts"]["native_bf16"] is cpu_has_native_bf16() and man["counts"]["threads"] >= 1  # recorded, not used
    # the same command again: every cell is up to date, nothing is recomputed
    mtime = (run / "cells" / "udhr_cloze__el.json").stat().st_mtime_ns
    assert _eval(tiny_model_dir, data_root, "--languages", "en,el", "--label", "Dense") == 0
    assert (run / "cells" / "udhr_cloze__el.json").stat().st_mtime_ns == mtime
    assert json.loads((run / "manifest.json").read_text())["counts"]["cells_reused"] == 4
    # other inputs (another seed) into the same folder: refused without --overwrite, then replaced
    capsys.readouterr()
    assert _eval(tiny_model_dir, data_root, "--languages", "en,el", "--seed", "7") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _eval(tiny_model_dir, data_root, "--languages", "en,el", "--seed", "7", "--overwrite", "--run-name", "base-local") == 0
    # report: Table-1 layout with standard errors, as Markdown + CSV
    assert main(["report", "--output-dir", str(data_root)]) == 0
    md = (data_root / "eval" / "table.md").read_text()
    assert md.splitlines()[0] == "| Model | #Exp | Added params | UDHR-cloze EN | UDHR-cloze EL | Held-out BPB EN | Held-out BPB EL |"
    row = md.splitlines()[2]
    assert row.startswith("| base-local | - | - | ") and row.count("±") == 4
    # both cloze baselines per language, on the items the runs evaluated
    lines = md.splitlines()
    assert any(line.startswith("Baselines on the same items") for line in lines)
    for lang in ("EN", "EL"):
        row = next(line for line in lines if line.startswith(f"| UDHR-cloze {lang} | 6 | 25.00 | "))
        assert row.endswith("| every run |") and row.count("±") == 1
    csv_head = (data_root / "eval" / "table.csv").read_text().splitlines()[0]
    assert csv_head.startswith("model,experts,added_params,udhr_cloze_en_acc,udhr_cloze_en_acc_se")


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_unknown_task_suggests_close_names(tiny_model_dir, data_root, capsys):
    assert main(["evaluate", "--model", str(tiny_model_dir), "--output-dir", str(data_root), "--tasks", "hellaswag_gr,arc_challenge"]) == 2
    err = capsys.readouterr().err
    assert "unknown lm-eval task(s): 'hellaswag_gr'" in err and "hellaswag_tr" in err
    assert not (data_root / "eval" / "tasks-hellaswag_gr").exists()


def test_unpinned_paper_datasets_are_refused_before_anything_loads(data_root, no_model_load, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert main(["evaluate", "--model", "llama-3.2-3b", "--output-dir", str(data_root), "--suite", "paper",
                 "--languages", "en,tr"]) == 2
    err = capsys.readouterr().err
    assert "without a pinned revision" in err and "malhajar/arc-tr" in err and "--allow-unpinned" in err
    assert "ilsp/mmlu_greek" not in err  # pinned


def test_offline_paper_suite_fails_early_with_the_dataset_list(data_root, no_model_load, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(data_root / "empty-hf-home"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # a shipped config (no weights: nothing is loaded before the dataset check)
    assert main(["evaluate", "--model", "llama-3.2-3b", "--output-dir", str(data_root), "--suite", "paper",
                 "--languages", "tr", "--allow-unpinned"]) == 2
    err = capsys.readouterr().err
    assert "HF_DATASETS_OFFLINE" in err and "malhajar/mmlu-tr" in err and "--check" in err


def test_check_offline_reports_every_cell_without_loading_a_model(data_root, no_model_load, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(data_root / "empty-hf-home"))
    assert main(["evaluate", "--model", "/nonexistent/model", "--output-dir", str(data_root), "--suite", "paper",
                 "--languages", "el", "--check"]) == 1
    out = capsys.readouterr().out
    for ds in ("ilsp/arc_greek", "facebook/belebele", "ilsp/hellaswag_greek", "ilsp/mmlu_greek"):
        assert ds in out
    assert "local cache only" in out and out.count("| FAIL |") == 4 and "does not load" in out
    assert "c7eb3f8c56bc" in out  # the pinned Greek ARC commit


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_check_against_replicas_passes_and_catches_a_bad_revision(data_root, tmp_path, no_model_load, capsys):
    from support.replicas import build_replicas

    good = build_replicas(tmp_path / "good")
    argv = ["evaluate", "--model", "/nonexistent/model", "--output-dir", str(data_root), "--suite", "paper", "--check"]
    assert main([*argv, "--dataset-replicas", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.count("| ok |") == 16 and "all cells ok" in out
    assert "| mmlu/tr | mmlu_tr |" in out and "4 from dev (4 rows)" in out
    # the splits each cell's data came with, as datasets made them of the files (Turkish MMLU: no configs: block)
    mmlu_tr = next(line for line in out.splitlines() if line.startswith("| mmlu/tr |"))
    assert "| dev 228, validation 114, test 114 |" in mmlu_tr and "abstract_algebra, anatomy, ..." in mmlu_tr
    # the ilsp/mmlu_greek revision whose dev split copied test, and 5-shot Turkish MMLU from a 4-row dev
    bad = build_replicas(tmp_path / "bad", dev_is_test=("anatomy", "virology"))
    assert main([*argv, "--languages", "el,tr", "--shots", "mmlu/tr=5", "--dataset-replicas", str(bad)]) == 1
    out = capsys.readouterr().out
    mmlu_el = next(line for line in out.splitlines() if line.startswith("| mmlu/el |"))
    assert "FAIL" in mmlu_el and "4 few-shot item(s) are also evaluated items" in mmlu_el  # 2 copied test rows x 2 subjects
    mmlu_tr = next(line for line in out.splitlines() if line.startswith("| mmlu/tr |"))
    assert "FAIL" in mmlu_tr and "5 shots > 4 few-shot rows" in mmlu_tr
    # the published-script profile draws Belebele shots from the test split itself: a warning, not a failure
    assert main([*argv, "--languages", "hu", "--profile", "published-script", "--dataset-replicas", str(good)]) == 0
    out = capsys.readouterr().out
    assert "| belebele/hu |" in out and "WARN" in out and "evaluated split 'test' itself" in out
    assert "10 from val" in out  # hellaswag_hu has no train split: its shots come from val


def test_shots_above_the_fewshot_split_are_refused_before_the_model_loads(tiny_model_dir, data_root, tmp_path, no_model_load, capsys):
    from support.replicas import build_replicas

    reps = build_replicas(tmp_path / "r")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--output-dir", str(data_root), "--suite", "paper",
                 "--languages", "tr", "--shots", "mmlu/tr=5", "--dataset-replicas", str(reps)]) == 2
    err = capsys.readouterr().err
    assert "mmlu/tr" in err and "5 shots but split 'dev' has 4 usable row(s)" in err and "mmlu/tr=N@split" in err


def test_a_failing_cell_is_reported_the_others_written_and_a_rerun_retries_it(tiny_model_dir, data_root, tmp_path, capsys):
    from support.replicas import build_replicas

    reps = build_replicas(tmp_path / "r", broken=("facebook/belebele", "eng_Latn"))
    argv = ["evaluate", "--model", str(tiny_model_dir), "--output-dir", str(data_root), "--device", "cpu", "--dtype", "float32",
            "--tasks", "arc_challenge,belebele_eng_Latn,hellaswag", "--dataset-replicas", str(reps), "--limit", "2",
            "--run-name", "r"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of 3 cell(s) failed" in err and "belebele_eng_Latn" in err
    run = data_root / "eval" / "r"
    res = json.loads((run / "results.json").read_text())
    assert set(res["results"]) == {"arc_challenge", "hellaswag"}
    assert res["neuronmoe"]["cells"]["belebele_eng_Latn/en"]["status"] == "failed" and not res["neuronmoe"]["complete"]
    assert not (run / "manifest.json").exists()  # not complete: no completion marker
    # repaired data: the rerun runs the failed cell only
    build_replicas(tmp_path / "r")
    mtime = (run / "cells" / "arc_challenge__-.json").stat().st_mtime_ns
    assert main(argv) == 0
    res = json.loads((run / "results.json").read_text())
    assert set(res["results"]) == {"arc_challenge", "hellaswag", "belebele_eng_Latn"} and res["neuronmoe"]["complete"]
    assert (run / "cells" / "arc_challenge__-.json").stat().st_mtime_ns == mtime
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert counts["cells_run"] == 1 and counts["cells_reused"] == 2


def test_adapter_for_another_base_is_refused_before_loading(tiny_model_dir, data_root, tmp_path, no_model_load, capsys):
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
    assert _eval(tiny_model_dir, data_root, "--languages", "en", "--adapter", str(ad)) == 2
    assert "made for another base model" in capsys.readouterr().err


def test_bad_flags(data_root, capsys):
    # a run name is one folder name: never a path out of $OUTPUT_DIR/eval (nothing is written)
    assert main(["evaluate", "--output-dir", str(data_root), "--run-name", "../../../x", "--languages", "en"]) == 2
    assert "--run-name '../../../x': contains a path separator" in capsys.readouterr().err
    assert not (data_root / "eval").exists() and not (data_root.parent / "x").exists()
    assert main(["evaluate", "--output-dir", str(data_root), "--tasks", "arc_hu", "--local-sizes", "cloze_items=3"]) == 2
    assert "--local-sizes: applies to --suite local only" in capsys.readouterr().err
    assert main(["evaluate", "--output-dir", str(data_root), "--local-sizes", "cloze_items"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["evaluate", "--output-dir", str(data_root), "--tasks", "arc_hu", "--profile", "paper"]) == 2
    assert "--profile and --shots apply to a --suite" in capsys.readouterr().err
    assert main(["evaluate", "--output-dir", str(data_root), "--dataset-replicas", str(data_root / "nope")]) == 2
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
