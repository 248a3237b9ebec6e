"""Helpers shared by the interop tests (importable: the test folder is on sys.path)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
FRESH_PYTHON = HERE / "fresh_python.py"
#: local-suite sizes small enough for seconds per model (the same string for `neuronmoe evaluate`)
SIZES = "cloze_items=6,heldout_docs=2,heldout_max_chars=200,cloze_prefix_words=6,cloze_suffix_words=2"
LANGS = ["en"]
TASKS = ["udhr_cloze_en", "heldout_ppl_en"]
EPL_TINY = [2, 1, 3]  # layer 1 stays dense
TINY_VOCAB = 260  # = the byte tokenizer's length, so lm-eval's peft path does not resize the embeddings


def make_adapter(base_dir: str | Path, out_dir: Path, experts_per_layer: list[int], scale: float = 0.2,
                 seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A NeuronMoE adapter on ``base_dir`` whose routers and new experts are randomised (not the identity)."""
    import peft
    from transformers import AutoModelForCausalLM

    from neuronmoe.moe import MoEConfig

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    model = peft.get_peft_model(base, MoEConfig(experts_per_layer=list(experts_per_layer), top_k=2))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".moe_" in name:
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * (1.0 if "router" in name else scale))
    model.save_pretrained(out_dir)
    return out_dir


def peft_model(base_dir: str | Path, adapter: str | Path, dtype: torch.dtype = torch.float32):
    import peft
    from transformers import AutoModelForCausalLM

    import neuronmoe  # noqa: F401  (registers the method on `import peft`)

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    return peft.PeftModel.from_pretrained(base, str(adapter)).eval()


def subprocess_env(tmp: Path) -> dict[str, str]:
    """Offline, one thread, and a private cache for trust_remote_code modules."""
    return dict(os.environ, HF_MODULES_CACHE=str(tmp / "hf-modules"), OMP_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def sizes_dict() -> dict[str, int]:
    return {k: int(v) for k, v in (kv.split("=") for kv in SIZES.split(","))}


def metrics(results: dict) -> dict[str, float]:
    """``{"task/metric": value}`` for the numeric metrics of an lm-eval results block (stderrs left out)."""
    out = {}
    for task, res in results.items():
        for key, val in res.items():
            if isinstance(val, (int, float)) and not isinstance(val, bool) and "stderr" not in key and "," in key:
                out[f"{task}/{key}"] = float(val)
    return out


def assert_same_numbers(a: dict[str, float], b: dict[str, float], what: str) -> None:
    assert a.keys() == b.keys() and a, (what, sorted(a), sorted(b))
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), (what, k, a[k], b[k])
