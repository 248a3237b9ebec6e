"""The output-folder lock: a second holder is refused with the first named; a dead holder's lock is taken
over (and its leftovers removed); nothing is left behind after release."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neuronmoe.utils.lock import OutputLockedError, lock_paths, output_lock, read_owner

HOLD = textwrap.dedent("""
    import sys, time
    from neuronmoe.utils.lock import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_run_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / "out" / "neurons"
    p = _holder(folder, 30)
    try:
        owner = read_owner(folder)
        assert owner["pid"] == p.pid and owner["host"] and "-c" in owner["command"]
        with pytest.raises(OutputLockedError, match=rf"in use by another run \(pid {p.pid} on .*wait for it to finish"):
            with output_lock(folder, "neurons output folder"):
                pytest.fail("entered a locked folder")
    finally:
        p.kill()
        p.wait()


def test_a_killed_holder_is_taken_over_and_its_leftovers_removed(tmp_path, caplog):
    folder = tmp_path / "out" / "data"
    folder.mkdir(parents=True)
    p = _holder(folder, 30)
    # what a killed prepare-data / atomic write leaves behind
    (tmp_path / "out" / ".data.abc123.tmp").mkdir()
    (tmp_path / "out" / ".data.abc123.tmp" / "big.jsonl").write_text("x")
    (folder / ".manifest.json.q1w2.tmp").write_text("{")
    (folder / "keep.jsonl").write_text("{}\n")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert read_owner(folder)["pid"] == p.pid  # the stale record stays: the lock itself died with the process
    with caplog.at_level("WARNING"), output_lock(folder, "data folder") as lf:
        assert lf is not None and read_owner(folder)["pid"] == os.getpid()
        assert not (tmp_path / "out" / ".data.abc123.tmp").exists() and not (folder / ".manifest.json.q1w2.tmp").exists()
        assert (folder / "keep.jsonl").exists()  # only temporary files are removed
    assert f"pid {p.pid}" in caplog.text and "ended without releasing its lock" in caplog.text
    assert not any(x.exists() for x in lock_paths(folder))  # nothing left behind


def test_release_on_error_and_reacquire(tmp_path):
    folder = tmp_path / "x"
    with pytest.raises(ValueError):
        with output_lock(folder):
            raise ValueError("boom")
    assert not any(x.exists() for x in lock_paths(folder)) and not folder.exists()
    with output_lock(folder):
        pass


def test_blocked_paths(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="a-file is a file, not a folder"):
        with output_lock(f / "sub" / "neurons"):
            pass
    with pytest.raises(NotADirectoryError, match="is a file"):
        with output_lock(f):
            pass
    with output_lock(f, file=True):  # an output that is one file (an allocation JSON) is fine
        pass
    with pytest.raises(IsADirectoryError):
        with output_lock(tmp_path, file=True):
            pass


def test_non_main_rank_takes_no_lock(tmp_path, monkeypatch):
    folder = tmp_path / "n"
    p = _holder(folder, 30)
    try:
        monkeypatch.setenv("RANK", "1")
        with output_lock(folder) as lf:  # rank 1 writes only under rank 0's lock
            assert lf is None
    finally:
        p.kill()
        p.wait()


def test_owner_record_is_json(tmp_path):
    folder = tmp_path / "o"
    with output_lock(folder):
        rec = json.loads(lock_paths(folder)[1].read_text())
        assert set(rec) == {"host", "pid", "command", "started"} and rec["pid"] == os.getpid()
        time.sleep(0)
