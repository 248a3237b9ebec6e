"""The paper plan runs through the pipeline's runner (issue 22, item 8): one plan format, one orchestrator."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuronmoe.pipeline.paper import paper_dry_run
from neuronmoe.pipeline.paper_stages import paper_stages, plan_output_dir, split_launch
from neuronmoe.pipeline.run import StageFailedError, run_stages


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> list[str]:
    return paper_dry_run(output_dir=str(tmp_path_factory.mktemp("paper") / "out"))["commands"]


def _stages(commands):
    return paper_stages(commands, plan_output_dir(commands))


class FakeCluster:
    """Runs nothing: writes each stage's completion marker (content: the command, so a rerun changes it)."""

    def __init__(self, stages, out: Path, fail: str | None = None):
        self.stages = list(stages)
        self.out, self.fail, self.calls = out, fail, []

    def __call__(self, cmd: list[str]) -> int:
        launch, argv = (None, cmd[3:]) if cmd[1:3] == ["-m", "neuronmoe"] else split_launch(cmd)
        stage = next(s for s in self.stages if argv[: len(s.argv)] == s.argv and s.launch == launch)
        self.calls.append((stage.name, cmd))
        if stage.name == self.fail:
            return 2
        marker = self.out / stage.marker
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"cmd": cmd, "n": len(self.calls)}))
        return 0


def test_every_command_of_the_plan_is_one_stage_with_its_own_marker(commands):
    stages = _stages(commands)
    assert len(stages) == len(commands)
    assert len({s.marker for s in stages}) == len(stages)
    assert [s.argv[0] for s in stages] == [split_launch(c.split())[1][0] for c in commands]


def test_training_keeps_its_launcher_and_the_runner_owns_resume(commands):
    train = [s for s in _stages(commands) if s.kind == "train"]
    assert train and all(s.launch and s.launch[0] == "torchrun" for s in train)
    assert all("--resume" not in s.argv and "--overwrite" not in s.argv for s in train)


def test_dependencies_follow_what_each_stage_reads(commands):
    by = {s.name: s for s in _stages(commands)}
    assert by["neurons"].deps == ["data"]
    assert "allocation-gate" in by["train-neuronmoe-el-s1"].deps  # nothing trains before the gate
    assert "train-neuronmoe-el-s1" in by["train-neuronmoe-el-s2"].deps  # stage 2 reads the stage-1 adapter
    assert by["eval-neuronmoe-tr-s1"].deps == ["data", "train-neuronmoe-tr-s1"]
    assert "train-layermoe-el-s1" not in by["eval-neuronmoe-el-s1"].deps
    assert {"similarity", "allocation-gate"} <= set(by["train-layermoe-tr-s1"].deps)  # LayerMoE's G1 allocation


def test_a_language_without_paper_reference_trains_on_its_own_allocations(tmp_path, monkeypatch):
    from neuronmoe.pipeline.experiments import reproduce_facts

    facts = reproduce_facts(None, ["sw"], None, None, str(tmp_path / "o"), "zero2", 8, "computed")
    by = {s.name: s for s in _stages(facts["commands"])}
    assert "allocation-gate" not in by  # no paper reference: no gate
    assert by["train-layermoe-sw-s1"].deps == ["data", "similarity"]
    assert by["train-neuronmoe-sw-s1"].deps == ["data", "allocate-neuronmoe-sw"]


def test_a_second_run_skips_finished_stages(commands):
    stages = _stages(commands)
    out = Path(plan_output_dir(commands))
    fake = FakeCluster(stages, out)
    run_stages(stages, out, runner=fake)
    assert [n for n, _ in fake.calls] == [s.name for s in stages]
    fake.calls.clear()
    run_stages(stages, out, runner=fake)
    assert fake.calls == []


def test_a_changed_input_reruns_only_what_reads_it(tmp_path):
    cmds = paper_dry_run(output_dir=str(tmp_path / "o"))["commands"]
    stages, out = _stages(cmds), tmp_path / "o"
    fake = FakeCluster(stages, out)
    run_stages(stages, out, runner=fake)
    fake.calls.clear()
    (out / "train/neuronmoe-tr-s1/manifest.json").write_text("{}")  # that run was redone by hand
    run_stages(stages, out, runner=fake)
    assert [n for n, _ in fake.calls] == ["eval-neuronmoe-tr-s1", "figures", "report"]


def test_a_killed_training_run_resumes_and_a_changed_one_starts_afresh(tmp_path):
    cmds = paper_dry_run(output_dir=str(tmp_path / "o"))["commands"]
    stages, out = _stages(cmds), tmp_path / "o"
    fake = FakeCluster(stages, out, fail="train-neuronmoe-el-s1")
    with pytest.raises(StageFailedError, match="train-neuronmoe-el-s1"):
        run_stages(stages, out, runner=fake)
    (out / "train/neuronmoe-el-s1").mkdir(parents=True)  # its checkpoints
    fake.fail, fake.calls = None, []
    run_stages(stages, out, runner=fake)
    name, cmd = fake.calls[0]
    assert name == "train-neuronmoe-el-s1" and cmd[-1] == "--resume" and cmd[0] == "torchrun"
    fake.calls.clear()
    run_stages(stages, out, runner=fake, rerun=["train-neuronmoe-el-s1"])
    assert fake.calls[0][1][-1] == "--overwrite"
    evals = [c for n, c in fake.calls if n == "eval-neuronmoe-el-s1"]
    assert evals and evals[0][-1] == "--overwrite"  # its adapter changed: stale cells are replaced


def test_an_unknown_command_is_refused():
    with pytest.raises(ValueError, match="does not know"):
        paper_stages(["neuronmoe frobnicate --output-dir x"], "x")
