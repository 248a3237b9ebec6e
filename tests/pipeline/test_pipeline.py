"""Orchestration: the stage plan, skip/resume by fingerprints, the report, the paper-scale dry run."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from neuronmoe.pipeline import PipelineSettings, is_complete, paper_dry_run, plan, run_pipeline

ROOT = Path(__file__).resolve().parents[2]


def _cfg(runner, **kw):
    return PipelineSettings(output_dir=str(runner.out), **kw)


def test_plan_order_deps_and_settings():
    cfg = PipelineSettings(output_dir="/o", model="gemma3-270m", source="en", target="tr", neg_langs=["hu", "tr"])
    st = plan(cfg)
    names = [s.name for s in st]
    assert names[:3] == ["data", "neurons", "similarity"] and names[-2:] == ["analyze-experts", "figures"]
    for i, s in enumerate(st):
        assert all(names.index(d) < i for d in s.deps), s.name
        assert s.argv[s.argv.index("--output-dir") + 1] == "/o"
    by = {s.name: s for s in st}
    assert by["neurons"].argv[by["neurons"].argv.index("--languages") + 1] == "en,tr,hu"
    assert by["data"].argv[by["data"].argv.index("--neg-langs") + 1] == "hu"
    assert "train-neuronmoe-s1" in by["train-neuronmoe-s2"].deps
    assert by["train-neuronmoe-s2"].argv[by["train-neuronmoe-s2"].argv.index("--replay-languages") + 1] == "en"
    assert all(by[n].argv[by[n].argv.index("--model") + 1] == "gemma3-270m" for n in names if "--model" in by[n].argv)
    evals = [s for s in st if s.name.startswith("eval-")]
    assert [s.argv[s.argv.index("--label") + 1] for s in evals] == ["Dense", "LayerMoE-S1", "NeuronMoE-EN", "NeuronMoE-S1", "NeuronMoE"]
    assert "--adapter" not in evals[0].argv and evals[-1].argv[evals[-1].argv.index("--adapter") + 1] == "/o/train/neuronmoe-s2/adapter"


def test_training_runs_leave_heldout_perplexity_to_the_evaluate_stages():
    """By default the train stages skip their own held-out perplexity (the evaluate stages score the same files);
    --train-heldout / TRAIN_HELDOUT=1 gives it back, with the training profile's languages."""
    from neuronmoe.cli import build_parser
    from neuronmoe.training.settings import TrainSettings

    def heldout(cfg):  # each train stage's command, parsed and resolved as the stage will
        trains = [s for s in plan(cfg) if s.kind == "train"]
        assert len(trains) == 4
        return [TrainSettings.resolve(build_parser().parse_args(s.argv), environ={}).config()["heldout_languages"]
                for s in trains]

    assert heldout(PipelineSettings(output_dir="/o")) == [[]] * 4
    assert heldout(PipelineSettings.resolve(environ={"TRAIN_HELDOUT": "1", "OUTPUT_DIR": "/o"})) == ["auto"] * 4


