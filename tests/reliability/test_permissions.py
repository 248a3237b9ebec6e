"""Files follow the umask (issue 24, item 6): what libraries write through their own temporary files
(``save_pretrained``'s safetensors, ``mkdtemp`` folders) is as readable as a file written by ``open``."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from neuronmoe.utils.io import atomic_dir, follow_umask_tree


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_model_saved_through_atomic_dir_follows_the_umask(tmp_path, umask):
    """The converted-model cache and export are built with atomic_dir + save_pretrained (model.safetensors
    was 0600 under umask 022)."""
    from neuronmoe.testing import tiny_model

    target = tmp_path / "cache" / "model"
    with atomic_dir(target) as tmp:
        tiny_model("llama").save_pretrained(tmp)
    assert mode(target / "model.safetensors") == 0o666 & ~umask
    assert mode(target / "config.json") == 0o666 & ~umask
    assert mode(target) == 0o777 & ~umask


def test_a_staged_package_folder_follows_the_umask_and_keeps_exec_bits(tmp_path, umask):
    """packages/ and npm/ are unpacked into a mkdtemp folder (0700) and renamed into place."""
    staging = Path(tempfile.mkdtemp(dir=tmp_path))
    (staging / "pkg").mkdir(mode=0o700)
    (staging / "pkg" / "data.bin").write_bytes(b"x")
    os.chmod(staging / "pkg" / "data.bin", 0o600)
    (staging / "pkg" / "tool").write_text("#!/bin/sh\n")
    os.chmod(staging / "pkg" / "tool", 0o700)
    follow_umask_tree(staging)
    assert mode(staging) == 0o777 & ~umask and mode(staging / "pkg") == 0o777 & ~umask
    assert mode(staging / "pkg" / "data.bin") == 0o666 & ~umask
    assert mode(staging / "pkg" / "tool") == 0o777 & ~umask
