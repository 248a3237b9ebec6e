"""LayerMoE similarity: the mean-unit-vector identity, the layer score, capture hooks, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neuronmoe.cli import main
from neuronmoe.similarity import UnitVectorSums, layer_scores, pair_indices


def brute_force_mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((an @ bn.T).mean())  # the full N x M matrix


def test_mean_unit_vectors_equal_brute_force_pairwise_cosine():
    rng = np.random.default_rng(0)
    data = {"en": [rng.normal(size=(37, 16)) + 0.5, rng.normal(size=(37, 16))],
            "el": [rng.normal(size=(23, 16)) + 0.3, rng.normal(size=(23, 16)) * 3],
            "tr": [rng.normal(size=(11, 16)) - 0.2, rng.normal(size=(11, 16))]}
    acc = UnitVectorSums(list(data), num_layers=2, hidden_size=16)
    for lang, layers in data.items():
        for layer, x in enumerate(layers):
            acc.add(lang, layer, x[:10])  # in two chunks: sums are additive
            acc.add(lang, layer, x[10:])
    sim = acc.similarity()
    assert sim.shape == (2, 3, 3)
    langs = list(data)
    for layer in range(2):
        for i, a in enumerate(langs):
            for j, b in enumerate(langs):
                assert sim[layer, i, j] == pytest.approx(brute_force_mean_cos(data[a][layer], data[b][layer]), abs=1e-12)
    assert np.allclose(sim, sim.transpose(0, 2, 1))


def test_layer_score_uses_new_new_and_new_old_pairs():
    langs = ["en", "zh", "el", "tr"]
    assert pair_indices(langs, ["el", "tr"]) == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]  # no en-zh (old-old)
    sim = np.zeros((1, 4, 4))
    for (i, j), v in {(0, 1): 0.9, (0, 2): 0.2, (0, 3): 0.4, (1, 2): 0.1, (1, 3): 0.3, (2, 3): 0.6}.items():
        sim[0, i, j] = sim[0, j, i] = v
    assert layer_scores(sim, langs, ["el", "tr"])[0] == pytest.approx((0.2 + 0.4 + 0.1 + 0.3 + 0.6) / 5)
    assert layer_scores(sim[:, :3, :3], langs[:3], ["el"])[0] == pytest.approx((0.2 + 0.1) / 2)
    with pytest.raises(ValueError, match="not among"):
        layer_scores(sim, langs, ["hu"])


def test_capture_hooks_the_mlp_input_and_respects_the_token_budget(arch):
    """Sums from the norm hook equal brute force over the MLP's actual input (a pre-hook on the MLP)."""
    import torch

    from neuronmoe.models import decoder_layers, get_arch
    from neuronmoe.similarity.capture import capture_unit_sums
    from neuronmoe.testing import byte_tokenizer, tiny_model

    from sim_fixtures import TEXTS

    model, tok = tiny_model(arch), byte_tokenizer()
    texts = {"en": TEXTS["en"][:3], "el": TEXTS["el"][:3]}
    acc, used = capture_unit_sums(model, tok, texts, max_tokens=100, batch_size=2, max_length=256)
    assert used == {"en": 100, "el": 100} and (acc.counts == 100).all()

    spec = get_arch(model)
    grabbed: dict[int, list] = {}
    hooks = [getattr(layer, spec.mlp).register_forward_pre_hook(
        lambda _m, inp, i=i: grabbed.setdefault(i, []).append(inp[0].detach()))
        for i, layer in enumerate(decoder_layers(model))]
    ref = {}
    try:
        for lang, tt in texts.items():
            grabbed.clear()
            vecs = {i: [] for i in range(len(hooks))}
            for t in tt:  # one text at a time: no padding; drop specials (the byte tokenizer adds none)
                ids = tok(t, return_tensors="pt")["input_ids"]
                with torch.no_grad():
                    model(input_ids=ids)
            for i in range(len(hooks)):
                vecs[i] = torch.cat([g[0] for g in grabbed[i]], 0)[:100].double().numpy()
            ref[lang] = vecs
    finally:
        for h in hooks:
            h.remove()
    sim = acc.similarity()
    for layer in range(len(hooks)):
        assert sim[layer, 0, 1] == pytest.approx(brute_force_mean_cos(ref["en"][layer], ref["el"][layer]), abs=1e-5)
        assert sim[layer, 0, 0] == pytest.approx(brute_force_mean_cos(ref["en"][layer], ref["en"][layer]), abs=1e-5)