def test_runs_everything_then_skips_then_reruns_downstream_only(fake_runner):
    cfg = _cfg(fake_runner)
    run_pipeline(cfg, runner=fake_runner, python="python")
    first = fake_runner.subcommands()
    assert len(first) == len(plan(cfg)) == 16
    assert all("--resume" in c for c in fake_runner.calls if c[0] == "train")
    report = (fake_runner.out / "report.md").read_text()
    assert "| NeuronMoE-S1 | 6 (-25%) |" in report  # 6 experts vs LayerMoE's 8, from allocation/neuronmoe.json
    assert "| Dense | - | - |" in report and "figures/expert_heatmap.png" in report
    # every cell carries its standard error; significant paired differences are marked and listed
    rows: dict[str, str] = {}
    for line in report.splitlines():  # Table 1 comes first, the list of significant differences after it
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    se = 100 * (0.4 * 0.6 / 199) ** 0.5
    assert f"40.00 ± {se:.2f} ▲D" in rows["NeuronMoE-S1"]  # 80 vs 60 of 200 items right: McNemar p < 1e-5
    assert "▲D" in rows["LayerMoE-S1"] and "▲" not in rows["Dense"] and "±" in rows["Dense"]
    bpb = rows["NeuronMoE-S1"].split("|")[-2]
    assert "1.385 ±" in bpb and "▲D" in bpb and "▲L" in bpb  # 0.96 vs 0.97 nats per byte, paired over documents
    assert "▲X / ▼X: significantly better / worse" in report and "Paired tests:" in report
    assert "| NeuronMoE-S1 | Dense | udhr_cloze/el (acc) | +10.00 pts (better)" in report
    timings = json.loads((fake_runner.out / "pipeline/timings.json").read_text())
    assert set(s.name for s in plan(cfg)) <= set(timings)

    fake_runner.calls.clear()
    run_pipeline(cfg, runner=fake_runner, python="python")
    assert fake_runner.calls == []  # everything up to date
    run_pipeline(cfg, runner=fake_runner, python="python", rerun=["eval-dense"])
    assert fake_runner.subcommands() == ["evaluate:dense"]  # forced; it changes no marker others read
    fake_runner.calls.clear()
    (fake_runner.out / "pipeline/state/train-layermoe-s1.json").unlink()  # e.g. killed before it recorded
    run_pipeline(cfg, runner=fake_runner, python="python", rerun=["train-layermoe-s1"], only=["train-layermoe-s1"])
    assert fake_runner.calls[0][0] == "train" and "--overwrite" in fake_runner.calls[0]  # forced: start afresh
    fake_runner.calls.clear()
    with pytest.raises(ValueError, match="unknown stage"):
        run_pipeline(cfg, runner=fake_runner, python="python", rerun=["nope"])

    # the neuron stage is redone (new manifest): its dependants rerun, the others do not (an allocation
    # whose content did not change would not retrain: markers are compared by content)
    (fake_runner.out / "neurons/manifest.json").write_text('{"n": "again"}')
    run_pipeline(cfg, runner=fake_runner, python="python")
    again = fake_runner.subcommands()
    assert "prepare-data:" not in again and "similarity:layermoe" not in again and "train:layermoe-s1" not in again
    assert {"allocate:neuronmoe", "allocate:neuronmoe-en", "train:neuronmoe-s1", "train:neuronmoe-s2",
            "evaluate:neuronmoe-s1", "analyze-experts:neuronmoe-s1", "figures:"} <= set(again)
    assert all("--overwrite" in c for c in fake_runner.calls if c[0] == "train")


def test_failure_then_resume_from_failed_stage(fake_runner):
    cfg = _cfg(fake_runner)
    fake_runner.fail_at = "train:neuronmoe-s1"
    with pytest.raises(RuntimeError, match="train-neuronmoe-s1 failed"):
        run_pipeline(cfg, runner=fake_runner, python="python")
    done = fake_runner.subcommands()
    assert done[-1] == "train:neuronmoe-en-s1"
    stages = {s.name: s for s in plan(cfg)}
    assert is_complete(stages["train-layermoe-s1"], stages, fake_runner.out)
    assert not is_complete(stages["train-neuronmoe-s1"], stages, fake_runner.out)
    fake_runner.calls.clear()
    run_pipeline(cfg, runner=fake_runner, python="python")
    assert fake_runner.subcommands()[0] == "train:neuronmoe-s1"
    assert "--resume" in fake_runner.calls[0]


def test_stage_that_writes_no_marker_is_an_error(fake_runner):
    cfg = _cfg(fake_runner)
    with pytest.raises(RuntimeError, match="did not write"):
        run_pipeline(cfg, runner=lambda cmd: 0, python="python", only=["data"])


