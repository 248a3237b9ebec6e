"""Cards (peaks, memory, where the MFU comes from), disk (checkpoints against files written by torch and PEFT,
filesystems against their free space) and hub access with a stand-in client (gated, missing, offline)."""
from __future__ import annotations

import os

import peft
import pytest
import torch

from neuronmoe.budget.access import DENIED, OFFLINE, OK, Repo, check_access, hub_sizes, plan_repositories
from neuronmoe.budget.disk import Item, by_filesystem, checkpoint_bytes, checkpoints_kept, disk_problems, existing_dir, run_disk
from neuronmoe.budget.gpus import card_of_device, resolve_gpu
from neuronmoe.errors import ConfigError
from neuronmoe.testing import StandInHub


# ------------------------------------------------------------------------------------------------ cards
def test_cards_and_mfu_sources():
    g = resolve_gpu()
    assert (g.name, g.peak_tflops, g.memory_gib) == ("GH200", 989.0, 96.0)  # the paper's card by default
    assert g.mfu == 0.30 and g.mfu_source.startswith("assumed")
    assert resolve_gpu("h100", 40, 0.5).memory_gib == 40 and resolve_gpu("h100", mfu=0.5).mfu_source == "given: --mfu"
    for name in ("A100", "H100", "H200", "GH200", "L40S", "MI300X"):
        assert resolve_gpu(name).peak_tflops > 0
    cfg = {"gpus": {"GH200": {"peak_bf16_tflops": 989, "memory_gib": 96}}, "default_gpu": "GH200",
           "mfu": {"assumption": 0.3, "why": "x"}, "measured_mfu": {"GH200": {"mfu": 0.41, "source": "docs/benchmarks.md"}}}
    m = resolve_gpu(cfg=cfg)
    assert m.mfu == 0.41 and m.mfu_source == "measured: docs/benchmarks.md"
    with pytest.raises(ConfigError, match=r"--gpu 'H10': .*did you mean"):
        resolve_gpu("H10")
    with pytest.raises(ConfigError, match="--mfu"):
        resolve_gpu(mfu=1.5)
    with pytest.raises(ConfigError, match="--gpu-memory"):
        resolve_gpu(memory_gib=0)


def test_device_names_match_the_longest_card_name():
    assert card_of_device("NVIDIA GH200 480GB") == "GH200"  # contains "H200" too
    assert card_of_device("NVIDIA H200") == "H200"
    assert card_of_device("NVIDIA H100 80GB HBM3") == "H100"
    assert card_of_device("AMD Instinct MI300X") == "MI300X"
    assert card_of_device("Tesla T4") is None


