"""The paper's named experiments: --list, every experiment's dry run, bad input, the plans they make."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from neuronmoe.cli import main
from neuronmoe.pipeline.experiments import experiment_dry_run, get_experiment, load_experiments

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["llama-el", "qwen-el", "llama-tr-hu", "llama-bn-ne"]


def _opt(cmd: str, flag: str) -> str | None:
    argv = shlex.split(cmd)
    return argv[argv.index(flag) + 1] if flag in argv else None


def _trains(facts):
    return [c for c in facts["commands"] if " train " in c]


def test_list_names_every_experiment(capsys):
    assert list(load_experiments()) == NAMES
    assert main(["reproduce-paper", "--list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"\n{name}: " in "\n" + out
    assert "Table 1 (Qwen-1.5-1.8B rows); Table 9" in out and "tables: Table 11" in out and "Table 3; Table 6; Table 8" in out
    assert "model Qwen/Qwen1.5-1.8B (qwen1.5-1.8b); en -> el; runs layermoe-s1, neuronmoe-s1" in out


def test_llama_el_dry_run(tmp_path):
    facts = experiment_dry_run(get_experiment("llama-el"), str(tmp_path))
    a = facts["allocations"]
    assert {k: v["total_experts"] for k, v in a.items()} == {"layermoe": 84, "neuronmoe-el": 49, "neuronmoe-en": 37}
    assert "computed from Table 5" in a["neuronmoe-el"]["source"] and "equals the shipped" in a["neuronmoe-el"]["source"]
    assert round(100 * a["neuronmoe-el"]["moe_ffn_change_vs_layermoe"], 1) == -41.7
    trains = _trains(facts)
    assert [_opt(c, "--run-name") for c in trains] == ["layermoe-el-s1", "neuronmoe-el-s1", "neuronmoe-en-el-s1",
                                                      "layermoe-el-s2", "neuronmoe-el-s2"]
    assert all(_opt(c, "--output-dir") == str(tmp_path / "llama-el") for c in trains)
    sim = next(c for c in facts["commands"] if c.startswith("neuronmoe similarity"))
    assert _opt(sim, "--budget") == "70" and _opt(sim, "--capture-site") == "mlp_input"
    neurons = next(c for c in facts["commands"] if c.startswith("neuronmoe neurons"))
    assert sorted(_opt(neurons, "--languages").split(",")) == sorted("en,zh,es,el,tr,hu,de,fr,ja".split(","))
    assert _opt(sim, "--setting") == "g1" and _opt(sim, "--name") == "layermoe"  # LayerMoE's G1 measurement, once
    assert any(c.startswith("neuronmoe analyze-experts") for c in facts["commands"])
    labels = [_opt(c, "--label") for c in facts["commands"] if c.startswith("neuronmoe evaluate")]
    assert labels == ["Dense", "LayerMoE-S1", "NeuronMoE-S1", "NeuronMoE-EN", "LayerMoE", "NeuronMoE"]
    assert facts["commands"][-1] == f"neuronmoe reproduce-paper --experiment llama-el --output-dir {tmp_path} --report"


def test_qwen_el_dry_run_uses_qwen_everything(tmp_path):
    facts = experiment_dry_run(get_experiment("qwen-el"), str(tmp_path))
    assert facts["model_config"] == "qwen1.5-1.8b" and facts["dims"]["num_layers"] == 24
    a = facts["allocations"]
    assert {k: v["total_experts"] for k, v in a.items()} == {"layermoe": 72, "neuronmoe-el": 36}
    # no Llama Table 5 counts for another model: the shipped Table 9 row, and the dry run says so
    assert "shipped qwen1.5-1.8b-el-neuronmoe" in a["neuronmoe-el"]["source"]
    assert "publishes no EN+el unit counts for qwen1.5-1.8b" in a["neuronmoe-el"]["source"]
    assert not any("Table 5" in c for c in facts["checks"])
    assert round(100 * a["neuronmoe-el"]["moe_ffn_change_vs_layermoe"], 1) == -50.0
    # Qwen's bias-free 2048 x 5504 MLP: 12 new experts
    assert a["neuronmoe-el"]["params"]["new_expert_params"] == 12 * 3 * 2048 * 5504
    trains = _trains(facts)
    assert len(trains) == 2 and not any("--stage 2" in c for c in trains)  # stage 1 only, as in the paper
    assert all(_opt(c, "--model") == "Qwen/Qwen1.5-1.8B" for c in facts["commands"] if " --model " in c)
    sim = next(c for c in facts["commands"] if c.startswith("neuronmoe similarity"))
    assert _opt(sim, "--budget") == "60" and _opt(sim, "--capture-site") == "mlp_input" and _opt(sim, "--setting") == "g1"
    budget = next(r for r in facts["settings"] if r["key"] == "layermoe.budget")
    assert budget["status"] == "deviation" and "not published" in budget["note"] and not facts["mismatches"]
    assert not any("analyze-experts" in c for c in facts["commands"])
    assert "attention-layer similarity" in facts["experiment"]["capture_site_why"]
    published = experiment_dry_run(get_experiment("qwen-el"), str(tmp_path), allocations="published")
    assert [_opt(c, "--allocation") for c in _trains(published)] == ["qwen1.5-1.8b-el-layermoe", "qwen1.5-1.8b-el-neuronmoe"]
    assert not any(c.startswith(("neuronmoe similarity", "neuronmoe allocate")) for c in published["commands"])
    rows = {r["key"]: r for r in published["settings"]}  # the settings table takes Table 9, not Table 2, for Qwen
    assert (rows["layermoe.experts"]["plan"], rows["layermoe.experts"]["status"]) == (72, "ok") and not published["mismatches"]
    assert rows["layermoe.experts"]["label"] == "experts (Table 9)" and "layermoe.budget" not in rows


def test_llama_tr_hu_dry_run(tmp_path):
    facts = experiment_dry_run(get_experiment("llama-tr-hu"), str(tmp_path), allocations="published")
    a = facts["allocations"]
    assert {k: v["total_experts"] for k, v in a.items()} == {"layermoe": 84, "neuronmoe-tr": 50, "neuronmoe-hu": 47}
    assert [(_opt(c, "--run-name"), _opt(c, "--allocation")) for c in _trains(facts)] == [
        ("layermoe-tr-s1", "llama-3.2-3b-el-layermoe"), ("neuronmoe-tr-s1", "llama-3.2-3b-tr-neuronmoe"),
        ("layermoe-hu-s1", "llama-3.2-3b-el-layermoe"), ("neuronmoe-hu-s1", "llama-3.2-3b-hu-neuronmoe")]
    labels = [_opt(c, "--label") for c in facts["commands"] if c.startswith("neuronmoe evaluate")]
    assert labels == ["Dense", "LayerMoE-S1 (tr)", "NeuronMoE-S1 (tr)", "LayerMoE-S1 (hu)", "NeuronMoE-S1 (hu)"]
    neurons = next(c for c in facts["commands"] if c.startswith("neuronmoe neurons"))
    assert sorted(_opt(neurons, "--languages").split(",")) == sorted("en,zh,es,el,tr,hu,de,fr,ja".split(","))


def test_llama_bn_ne_dry_run(tmp_path):
    facts = experiment_dry_run(get_experiment("llama-bn-ne"), str(tmp_path))
    a = facts["allocations"]
    assert set(a) == {"neuronmoe-bn", "neuronmoe-ne"}
    for t in ("bn", "ne"):  # the paper prints neither counts nor allocations for Table 11
        assert a[f"neuronmoe-{t}"]["experts_per_layer"] is None and a[f"neuronmoe-{t}"]["params"] is None
        assert "publishes neither counts nor an allocation for llama-3.2-3b / " + t in a[f"neuronmoe-{t}"]["source"]
    assert facts["eval_suite"]["belebele"] == {"en": "belebele_eng_Latn", "bn": "belebele_ben_Beng", "ne": "belebele_npi_Deva"}
    assert facts["eval_suite"]["arc"]["bn"] == "arc_bn" and facts["eval_suite"]["mmlu"]["ne"] == "m_mmlu_ne"
    cmds = facts["commands"]
    data = next(c for c in cmds if c.startswith("neuronmoe prepare-data"))
    assert _opt(data, "--source").startswith("hf:uonlp/CulturaX,") and _opt(data, "--new-langs") == "bn,ne"  # no G1 languages
    assert not any(c.startswith("neuronmoe similarity") for c in cmds)  # no LayerMoE in Table 11
    allocs = [c for c in cmds if c.startswith("neuronmoe allocate")]
    assert [_opt(c, "--name") for c in allocs] == ["neuronmoe-bn", "neuronmoe-ne"] and not any("--compare-with" in c for c in allocs)
    assert [_opt(c, "--label") for c in cmds if c.startswith("neuronmoe evaluate")] == ["Dense", "NeuronMoE-S1 (bn)", "NeuronMoE-S1 (ne)"]
    assert [_opt(c, "--languages") for c in cmds if c.startswith("neuronmoe evaluate")] == ["en,bn,ne", "en,bn", "en,ne"]
    with pytest.raises(ValueError, match=r"publishes no NeuronMoE-S1 allocation for llama-3.2-3b / bn .*use --allocations computed"):
        experiment_dry_run(get_experiment("llama-bn-ne"), str(tmp_path), allocations="published")


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_dry_run_through_the_cli(name, tmp_path, capsys):
    assert main(["reproduce-paper", "--experiment", name, "--dry-run", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# experiment {name}: ") and "# allocations" in out
    assert f"neuronmoe reproduce-paper --experiment {name} --output-dir {tmp_path} --report" in out


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_script_runs_an_experiment_dry_run_and_the_list(tmp_path):
    env = dict(os.environ, NEURONMOE_SKIP_SETUP="1", PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
               OUTPUT_DIR=str(tmp_path / "o"), HF_HUB_OFFLINE="1", PAPER_EXPERIMENT="qwen-el")
    r = subprocess.run(["bash", "scripts/reproduce_paper.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "# experiment qwen-el" in r.stdout and f"--output-dir {tmp_path / 'o' / 'qwen-el'}" in r.stdout
    r = subprocess.run(["bash", "scripts/reproduce_paper.sh", "--list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and all(f"{n}: " in r.stdout for n in NAMES)


@pytest.mark.parametrize("argv,match", [
    (["--experiment", "qwen"], r"no experiment 'qwen' \(did you mean qwen-el\?\); experiments: llama-el, qwen-el, llama-tr-hu, llama-bn-ne"),  # noqa: E501 (an exact message)
    (["--experiment", "qwen-el", "--model-config", "llama-3.2-3b"],
     r"allocation layermoe \(qwen1.5-1.8b-el-layermoe\): made for another base model \(24 layers, the base model \(llama\) has 28\); "
     r"the model config llama-3.2-3b does not fit the published allocations of qwen1.5-1.8b"),
    (["--experiment", "llama-tr-hu", "--model-config", "qwen1.5-1.8b"], r"28 layers, the base model \(qwen2\) has 24"),
    (["--experiment", "llama-el", "--targets", "tr"], r"--targets tr .*experiment llama-el extends to el"),
    (["--targets", "xx"], r"unknown language code 'xx'"),
    (["--report"], r"--report: give --experiment NAME"),
    (["--model-config", "/nonexistent/config"], r"--model \(env BASE_MODEL_PATH\): give the model to train for --model-config /nonexistent/config"),  # noqa: E501 (an exact message)
])
def test_bad_input_is_one_clear_line(argv, match, capsys):
    import re

    assert main(["reproduce-paper", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err


def test_experiments_yaml_is_checked(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("experiments:\n  a: {title: t, model: m, model_config: llama-3.2-3b, targets: [el], runs: [neuronmoe-s3]}\n")
    with pytest.raises(ValueError, match=r"experiment 'a': run 'neuronmoe-s3': expected one of layermoe-s1, layermoe-s2"):
        load_experiments(str(bad))
    bad.write_text("experiments:\n  a: {title: t, model: m, model_config: x, targets: [el], runs: [neuronmoe-s1], stage: 2}\n")
    with pytest.raises(ValueError, match=r"experiment 'a': unknown field\(s\) stage"):
        load_experiments(str(bad))
    bad.write_text("experiments:\n  a: {title: t, model: m, targets: [el], runs: [neuronmoe-s1]}\n")
    with pytest.raises(ValueError, match=r"experiment 'a': missing field\(s\) model_config"):
        load_experiments(str(bad))


def test_plain_plan_follows_the_model_config(capsys):
    """Without --experiment, --model-config qwen1.5-1.8b plans Qwen with Qwen's published allocations, and says
    where the paper gives no allocation (NeuronMoE-EN) instead of failing."""
    assert main(["reproduce-paper", "--dry-run", "--model-config", "qwen1.5-1.8b", "--targets", "el"]) == 0
    out = capsys.readouterr().out
    assert "model Qwen/Qwen1.5-1.8B" in out and "--model Qwen/Qwen1.5-1.8B" in out
    assert "neuronmoe-el    36 experts" in out and "layermoe        72 experts" in out and "Table 5" not in out
    assert "neuronmoe-en   ---  [computed at run time (neuron analysis -> allocate): the paper publishes neither" in out
    assert main(["reproduce-paper", "--dry-run", "--model-config", "qwen1.5-1.8b", "--targets", "el", "--allocations", "published"]) == 2
    assert "publishes no NeuronMoE-EN allocation for qwen1.5-1.8b / el (shipped: qwen1.5-1.8b-el-layermoe, qwen1.5-1.8b-el-neuronmoe)" in capsys.readouterr().err  # noqa: E501 (an exact message)


def test_paper_numbers_are_the_experiments_rows_and_languages():
    from neuronmoe.pipeline.experiments import paper_numbers

    qwen = paper_numbers(get_experiment("qwen-el"))
    assert set(qwen["rows"]) == {"LayerMoE-S1", "NeuronMoE-S1"}  # Table 1's Qwen rows, not Llama's
    assert qwen["rows"]["NeuronMoE-S1"]["belebele/en"] == 58.67 and qwen["rows"]["LayerMoE-S1"]["arc/el"] == 25.26
    assert qwen["sources"]["LayerMoE-S1"] == "Table 1 (Qwen-1.5-1.8B)"
    trhu = paper_numbers(get_experiment("llama-tr-hu"))
    assert set(trhu["rows"]) == {"Dense", "LayerMoE-S1 (tr)", "NeuronMoE-S1 (tr)", "LayerMoE-S1 (hu)", "NeuronMoE-S1 (hu)"}
    assert set(trhu["rows"]["Dense"]) == {f"{b}/{x}" for b in ("arc", "belebele", "hellaswag", "mmlu") for x in ("en", "tr", "hu")}
    assert trhu["rows"]["NeuronMoE-S1 (hu)"]["arc/hu"] == 37.67 and trhu["rows"]["Dense"]["arc/tr"] == 33.56
    el = paper_numbers(get_experiment("llama-el"))
    assert el["rows"]["NeuronMoE-EN"]["arc/el"] == 33.13 and "arc/tr" not in el["rows"]["Dense"]


def test_report_before_any_evaluation(tmp_path, capsys):
    """report.md from what exists: the allocations beside Table 2/5 (Llama Greek), missing runs listed."""
    import json

    from neuronmoe.pipeline.paper import TABLE5_EN_EL

    out = tmp_path / "llama-el"
    (out / "allocation").mkdir(parents=True)
    ours = [c + 1 for c in TABLE5_EN_EL]
    (out / "allocation" / "neuronmoe-el.json").write_text(json.dumps({"scores": ours}))
    (out / "train" / "neuronmoe-el-s1" / "adapter").mkdir(parents=True)
    (out / "train" / "neuronmoe-el-s1" / "adapter" / "adapter_config.json").write_text(json.dumps({"experts_per_layer": [2] * 28}))
    assert main(["reproduce-paper", "--experiment", "llama-el", "--output-dir", str(tmp_path), "--report"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Greek extension of Llama-3.2-3B")
    assert "| Table 4, Table 10 | analysis/expert_ap_el.md" in md
    assert "| NeuronMoE-S1 | " + ",".join(["2"] * 28) + " (56) | 6,2,1,1," in md and "(49) |" in md
    assert "| LayerMoE-S1 | not trained yet | 5,5,5,4," in md and "(84) |" in md
    assert "| NeuronMoE-EN | not trained yet | 6,2,1" in md and "(37) |" in md
    assert "### Table 5 (EN+EL unique units), en+el" in md and "| 0 | 343 | 342 |" in md and "| total | 1961 | 1933 |" in md
    assert "Not evaluated yet: dense, layermoe-el-s1, neuronmoe-el-s1, neuronmoe-en-el-s1, layermoe-el-s2, neuronmoe-el-s2." in md
