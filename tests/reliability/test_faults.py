"""Faults give one clear line and a clean rerun (issue 24, item 4): a full disk during neuron collection (the
memory-mapped activations: space reserved up front, the file and the bytes named, never SIGBUS), a full disk
in the middle of an atomic write (the file named, not ``[Errno 28]`` alone), a full disk while a checkpoint
is saved (the checkpoint named; ``--resume`` continues from the last complete one)."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from neuronmoe.cli import main
from neuronmoe.errors import error_line
from neuronmoe.utils import io as nio


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_reserved_memmap_names_the_file_and_the_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", enospc)
    with pytest.raises(OSError) as e:
        nio.open_memmap_reserved(tmp_path / "layer_000.npy", "float16", (1000, 64))
    line = error_line(e.value)
    assert line.startswith(f"{tmp_path / 'layer_000.npy'}: No space left on device (needs 128,128 bytes")
    assert not (tmp_path / "layer_000.npy").exists()  # nothing half-made is left


def test_reserved_memmap_really_reserves(tmp_path):
    m = nio.open_memmap_reserved(tmp_path / "a.npy", "float16", (4096, 256))
    st = (tmp_path / "a.npy").stat()
    del m
    assert st.st_blocks * 512 >= st.st_size  # allocated, not a sparse file that a later write could overflow


def test_atomic_write_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OSError) as e:
        nio.atomic_write_text(tmp_path / "out.json", "{}")
    assert error_line(e.value) == f"{tmp_path / 'out.json'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_neurons_on_a_full_disk_is_one_line(ws, tmp_path, capsys, monkeypatch):
    import neuronmoe.neuron_analysis.collect as collect

    monkeypatch.setattr(collect.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**6, 10**6 - 100, 100))
    rc = main(["neurons", "--model", ws["model"], "--output-dir", str(tmp_path), "--data-dir", ws["data"],
               "--languages", "en,el,tr", "--dtype", "float32", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = next(ln for ln in err.splitlines() if ln.startswith("neuronmoe neurons: error:"))
    assert "activations: No space left on device: the activations need" in line and "100 are free" in line


@pytest.mark.slow
def test_full_disk_while_saving_a_checkpoint_then_resume(ws, tmp_path, monkeypatch, caplog):
    from transformers import Trainer

    from neuronmoe.training.run import train
    from neuronmoe.training.settings import TrainSettings
    from neuronmoe.training.trainer import CheckpointSaveError

    out = tmp_path / "out"
    (out / "allocation").mkdir(parents=True)
    shutil.copy(Path(ws["out"]) / "allocation" / "tiny.json", out / "allocation" / "tiny.json")
    sets = ["cutoff_len=32", "per_device_train_batch_size=4", "max_steps=6", "logging_steps=2", "save_steps=2", "save_last=true",
            "save_total_limit=5", "learning_rate=0.003", "bf16=false", "report_to=none", "heldout_max_tokens=64",
            "heldout_block_len=32", "max_samples=24"]

    def opts(**kw):
        return TrainSettings.resolve(environ={}, sets=sets, stage=1, model=ws["model"], output_dir=str(out),
                                     data_dir=ws["data"], allocation="tiny", run_name="r", profile="cpu", device="cpu",
                                     use_cache=False, **kw)

    orig = Trainer._save_optimizer_and_scheduler

    def full_at_4(self, output_dir):
        if self.state.global_step == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(output_dir) / "optimizer.pt"))
        return orig(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full_at_4)
    with pytest.raises(CheckpointSaveError) as e:
        train(opts())
    run = out / "train" / "r"
    assert error_line(e.value).startswith(f"{run / 'checkpoint-4'}: could not be written ({run / 'checkpoint-4'}"
                                          f"/optimizer.pt: No space left on device)")
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", orig)
    with caplog.at_level("WARNING"):
        res = train(opts(resume=True))
    assert "checkpoint-4/trainer_state.json: missing" in caplog.text and "continuing from checkpoint-2" in caplog.text
    assert res["global_step"] == 6 and res["resumed_from"].endswith("checkpoint-2")
    assert json.loads((run / "manifest.json").read_text())["counts"]["global_step"] == 6
