"""check_range, check_input_files, check_checkpoint, and --resume's choice of a checkpoint."""
from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from safetensors.torch import save_file

from neuronmoe.utils.checks import CheckpointError, InputChangedError, check_checkpoint, check_input_files, check_range


@pytest.mark.parametrize("value,kw,ok", [
    (0.5, dict(lo=0, hi=1, hi_open=True), True),
    (0.0, dict(lo=0, hi=1, hi_open=True), True),
    (1.0, dict(lo=0, hi=1, hi_open=True), False),
    (2.0, dict(lo=0, hi=1, hi_open=True), False),
    (-0.1, dict(lo=0), False),
    (0, dict(lo=0, lo_open=True), False),
    (1, dict(lo=1), True),
    (math.nan, dict(lo=0, hi=1), False),
    (None, dict(lo=1), True),
])
def test_check_range(value, kw, ok):
    if ok:
        assert check_range("--x", value, **kw) == value or value != value
    else:
        with pytest.raises(ValueError, match=r"^--x: .* is out of range"):
            check_range("--x", value, **kw)


def test_check_input_files(tmp_path):
    from neuronmoe.utils.manifest import describe_files

    (tmp_path / "samples").mkdir()
    f = tmp_path / "samples" / "el.jsonl"
    f.write_text('{"text": "a"}\n')
    g = tmp_path / "samples" / "en.jsonl"
    g.write_text('{"text": "b"}\n')
    man = {"files": describe_files(tmp_path, ["samples/el.jsonl"])}
    got = check_input_files(tmp_path, man, [f, g, tmp_path / "samples" / "missing.jsonl"])
    assert set(got) == {"samples/el.jsonl", "samples/en.jsonl"}  # en: not listed, hashed but not checked
    assert check_input_files(tmp_path, None, [f]) == {"samples/el.jsonl": got["samples/el.jsonl"]}
    f.write_text('{"text": "changed"}\n')
    with pytest.raises(InputChangedError, match=r"el\.jsonl: changed since the stage that wrote it finished"):
        check_input_files(tmp_path, man, [f])


def make_checkpoint(path, step=4):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.randn(4, 4), "b": torch.zeros(3)}, str(path / "adapter_model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.randn(64, 64)}}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"python": 1}, path / "rng_state.pth")
    return path


def _cut(p, keep=0.5):
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage,match", [
    (lambda c: _cut(c / "optimizer.pt"), "optimizer.pt: damaged"),
    (lambda c: _cut(c / "adapter_model.safetensors", 0.9), "truncated"),
    (lambda c: (c / "adapter_model.safetensors").write_bytes(b"\xff" * 8 + b"{}"), "not a readable safetensors"),
    (lambda c: (c / "trainer_state.json").write_text("{"), "trainer_state.json: missing or not valid JSON"),
    (lambda c: (c / "adapter_model.safetensors").unlink(), "no model weights"),
    (lambda c: _cut(c / "rng_state.pth", 0.8), "rng_state.pth: damaged"),
])
def test_check_checkpoint_finds_damage(tmp_path, damage, match):
    c = make_checkpoint(tmp_path / "checkpoint-4")
    check_checkpoint(c)  # intact
    damage(c)
    with pytest.raises(CheckpointError, match=match):
        check_checkpoint(c)


def test_resume_falls_back_to_the_previous_checkpoint(tmp_path, caplog):
    from neuronmoe.training.run import TrainingInputError, last_checkpoint

    make_checkpoint(tmp_path / "checkpoint-3", 3)
    newest = make_checkpoint(tmp_path / "checkpoint-6", 6)
    assert last_checkpoint(tmp_path).name == "checkpoint-6"
    _cut(newest / "optimizer.pt")
    with caplog.at_level(logging.WARNING):
        assert last_checkpoint(tmp_path).name == "checkpoint-3"
    assert "checkpoint-6/optimizer.pt: damaged" in caplog.text and "instead of the damaged" in caplog.text
    _cut(tmp_path / "checkpoint-3" / "adapter_model.safetensors", 0.7)
    with pytest.raises(TrainingInputError, match="no usable checkpoint .*--overwrite"):
        last_checkpoint(tmp_path)