# ------------------------------------------------------------------------------------------------ disk
def test_checkpoint_bytes_match_what_torch_and_peft_write(tmp_path):
    """torch layout: the adapter's safetensors (4 bytes per adapter parameter) + optimizer.pt (AdamW: 8 bytes per
    trainable parameter), within the files' own headers."""
    from neuronmoe.moe import MoEConfig
    from neuronmoe.testing import tiny_model

    torch.manual_seed(0)
    model = peft.get_peft_model(tiny_model("llama", hidden_size=64, intermediate_size=256),
                                MoEConfig(experts_per_layer=[3, 1, 2], top_k=2))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(3, 250, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    model.save_pretrained(tmp_path / "ckpt")
    torch.save(opt.state_dict(), tmp_path / "ckpt" / "optimizer.pt")
    n = sum(p.numel() for p in trainable)
    written = os.path.getsize(tmp_path / "ckpt" / "adapter_model.safetensors") + os.path.getsize(tmp_path / "ckpt" / "optimizer.pt")
    assert 0 <= written - checkpoint_bytes(n, n, deepspeed=False) < 20_000  # headers and pickled metadata only


def test_checkpoints_kept_and_run_disk():
    assert checkpoints_kept(15000, 1000, 2) == 2 and checkpoints_kept(500, 1000, 2) == 0
    assert checkpoints_kept(3500, 1000, None) == 3 and checkpoints_kept(10, 0, 2) == 0
    d = run_disk(adapter=100, trainable=10, steps=15000, save_steps=1000, save_total_limit=2, deepspeed=True)
    assert d == {"checkpoints_kept": 2, "checkpoint_bytes": 2 * (100 * 2 + 10 * 12), "adapter_bytes": 200,
                 "bytes": 2 * 320 + 200}


def test_filesystems_compared_with_their_free_space(tmp_path):
    roots = {"output": tmp_path / "out", "hub-cache": tmp_path / "hub", "neuronmoe-cache": tmp_path / "nm",
             "datasets-cache": tmp_path / "ds"}
    assert existing_dir(tmp_path / "not" / "yet") == tmp_path
    items = [Item("a", 5e9, "output", "exact"), Item("b", 7e9, "hub-cache", "recorded"), Item("c", 1e12, "network", "x")]
    fs = by_filesystem(items, roots, free=lambda p: 10e9)
    assert len(fs) == 1 and fs[0]["bytes"] == 12e9 and not fs[0]["fits"]  # streamed bytes take no disk
    (line,) = disk_problems(fs)
    assert "12.0 GB" in line and "10.0 GB are free" in line and str(tmp_path / "out") in line
    assert by_filesystem(items, roots, free=lambda p: 20e9)[0]["fits"]


# ------------------------------------------------------------------------------------------------ access
REPOS = [Repo("meta-llama/Llama-3.2-3B", "model", "the base model"), Repo("uonlp/CulturaX", "dataset", "prepare-data"),
         Repo("cais/mmlu", "dataset", "evaluation")]


def test_access_names_each_repository_that_cannot_be_read():
    hub = StandInHub(gated={"meta-llama/Llama-3.2-3B"}, missing={"uonlp/CulturaX"})
    recs = {r["repo"]: r for r in check_access(REPOS, hub, environ={})}
    assert recs["meta-llama/Llama-3.2-3B"]["status"] == DENIED and "accept its terms" in recs["meta-llama/Llama-3.2-3B"]["what_to_do"]
    assert recs["uonlp/CulturaX"]["status"] == DENIED and recs["cais/mmlu"]["status"] == OK


def test_offline_says_access_was_not_checked():
    hub = StandInHub()
    recs = check_access(REPOS, hub, environ={"HF_HUB_OFFLINE": "1"})
    assert {r["status"] for r in recs} == {OFFLINE} and hub.asked == []
    recs = check_access(REPOS, StandInHub(offline=True), environ={})
    assert {r["status"] for r in recs} == {OFFLINE} and "unreachable" in recs[-1]["what_to_do"]


def test_hub_sizes_replace_recorded_ones():
    from neuronmoe.budget import budget_config

    hub = StandInHub(sizes={("meta-llama/Llama-3.2-3B", "*.safetensors"): [4_965_799_096, 1_459_729_952],
                            ("cerebras/SlimPajama-627B", "train/chunk1/*"): [10, 20, 30]})
    sizes = hub_sizes([*REPOS, Repo("cerebras/SlimPajama-627B", "dataset", "x")], budget_config(), hub)
    assert sizes == {"meta-llama/Llama-3.2-3B": 6_425_529_048.0, "cerebras/SlimPajama-627B": 20.0}


def test_the_plan_reads_the_model_its_corpora_and_the_evaluation_datasets():
    from neuronmoe.budget.runs import parse
    from neuronmoe.pipeline.paper import paper_plan

    repos = {r.repo_id: r for r in plan_repositories(parse(paper_plan(nproc=8)), ["cais/mmlu", "ilsp/arc_greek"])}
    assert repos["meta-llama/Llama-3.2-3B"].repo_type == "model"
    assert {"uonlp/CulturaX", "cerebras/SlimPajama-627B", "Skywork/SkyPile-150B", "cais/mmlu", "ilsp/arc_greek"} <= set(repos)


def test_measured_mfu_is_recorded_in_docs_benchmarks():
    """budget.yaml's measured_mfu is the machine-readable copy of docs/benchmarks.md: every figure it holds names
    its record there and appears in it."""
    from pathlib import Path

    from neuronmoe.budget import budget_config

    doc = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    cfg = budget_config()
    for card, rec in (cfg.get("measured_mfu") or {}).items():
        assert card in cfg["gpus"] and 0 < rec["mfu"] <= 1
        assert "docs/benchmarks.md" in rec["source"] and f"{rec['mfu']:.2f}" in doc, card
    assert "benchmarks/gpu_check.sh" in doc
