"""`neuronmoe export`: a standalone HF folder that equals base + adapter, for every supported family."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from interop_helpers import (
    EPL_TINY,
    FRESH_PYTHON,
    SIZES,
    TASKS,
    TINY_VOCAB,
    assert_same_numbers,
    make_adapter,
    metrics,
    peft_model,
    subprocess_env,
)

from neuronmoe.cli import main

FAMILIES = ["llama", "qwen2", "mistral", "gemma3_text"]
BASE_MLP = {"llama": "LlamaMLP", "qwen2": "Qwen2MLP", "mistral": "MistralMLP", "gemma3_text": "Gemma3MLP"}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """arch -> (base folder, adapter folder) for a tiny random model of each family."""
    from neuronmoe.testing import save_tiny_model

    out = {}
    for i, arch in enumerate(FAMILIES):
        root = tmp_path_factory.mktemp(arch)
        base = save_tiny_model(root / "base", arch, seed=i, vocab_size=TINY_VOCAB)
        out[arch] = (base, make_adapter(base, root / "adapter", EPL_TINY, seed=i))
    return out


def _export(adapter, out, *extra):
    return main(["export", "--adapter", str(adapter), "--out", str(out), *extra])


# ---- the exported folder behaves as base + adapter, in a Python without neuronmoe ----------------
@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_every_family_equals_base_plus_adapter_without_neuronmoe(families, local_root, tmp_path, capsys):
    exports = {}
    for arch, (_, adapter) in families.items():
        assert _export(adapter, tmp_path / f"export-{arch}") == 0
        exports[arch] = str(tmp_path / f"export-{arch}")
    base, adapter = families["llama"]
    assert _export(adapter, tmp_path / "export-llama-bf16", "--dtype", "bf16") == 0
    exports["llama-bf16"] = str(tmp_path / "export-llama-bf16")
    ids = torch.randint(3, TINY_VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    torch.save(ids, tmp_path / "ids.pt")
    spec = {"models": exports, "ids": str(tmp_path / "ids.pt"), "out": str(tmp_path / "fresh.pt"), "tasks": TASKS,
            "include_path": str(local_root / "eval" / "tasks"), "lm_eval_models": FAMILIES,
            "stock_peft": {"base": str(base), "adapter": str(adapter)}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # the fresh Python (stock transformers + lm-eval) runs while this process computes the references
    proc = subprocess.Popen([sys.executable, str(FRESH_PYTHON), str(tmp_path / "spec.json")], env=subprocess_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    refs, evaluated, peft_scores = {}, {}, {}
    try:
        from lm_eval import simple_evaluate

        from neuronmoe.evaluation.taskindex import task_manager

        tm = task_manager([local_root / "eval" / "tasks"])
        for arch, (base_dir, ad) in families.items():
            m = peft_model(base_dir, ad)
            with torch.no_grad():
                logits = m(input_ids=ids).logits
                with m.disable_adapter():  # the adapter changes the model (else equality would prove little)
                    assert (m(input_ids=ids).logits - logits).abs().max().item() > 1e-2
            gen = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             use_cache=True, pad_token_id=0)
            refs[arch] = (logits, gen)
            # `neuronmoe evaluate` on the local suite
            assert main(["evaluate", "--model", str(base_dir), "--adapter", str(ad), "--output-dir", str(local_root),
                         "--suite", "local", "--languages", "en", "--local-sizes", SIZES, "--run-name", arch,
                         "--device", "cpu", "--dtype", "float32", "--overwrite"]) == 0
            evaluated[arch] = metrics(json.loads((local_root / "eval" / arch / "results.json").read_text())["results"])
            # lm-eval's own `hf` model with peft= (what `neuronmoe lm-eval --model_args ...,peft=...` runs)
            res = simple_evaluate(model="hf", model_args=f"pretrained={base_dir},peft={ad},dtype=float32",
                                  tasks=TASKS, task_manager=tm, device="cpu", batch_size=8)
            peft_scores[arch] = metrics(res["results"])
        m = peft_model(base, adapter, dtype=torch.bfloat16)
        with torch.no_grad():
            refs["llama-bf16"] = (m(input_ids=ids).logits, None)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    fresh = torch.load(tmp_path / "fresh.pt")
    assert fresh["neuronmoe_imported"] == []
    # plain PEFT, without neuronmoe, on the adapter itself: the documented KeyError
    assert fresh["stock_peft_error"] == "KeyError: 'NEURONMOE'"
    for arch in FAMILIES:
        got = fresh["models"][arch]
        logits, gen = refs[arch]
        assert got["class"].startswith("NeuronMoE") and got["class"].endswith("ForCausalLM")
        # dense layers keep the base architecture's MLP; only MoE layers use ours
        assert got["mlps"] == ["NeuronMoEMLP", BASE_MLP[arch], "NeuronMoEMLP"]
        assert (got["logits"] - logits).abs().max().item() <= 1e-5, arch
        assert torch.equal(got["generated"], gen), arch
        assert_same_numbers(evaluated[arch], metrics(fresh["lm_eval"][arch]), f"{arch}: neuronmoe evaluate vs lm-eval on the export")
        assert_same_numbers(evaluated[arch], peft_scores[arch], f"{arch}: neuronmoe evaluate vs lm-eval peft=")
    # bf16 export: routers stay float32, everything else bf16; same logits as base + adapter in bf16
    bf = fresh["models"]["llama-bf16"]
    routers = {n: d for n, d in bf["dtypes"].items() if n.endswith("router.weight")}
    assert len(routers) == 2 and set(routers.values()) == {"torch.float32"}
    assert {d for n, d in bf["dtypes"].items() if n not in routers} == {"torch.bfloat16"}
    assert torch.allclose(bf["logits"], refs["llama-bf16"][0].float(), atol=0.02, rtol=0)
    assert torch.equal(bf["logits"].to(torch.bfloat16), refs["llama-bf16"][0])


# ---- the folder itself ----------------------------------------------------------------------------
def test_folder_layout_config_and_card(families, tmp_path):
    from safetensors import safe_open

    from neuronmoe.interop.export import MODELING_FILE

    base, adapter = families["gemma3_text"]
    out = tmp_path / "out"
    assert _export(adapter, out) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_neuronmoe.py", "README.md", "tokenizer.json",
            "tokenizer_config.json", "generation_config.json", "manifest.json"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary leftovers
    assert (out / "modeling_neuronmoe.py").read_bytes() == MODELING_FILE.read_bytes()
    assert "neuronmoe" not in [ln.split()[1] for ln in MODELING_FILE.read_text().splitlines()
                               if ln.startswith(("import ", "from "))]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "neuronmoe_gemma3_text" and cfg["architectures"] == ["NeuronMoEGemma3ForCausalLM"]
    assert cfg["auto_map"] == {"AutoConfig": "modeling_neuronmoe.NeuronMoEGemma3TextConfig",
                               "AutoModelForCausalLM": "modeling_neuronmoe.NeuronMoEGemma3ForCausalLM"}
    assert cfg["moe_experts_per_layer"] == EPL_TINY and cfg["moe_top_k"] == 2
    base_cfg = json.loads((base / "config.json").read_text())
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "sliding_window", "head_dim", "vocab_size"):
        assert cfg[key] == base_cfg[key], key
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.router.weight" in keys and "model.layers.2.mlp.experts.2.up_proj.weight" in keys
    assert "model.layers.1.mlp.gate_proj.weight" in keys and not any(".moe_" in k or "base_layer" in k for k in keys)
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and "`2,1,3`" in card and "lm_eval --model hf" in card
    assert "## The adapter's model card" not in card  # this adapter folder has no README of ours
    man = json.loads((out / "manifest.json").read_text())
    assert man["stage"] == "export" and man["config"]["experts_per_layer"] == EPL_TINY
    assert "model.safetensors" in man["files"] and "adapter_model.safetensors" in man["inputs"]["adapter"]
    assert oct((out / "config.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m


def test_export_key_mapping():
    from neuronmoe.interop.export import export_key

    assert export_key("model.layers.3.mlp.base_layer.down_proj.weight") == "model.layers.3.mlp.experts.0.down_proj.weight"
    assert export_key("model.layers.3.mlp.moe_experts.default.0.up_proj.weight") == "model.layers.3.mlp.experts.1.up_proj.weight"
    assert export_key("model.layers.3.mlp.moe_experts.default.11.up_proj.weight") == "model.layers.3.mlp.experts.12.up_proj.weight"
    assert export_key("model.layers.3.mlp.moe_router.default.weight") == "model.layers.3.mlp.router.weight"
    assert export_key("model.layers.3.self_attn.q_proj.weight") == "model.layers.3.self_attn.q_proj.weight"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_modeling_file_routes_exactly_as_the_adapter(dtype):
    """The standalone file's copy of route/sparse_dispatch equals neuronmoe.moe.layer's, bit for bit."""
    import torch.nn as nn

    from neuronmoe.interop import modeling_neuronmoe as standalone
    from neuronmoe.moe.layer import route, sparse_dispatch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 16, generator=g).to(dtype)
    w = torch.randn(5, 16, generator=g)
    experts = nn.ModuleList([nn.Sequential(nn.Linear(16, 8), nn.SiLU(), nn.Linear(8, 16)).to(dtype) for _ in range(5)])
    for k in (1, 2, 3):
        _, _, weights, idx = route(x, w, k)
        weights2, idx2 = standalone.route(x, w, k)
        assert torch.equal(weights, weights2) and torch.equal(idx, idx2)
        assert torch.equal(sparse_dispatch(x, idx, weights, experts), standalone.sparse_dispatch(x, idx2, weights2, experts))


# ---- bad input: one line, nothing written ---------------------------------------------------------
def test_an_adapter_from_another_base_is_refused_before_anything_is_written(families, tmp_path, capsys):
    from neuronmoe.testing import save_tiny_model

    _, adapter = families["llama"]
    other = save_tiny_model(tmp_path / "other-base", "llama", num_hidden_layers=4, vocab_size=TINY_VOCAB)
    out = tmp_path / "out"
    assert _export(adapter, out, "--model", str(other)) == 2
    assert "made for another base model (3 layers, the base model (llama) has 4)" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_an_unsupported_dtype_is_refused_by_the_settings_and_the_function(families, tmp_path, capsys):
    import dataclasses

    from neuronmoe.interop.export import ExportError, plan_export
    from neuronmoe.interop.settings import ExportSettings

    _, adapter = families["llama"]
    out = tmp_path / "out"
    assert _export(adapter, out, "--dtype", "int8") == 2
    assert "--dtype: 'int8' is not one of auto, float32" in capsys.readouterr().err
    s = ExportSettings.resolve(environ={}, adapter=str(adapter), out=str(out))
    with pytest.raises(ExportError, match="--dtype int8: unsupported"):
        plan_export(dataclasses.replace(s, dtype="int8"))
    assert not out.exists()


def test_an_existing_folder_is_kept_without_overwrite_and_replaced_with_it(families, tmp_path, capsys):
    _, adapter = families["llama"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _export(adapter, out) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _export(adapter, out, "--overwrite") == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()


def test_out_never_replaces_the_adapter_itself(families, capsys):
    _, adapter = families["llama"]
    assert _export(adapter, adapter, "--overwrite") == 2
    assert "would replace the --adapter folder" in capsys.readouterr().err
    assert (adapter / "adapter_config.json").exists()


def test_an_adapter_of_another_peft_method_is_refused(tmp_path, capsys):
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(tmp_path)}))
    assert _export(lora, tmp_path / "out2") == 2
    assert "peft_type is 'LORA', not a NeuronMoE adapter" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_a_quantized_base_is_refused(families, tmp_path, capsys):
    import shutil

    _, adapter = families["llama"]
    quant = tmp_path / "quantized-base"
    shutil.copytree(families["llama"][0], quant)
    cfg = json.loads((quant / "config.json").read_text())
    (quant / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}))
    assert _export(adapter, tmp_path / "out3", "--model", str(quant)) == 2
    assert "a quantized checkpoint" in capsys.readouterr().err and not (tmp_path / "out3").exists()


def test_push_to_hub_goes_through_huggingface_hub(families, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw))
            return "https://huggingface.co/me/model/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    _, adapter = families["qwen2"]
    assert _export(adapter, tmp_path / "out", "--push-to-hub", "not a repo id!") == 2
    assert "--push-to-hub not a repo id!: not a valid repository id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and calls == []
    assert _export(adapter, tmp_path / "out", "--push-to-hub", "me/model", "--private") == 0
    assert [c[:2] for c in calls] == [("create_repo", "me/model"), ("upload_folder", "me/model")]
    assert calls[0][2]["private"] is True
    assert calls[1][2]["folder_path"] == str(tmp_path / "out") and calls[1][2]["ignore_patterns"] == ["manifest.json"]
    assert "from_pretrained('me/model', trust_remote_code=True)" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("model_type", ["qwen3", "gemma", "gemma2"])
def test_other_supported_families_export_and_match(model_type, tmp_path):
    """The table's other architectures: exported (loaded here through the same classes) = base + adapter."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from neuronmoe.interop.modeling_neuronmoe import CLASSES
    from neuronmoe.testing import byte_tokenizer

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=TINY_VOCAB,
                               max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "base")
    byte_tokenizer(TINY_VOCAB).save_pretrained(tmp_path / "base")
    adapter = make_adapter(tmp_path / "base", tmp_path / "adapter", EPL_TINY)
    assert _export(adapter, tmp_path / "out") == 0
    exported = CLASSES[model_type][1].from_pretrained(tmp_path / "out").eval()
    assert type(exported.model.layers[1].mlp).__name__ != "NeuronMoEMLP"
    ids = torch.randint(3, TINY_VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        diff = (exported(input_ids=ids).logits - peft_model(tmp_path / "base", adapter)(input_ids=ids).logits).abs().max()
    assert diff.item() <= 1e-5