def test_paper_dry_run_facts():
    facts = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["el", "tr", "hu"])
    a = facts["allocations"]
    assert a["neuronmoe-el"]["experts_per_layer"][:3] == [6, 2, 1]
    assert {k: v["total_experts"] for k, v in a.items()} == {"neuronmoe-el": 49, "neuronmoe-tr": 50, "neuronmoe-hu": 47,
                                                            "neuronmoe-en": 37, "layermoe": 84}
    assert round(100 * a["neuronmoe-el"]["moe_ffn_change_vs_layermoe"], 1) == -41.7
    # 21 new experts x 3 * 3072 * 8192 + routers
    assert a["neuronmoe-el"]["params"]["new_expert_params"] == 21 * 3 * 3072 * 8192
    assert facts["train_stage1"]["learning_rate"] == 1e-4 and facts["train_stage1"]["max_steps"] == 15000
    cmds = facts["commands"]
    trains = [c for c in cmds if " train " in c]
    assert len(trains) == 9 and all("--deepspeed zero2" in c and c.startswith("torchrun --nproc_per_node=8 -m neuronmoe") for c in trains)
    assert sum("--stage 2" in c for c in trains) == 2
    assert any(c.startswith("neuronmoe analyze-experts") and "--run neuronmoe-el-s1" in c for c in cmds)
    # a language without the paper's cells is evaluated on what lm-eval ships for it (issue 28: it used to stop here)
    de = paper_dry_run("llama-3.2-3b", "/tmp/paper", ["de"])
    assert de["eval_suite"]["arc"] == {"en": "arc_challenge", "de": "arc_de"} and de["eval_coverage"]["from_families"] == ["de"]


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_reproduce_paper_cli_and_script(tmp_path, capsys):
    from neuronmoe.cli import main

    assert main(["reproduce-paper", "--dry-run", "--allocations", "published", "--nproc", "8"]) == 0
    out = capsys.readouterr().out
    assert "neuronmoe-el    49 experts" in out and "-41.7%" in out
    assert "--allocation llama-3.2-3b-tr-neuronmoe" in out and "torchrun --nproc_per_node=8" in out
    # on 4 GH200s LayerMoE's 8 x 1,024 tokens per device do not fit (budget): the dry run says what does
    assert main(["reproduce-paper", "--dry-run", "--allocations", "published", "--nproc", "4"]) == 2
    assert "TRAIN_BATCH_SIZE=4 GRADIENT_ACCUMULATION_STEPS=2 keeps the effective batch 32" in capsys.readouterr().err
    env = dict(os.environ, NEURONMOE_SKIP_SETUP="1", PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
               OUTPUT_DIR=str(tmp_path / "o"), HF_HUB_OFFLINE="1")
    r = subprocess.run(["bash", "scripts/reproduce_paper.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"--output-dir {tmp_path / 'o'}" in r.stdout and "49 experts" in r.stdout
    r = subprocess.run(["bash", "scripts/run_pipeline.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "[pipeline] data: -m neuronmoe prepare-data" in r.stdout and "[pipeline] figures:" in r.stdout
    assert not (tmp_path / "o" / "report.md").exists()


def _reparsed(argv: list[str]):
    """``argv`` parsed by the CLI's own parser and resolved by the command's settings class, and those settings
    rendered again (the flags given, in ``argv``'s order)."""
    from neuronmoe.cli import build_parser, settings_of

    s = settings_of(argv[0]).resolve(build_parser().parse_args(argv), environ={})
    given = [n for n, w in s.provenance().items() if w.startswith("--")]
    pos = {n: argv.index(s.to_argv([n])[0]) for n in given}
    return s, [argv[0], *s.to_argv(sorted(given, key=pos.get))]


def test_every_planned_command_is_its_stage_settings_rendered():
    """The pipeline's and the paper plan's commands come from the stages' settings: each parses with the CLI's
    parser, resolves without error, and renders back to exactly itself (Settings.to_argv)."""
    from neuronmoe.pipeline.paper import paper_plan
    from neuronmoe.pipeline.paper_check import _argv

    cfg = PipelineSettings(output_dir="/o", model="gemma3-270m", source="en", target="tr", neg_langs=["hu"],
                           old_langs=["de"], analysis_limit=5, sample_sizes=[30])
    cmds = [s.argv for s in plan(cfg)]
    cmds += [_argv(c) for c in paper_plan(nproc=8)]
    cmds += [_argv(c) for c in paper_plan(nproc=2, allocations="published", targets=["el"], layermoe_budget=60)]
    assert {c[0] for c in cmds} >= {"prepare-data", "neurons", "similarity", "allocate", "allocation-gate", "train",
                                    "evaluate", "analyze-experts", "figures", "report"}
    for argv in cmds:
        s, again = _reparsed(argv)
        assert again == argv, (argv, again)
    s, _ = _reparsed(next(c for c in cmds if c[0] == "train" and "--init-adapter" in c))
    assert (s.stage, s.replay_languages, s.run_name) == (2, ["en", "de"], "neuronmoe-s2")
    s, _ = _reparsed(next(c for c in cmds if c[0] == "allocate" and "--bootstrap" in c))
    assert (s.bootstrap, s.sample_sizes, s.progress) == (100, [30], False)


def test_a_bad_pipeline_setting_is_one_line_before_anything_runs():
    from neuronmoe.errors import ConfigError
    from neuronmoe.pipeline.settings import PipelineSettings as P

    with pytest.raises(ConfigError, match="^--target: 'el,tr': the miniature pipeline extends the model to one language"):
        P.resolve({"target": "el,tr"}, environ={})
    with pytest.raises(ConfigError, match=r"^env NUM_SENTENCES: 0 is out of range \[1, inf\)"):
        P.resolve(environ={"NUM_SENTENCES": "0"})
    with pytest.raises(ConfigError, match="^--set bootstrap: -1 is out of range"):
        P.resolve(environ={}, sets=["bootstrap=-1"])
    s = P.resolve(environ={"OLD_LANGS": "de,en", "LANGUAGES": "en,el,de,tr,ja"})
    assert (s.source, s.old, s.negatives, s.target) == ("de", ["de", "en"], ["tr", "ja"], "el")
