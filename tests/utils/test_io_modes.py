"""Files written through the atomic helpers follow the umask like an ordinary open() (not mkstemp's 0600)."""
from __future__ import annotations

import os

import pytest

from neuronmoe.utils.io import atomic_dir, atomic_open, atomic_write_json, atomic_write_text, current_umask


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what an ordinary open() gives: the reference
        a = atomic_write_text(tmp_path / "a.txt", "x")
        b = atomic_write_json(tmp_path / "b.json", {"x": 1})
        with atomic_open(tmp_path / "c.txt") as fh:
            fh.write("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
        ref = plain.stat().st_mode & 0o777
        for p in (a, b, tmp_path / "c.txt"):
            assert p.stat().st_mode & 0o777 == ref == 0o666 & ~mask, p
        assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
    finally:
        os.umask(old)