def _sim_cli(root, model_dir, *extra):
    return main(["similarity", "--output-dir", str(root), "--model", str(model_dir), "--device", "cpu", "--dtype", "float32",
                 "--max-tokens", "120", "--batch-size", "4", *map(str, extra)])


@pytest.fixture(scope="module")
def positive_model_dir(tmp_path_factory):
    # seed 2: every layer's en-el similarity is positive (random tiny models hover around 0)
    from neuronmoe.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-sim"), "llama", seed=2)


def test_similarity_cli_writes_npz_scores_manifest_and_layermoe_allocation(tiny_data, positive_model_dir):
    root = tiny_data
    assert _sim_cli(root, positive_model_dir, "--targets", "el", "--budget", 7) == 0
    z = np.load(root / "similarity" / "similarity.npz")
    assert z["sim"].shape == (3, 2, 2) and list(z["languages"]) == ["en", "el"]
    assert list(z["token_counts"]) == [120, 120]
    rows = (root / "similarity" / "scores.csv").read_text().splitlines()
    assert rows[0] == "layer,score" and len(rows) == 4
    scores = [float(r.split(",")[1]) for r in rows[1:]]
    assert scores == pytest.approx(list(z["sim"][:, 0, 1]), rel=1e-8)
    man = json.loads((root / "similarity" / "manifest.json").read_text())
    assert man["stage"] == "similarity" and set(man["files"]) == {"similarity.npz", "scores.csv"}
    assert man["counts"]["tokens"] == {"en": 120, "el": 120}
    a = json.loads((root / "allocation" / "layermoe.json").read_text())
    inv = [1 / s for s in scores]
    assert a["experts_per_layer"] == [int(np.ceil(v / sum(inv) * 7 - 1e-9)) for v in inv]
    assert a["mode"] == "similarity" and a["budget"] == 7 and a["rounding"] == "ceil"
    assert a["params"]["new_expert_params"] == (a["total_experts"] - 3) * 3 * 32 * 64
    assert (root / "allocation" / "layermoe.env").read_text().startswith("ADA_MOE_NUM_EXPERTS_LIST=")
    # `allocate --mode similarity` rebuilds the same allocation from similarity/scores.csv
    assert main(["allocate", "--output-dir", str(root), "--mode", "similarity", "--budget", "7", "--name", "again"]) == 0
    again = json.loads((root / "allocation" / "again.json").read_text())
    assert again["experts_per_layer"] == a["experts_per_layer"]


def test_nonpositive_similarity_keeps_measurement_but_writes_no_allocation(tiny_data, tiny_model_dir, capsys):
    root = tiny_data  # seed-0 tiny model: layer 2's similarity is negative
    assert _sim_cli(root, tiny_model_dir, "--targets", "el") == 2
    assert "non-positive" in capsys.readouterr().err
    assert (root / "similarity" / "manifest.json").exists()
    assert not (root / "allocation").exists()


@pytest.mark.parametrize(
    "extra,match",
    [(["--targets", "hu"], "hu.jsonl: no such data file"), (["--targets", "el", "--old-langs", "en,el"], "both new and old"),
     (["--targets", "xx"], "unknown language code"), (["--targets", "el", "--budget", "0"], "--budget")],
)
def test_similarity_bad_input_writes_nothing(tiny_data, tiny_model_dir, capsys, extra, match):
    assert _sim_cli(tiny_data, tiny_model_dir, *extra) == 2
    assert match in capsys.readouterr().err
    assert not (tiny_data / "similarity").exists() and not (tiny_data / "allocation").exists()


def test_tokenizer_fingerprint_mismatch_is_refused(tmp_path, tiny_model_dir, capsys):
    from sim_fixtures import write_data

    write_data(tmp_path, ("en", "el"), fingerprint="0123456789abcdef")
    assert _sim_cli(tmp_path, tiny_model_dir, "--targets", "el") == 2
    assert "data prepared with another tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "similarity").exists()
