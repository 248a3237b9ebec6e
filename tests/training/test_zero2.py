"""DeepSpeed ZeRO-2 with 2 CPU processes (gloo) through torchrun: trains, checkpoints, loads back."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_zero2_two_processes_checkpoint_loads_back(out_dir, tiny_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "neuronmoe", "train", "--stage", "1", "--model", str(tiny_dir), "--output-dir", str(out_dir),
           "--allocation", "tiny", "--run-name", "z2", "--profile", "cpu", "--deepspeed", "zero2",
           "--cutoff-len", "32", "--batch-size", "2", "--max-steps", "4", "--save-steps", "2",
           "--logging-steps", "2", "--report-to", "none", "--max-samples", "30",
           "--set", "bf16=false", "--set", "heldout_languages=[]"]
    env = dict(os.environ, OMP_NUM_THREADS="1", NEURONMOE_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    run = out_dir / "train" / "z2"
    man = json.loads((run / "manifest.json").read_text())
    assert man["result"]["world_size"] == 2 and man["result"]["global_step"] == 4
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # rank 0 writes, once per logging step
    ckpt = run / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").is_file()
    assert any(p.name.startswith("global_step") for p in ckpt.iterdir())  # DeepSpeed optimizer shards

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    import neuronmoe  # noqa: F401

    for d in (ckpt, run / "adapter"):
        m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(d))
        saved = load_file(str(d / "adapter_model.safetensors"))
        routers = {k: v for k, v in m.state_dict().items() if "moe_router" in k}
        assert len(routers) == 2
        assert all(any(torch.equal(v, s) for s in saved.values()) for v in routers.values())
        out = m(input_ids=torch.tensor([[5, 6, 7, 8]]))
        assert torch.isfinite(out.logits).all()
    a2, a4 = load_file(str(ckpt / "adapter_model.safetensors")), load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert any(not torch.equal(a2[k], a4[k]) for k in a2)  # training went on after the checkpoint
