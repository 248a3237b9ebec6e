import json

import pytest
import torch

from neuronmoe.models import (
    ModelNotFoundError,
    UnsupportedArchitectureError,
    decoder_layers,
    get_arch,
    load_model,
    load_tokenizer,
    model_dims,
    resolve_model,
    unit_counts,
    validate_model,
)
from neuronmoe.testing import tiny_model


def test_arch_table_covers_every_tiny_arch(arch):
    m = tiny_model(arch)
    spec = validate_model(m)
    assert len(decoder_layers(m)) == model_dims(m)["num_layers"] == 3
    assert spec.modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    counts = unit_counts(m.config)
    layer = decoder_layers(m)[0]
    for name, n in counts.items():
        mod = getattr(getattr(layer, spec.attn if name in spec.attn_proj else spec.mlp), name)
        assert mod.out_features == n


def test_layer_count_comes_from_config_not_name():
    m = tiny_model("llama", num_hidden_layers=5)
    assert model_dims(m)["num_layers"] == 5


def test_unsupported_architecture_names_what_is_missing():
    from transformers import GPT2Config

    with pytest.raises(UnsupportedArchitectureError, match="gpt2.*gated MLP"):
        get_arch(GPT2Config())


def test_model_without_gated_mlp_is_rejected():
    m = tiny_model("llama")
    del decoder_layers(m)[1].mlp.gate_proj
    with pytest.raises(UnsupportedArchitectureError, match="gate_proj"):
        validate_model(m)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such directory"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_shipped_configs_need_no_weights():
    from neuronmoe.models import load_config

    cfg = load_config("llama-3.2-3b")
    assert model_dims(cfg) == {"num_layers": 28, "hidden_size": 3072, "intermediate_size": 8192}
    assert sum(unit_counts(cfg).values()) == 27_648  # the method notes' per-layer unit count
    assert model_dims(load_config("qwen1.5-1.8b"))["num_layers"] == 24
    with pytest.raises(ModelNotFoundError, match="without weights"):
        resolve_model("llama-3.2-3b")


def test_local_folder_roundtrip(tiny_model_dir):
    m = load_model(str(tiny_model_dir), device="cpu")
    tok = load_tokenizer(str(tiny_model_dir))
    ids = tok(["hello", "Καλημέρα κόσμε"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.isfinite(m(**ids).logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("alias,n_layers", [("smollm2-135m", 30), ("gemma3-270m", 18)])
def test_embedded_aliases_load_and_run_greek(alias, n_layers):
    path = resolve_model(alias)
    src = json.loads(open(f"{path}/neuronmoe_source.json").read())
    assert src["alias"] == alias and len(src["gguf_sha256"]) == 64
    m = load_model(alias, device="cpu")
    assert model_dims(m)["num_layers"] == n_layers
    assert getattr(m.config, "quantization_config", None) is None
    tok = load_tokenizer(alias)
    ids = tok("Η Ελλάδα είναι μια χώρα στη νοτιοανατολική Ευρώπη.", return_tensors="pt")
    with torch.no_grad():
        logits = m(**ids).logits
    assert torch.isfinite(logits).all()
    # the cache is reused: resolving again returns the same folder without reconverting
    mtime = (__import__("pathlib").Path(path) / "model.safetensors").stat().st_mtime
    assert resolve_model(alias) == path
    assert (__import__("pathlib").Path(path) / "model.safetensors").stat().st_mtime == mtime


def test_model_random_saves_a_loadable_random_copy(tiny_model_dir, tmp_path):
    from neuronmoe.cli import main

    out = tmp_path / "rand"
    assert main(["model", "random", str(tiny_model_dir), "--out", str(out), "--tokenizer", str(tiny_model_dir),
                 "--dtype", "float32", "--seed", "3"]) == 0
    m = load_model(str(out), device="cpu")
    ref = load_model(str(tiny_model_dir), device="cpu")
    assert model_dims(m) == model_dims(ref)
    w, w_ref = m.model.layers[0].mlp.up_proj.weight, ref.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(w, w_ref)  # fresh random weights, same shapes
    assert load_tokenizer(str(out)).get_vocab() == load_tokenizer(str(tiny_model_dir)).get_vocab()
    assert main(["model", "random", str(tiny_model_dir), "--out", str(out)]) == 2  # never overwrites
