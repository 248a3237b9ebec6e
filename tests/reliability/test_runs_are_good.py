"""A finished run is a good run (issue 24, item 3): training stops at the first non-finite loss or gradient
norm with one clear error, a run whose held-out perplexity is not finite is never marked complete, and a run
that fails before its first checkpoint leaves nothing that blocks the same command run again."""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from neuronmoe.errors import UserError, error_line
from neuronmoe.training.run import train
from neuronmoe.training.settings import TrainSettings

SETS = ["cutoff_len=32", "per_device_train_batch_size=4", "max_steps=4", "logging_steps=1", "save_steps=2", "save_last=true",
        "save_total_limit=5", "learning_rate=0.003", "bf16=false", "report_to=none", "heldout_max_tokens=64",
        "heldout_block_len=32", "max_samples=24"]


class Poison(TrainerCallback):
    """At the start of ``step`` (1-based), make the first trainable weight (``what="weight"``) or its gradient
    (``what="grad"``, the loss stays finite) NaN; ``what="end"``: the weights after the last step."""

    def __init__(self, step: int, what: str = "weight"):
        self.step, self.what = step, what

    @staticmethod
    def _param(model):
        return next(p for p in model.parameters() if p.requires_grad)

    def on_step_begin(self, args, state, control, model=None, **kw):
        if state.global_step + 1 != self.step or self.what == "end":
            return
        p = self._param(model)
        if self.what == "weight":
            with torch.no_grad():
                p.fill_(float("nan"))
        else:
            p.register_hook(lambda g: torch.full_like(g, float("nan")))

    def on_train_end(self, args, state, control, model=None, **kw):
        if self.what == "end":
            with torch.no_grad():
                self._param(model).fill_(float("inf"))


@pytest.fixture
def out(ws, tmp_path):
    o = tmp_path / "out"
    (o / "allocation").mkdir(parents=True)
    shutil.copy(Path(ws["out"]) / "allocation" / "tiny.json", o / "allocation" / "tiny.json")
    return o


def opts(ws, out, callbacks=(), **kw) -> tuple[TrainSettings, list]:
    """The run's settings (as `neuronmoe train` resolves them) and the test's trainer callbacks."""
    kw = {"data_dir": ws["data"], **kw}
    s = TrainSettings.resolve(environ={}, sets=list(SETS), stage=1, model=ws["model"], output_dir=str(out),
                              allocation="tiny", run_name="r", profile="cpu", device="cpu", use_cache=False, **kw)
    return s, list(callbacks)


def run_train(o: tuple[TrainSettings, list]):
    return train(o[0], callbacks=o[1])


def fails(o: tuple[TrainSettings, list]) -> str:
    with pytest.raises(UserError) as e:
        run_train(o)
    line = error_line(e.value)
    assert "\n" not in line
    return line


@pytest.mark.slow
@pytest.mark.parametrize("what", ["weight", "grad"])
def test_non_finite_step_one_stops_and_the_rerun_is_not_blocked(ws, out, what):
    line = fails(opts(ws, out, callbacks=[Poison(1, what)]))
    thing = "loss" if what == "weight" else "gradient norm"
    assert f"training stopped at step 1: the {thing} is nan (not finite)" in line, line
    run = out / "train" / "r"
    assert not (run / "manifest.json").exists() and not (run / "adapter").exists()
    assert not list(run.glob("checkpoint-*"))
    # the same command again, without --resume or --overwrite: nothing of the failed run blocks it
    old_mask = os.umask(0o022)
    try:
        res = run_train(opts(ws, out))
    finally:
        os.umask(old_mask)
    # the adapter and the checkpoints follow the umask (save_pretrained wrote them 0600)
    for f in [run / "adapter" / "adapter_model.safetensors", *run.glob("checkpoint-*/adapter_model.safetensors")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert res["global_step"] == 4
    man = json.loads((run / "manifest.json").read_text())
    assert all(math.isfinite(v["perplexity"]) for v in man["result"]["perplexity"].values())


@pytest.mark.slow
def test_nan_after_a_checkpoint_stops_and_resume_uses_the_good_checkpoint(ws, out):
    line = fails(opts(ws, out, callbacks=[Poison(3)]))
    assert "training stopped at step 3: the loss is nan" in line
    run = out / "train" / "r"
    assert {p.name for p in run.glob("checkpoint-*")} == {"checkpoint-2"}  # nothing saved of the bad step
    assert not (run / "manifest.json").exists()
    with pytest.raises(FileExistsError):  # progress exists: the rerun must say --resume or --overwrite
        run_train(opts(ws, out))
    res = run_train(opts(ws, out, resume=True))
    assert res["global_step"] == 4 and res["resumed_from"].endswith("checkpoint-2")


@pytest.mark.slow
def test_non_finite_heldout_perplexity_is_never_complete(ws, out):
    line = fails(opts(ws, out, callbacks=[Poison(0, "end")]))
    assert "held-out perplexity not finite" in line and "not marked complete" in line, line
    assert not (out / "train" / "r" / "manifest.json").exists()


@pytest.mark.slow
def test_resume_refuses_data_that_changed_since_the_run_started(ws, out, tmp_path):
    """Even when the data folder is consistent again (prepare-data rerun: a new manifest), a resumed run must not
    continue on other data than it started with: the file is named."""
    from neuronmoe.training.trainer import StopAtStep
    from neuronmoe.utils.checks import InputChangedError
    from neuronmoe.utils.manifest import describe_files

    data = tmp_path / "data"
    shutil.copytree(ws["data"], data)
    o = opts(ws, out, callbacks=[StopAtStep(2)], data_dir=str(data))
    with pytest.raises(KeyboardInterrupt):
        run_train(o)
    (data / "train" / "el.jsonl").write_text((data / "replay" / "en.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    man = json.loads((data / "manifest.json").read_text())
    man["files"].update(describe_files(data, ["train/el.jsonl"]))
    (data / "manifest.json").write_text(json.dumps(man))
    o = opts(ws, out, resume=True, data_dir=str(data))
    with pytest.raises(InputChangedError) as e:
        run_train(o)
    assert f"{data / 'train' / 'el.jsonl'} changed since the run started" in str(e.value)
    assert not (out / "train" / "r" / "manifest.json").exists()
