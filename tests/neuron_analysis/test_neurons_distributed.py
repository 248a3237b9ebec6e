"""Collection sharded over 2 processes (torchrun, gloo on CPU) equals the 1-process collection."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_two_process_collection_equals_one_process(tiny_model_dir, out_dir, tmp_path):
    import shutil

    two = tmp_path / "two"
    shutil.copytree(out_dir / "data", two / "data")
    args = ["neurons", "--model", str(tiny_model_dir), "--languages", "en,el,tr", "--dtype", "float32",
            "--device", "cpu", "--batch-size", "3", "--top-k", "25", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, "-m", "neuronmoe", *args, "--output-dir", str(out_dir)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "neuronmoe", *args, "--output-dir", str(two)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    man = json.loads((two / "neurons" / "manifest.json").read_text())
    assert man["world_size"] == 2
    for li in range(3):
        a = np.load(out_dir / "neurons" / "activations" / f"layer_{li:03d}.npy")
        b = np.load(two / "neurons" / "activations" / f"layer_{li:03d}.npy")
        assert a.shape == b.shape == (18, 256)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(out_dir / "neurons" / "ap.npy"), np.load(two / "neurons" / "ap.npy"))
    for lang in ("en", "el", "tr"):
        assert (out_dir / "neurons" / f"selected_{lang}.csv").read_text() == (two / "neurons" / f"selected_{lang}.csv").read_text()
