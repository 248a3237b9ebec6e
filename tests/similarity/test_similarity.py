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
    assert layer_scores(sim, langs, ["el", "tr"], "pairs")[0] == pytest.approx((0.2 + 0.4 + 0.1 + 0.3 + 0.6) / 5)
    # LayerMoE's score: the mean of the new-new group mean and the new-old group mean
    assert layer_scores(sim, langs, ["el", "tr"])[0] == pytest.approx((0.6 + (0.2 + 0.4 + 0.1 + 0.3) / 4) / 2)
    for method in ("pairs", "layermoe"):  # one new language: both are the new-old mean
        assert layer_scores(sim[:, :3, :3], langs[:3], ["el"], method)[0] == pytest.approx((0.2 + 0.1) / 2)
    with pytest.raises(ValueError, match="needs at least one old language"):
        layer_scores(sim[:, 2:, 2:], ["el", "tr"], ["el", "tr"])
    assert layer_scores(sim[:, 2:, 2:], ["el", "tr"], ["el", "tr"], "pairs")[0] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="--layer-score must be one of layermoe, pairs"):
        layer_scores(sim, langs, ["el"], "mean")
    with pytest.raises(ValueError, match="not among"):
        layer_scores(sim, langs, ["hu"])


def test_capture_hooks_the_mlp_input_and_respects_the_token_budget(arch):
    """Sums from the norm hook equal brute force over the MLP's actual input (a pre-hook on the MLP)."""
    import torch
    from sim_fixtures import TEXTS

    from neuronmoe.models import decoder_layers, get_arch
    from neuronmoe.similarity.capture import capture_unit_sums
    from neuronmoe.testing import byte_tokenizer, tiny_model

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


def _per_token_reference(model, tok, texts, n_tokens, grab):
    """{lang: {layer: [n_tokens, hidden] float64}} from ``grab(model) -> (hooks, {layer: [tensors]})``, one text at a time."""
    import torch

    hooks, grabbed = grab(model)
    ref = {}
    try:
        for lang, tt in texts.items():
            for v in grabbed.values():
                v.clear()
            for t in tt:
                with torch.no_grad():
                    model(input_ids=tok(t, return_tensors="pt")["input_ids"])
            ref[lang] = {i: torch.cat(grabbed[i], 0)[:n_tokens].double().numpy() for i in grabbed}
    finally:
        for h in hooks:
            h.remove()
    return ref


def _attention_input(model):
    """The hidden_states the attention module receives (a pre-hook with keyword arguments)."""
    from neuronmoe.models import decoder_layers, get_arch

    spec = get_arch(model)
    grabbed: dict[int, list] = {}
    hooks = []
    for i, layer in enumerate(decoder_layers(model)):
        grabbed[i] = []
        hooks.append(getattr(layer, spec.attn).register_forward_pre_hook(
            lambda _m, args, kwargs, i=i: grabbed[i].append((kwargs.get("hidden_states", args[0] if args else None))[0].detach()),
            with_kwargs=True))
    return hooks, grabbed


def _attention_output_from_residual(model):
    """Llama/Qwen: the MLP-input norm's input is residual + attention output, so the attention output is
    that input minus the decoder layer's input (two pre-hooks on other modules than the captured one)."""
    from neuronmoe.models import decoder_layers, get_arch

    spec = get_arch(model)
    layer_in: dict[int, list] = {}
    norm_in: dict[int, list] = {}
    grabbed: dict[int, list] = {}
    hooks = []
    for i, layer in enumerate(decoder_layers(model)):
        layer_in[i], norm_in[i], grabbed[i] = [], [], []
        hooks.append(layer.register_forward_pre_hook(
            lambda _m, args, kwargs, i=i: layer_in[i].append((kwargs.get("hidden_states", args[0] if args else None))[0].detach()),
            with_kwargs=True))

        def after_norm(_m, args, i=i):
            norm_in[i].append(args[0][0].detach())
            grabbed[i].append(norm_in[i][-1] - layer_in[i][-1])
        hooks.append(getattr(layer, spec.mlp_input_norm).register_forward_pre_hook(after_norm))
    return hooks, grabbed


@pytest.mark.parametrize("site,grab,archs", [
    ("attn_input", _attention_input, ("llama", "qwen2", "mistral", "gemma3_text")),
    ("attn_output", _attention_output_from_residual, ("llama", "qwen2", "mistral")),
])
def test_capture_sites_other_than_the_mlp_input_equal_brute_force(site, grab, archs, arch):
    """--capture-site attn_input / attn_output: the sums equal brute force over vectors taken elsewhere in the layer."""
    from sim_fixtures import TEXTS

    from neuronmoe.similarity.capture import capture_unit_sums
    from neuronmoe.testing import byte_tokenizer, tiny_model

    if arch not in archs:
        pytest.skip(f"{site}: the residual identity of this test holds for {', '.join(archs)}")
    model, tok = tiny_model(arch), byte_tokenizer()
    texts = {"en": TEXTS["en"][:3], "el": TEXTS["el"][:3]}
    acc, used = capture_unit_sums(model, tok, texts, max_tokens=90, batch_size=2, max_length=256, site=site)
    assert used == {"en": 90, "el": 90}
    ref = _per_token_reference(model, tok, texts, 90, grab)
    sim = acc.similarity()
    mlp, _ = capture_unit_sums(model, tok, texts, max_tokens=90, batch_size=2, max_length=256)
    for layer in ref["en"]:
        assert sim[layer, 0, 1] == pytest.approx(brute_force_mean_cos(ref["en"][layer], ref["el"][layer]), abs=1e-5)
        assert sim[layer, 1, 1] == pytest.approx(brute_force_mean_cos(ref["el"][layer], ref["el"][layer]), abs=1e-5)
    assert not np.allclose(sim, mlp.similarity(), atol=1e-4)  # another hidden state than the MLP input


def test_unknown_capture_site_is_refused(tiny_data, tiny_model_dir, capsys):
    from neuronmoe.similarity.capture import capture_modules
    from neuronmoe.testing import tiny_model

    with pytest.raises(ValueError, match="--capture-site: unknown site 'mlp_output'; choose one of mlp_input, attn_input, attn_output"):
        capture_modules(tiny_model("llama"), "mlp_output")
    assert _sim_cli(tiny_data, tiny_model_dir, "--targets", "el", "--capture-site", "mlp_output") == 2
    assert "--capture-site: 'mlp_output' is not one of mlp_input, attn_input, attn_output" in capsys.readouterr().err
    assert not (tiny_data / "similarity").exists()


def test_capture_site_from_the_environment_is_recorded(tiny_data, positive_model_dir, monkeypatch):
    monkeypatch.setenv("CAPTURE_SITE", "attn_output")
    _sim_cli(tiny_data, positive_model_dir, "--targets", "el", "--budget", 7)  # (a non-positive similarity writes no allocation)
    man = json.loads((tiny_data / "similarity" / "manifest.json").read_text())
    assert man["config"]["capture_site"] == "attn_output"
    ref = np.load(tiny_data / "similarity" / "similarity.npz")["sim"]
    monkeypatch.delenv("CAPTURE_SITE")
    assert _sim_cli(tiny_data, positive_model_dir, "--targets", "el", "--budget", 7) == 0
    assert json.loads((tiny_data / "allocation" / "layermoe.json").read_text())["capture_site"] == "mlp_input"
    assert not np.allclose(np.load(tiny_data / "similarity" / "similarity.npz")["sim"], ref)


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
    assert man["settings"]["targets"] == ["el"] and man["settings_sources"]["targets"] == "--targets"
    assert man["counts"]["tokens"] == {"en": 120, "el": 120}
    a = json.loads((root / "allocation" / "layermoe.json").read_text())
    inv = [1 / s for s in scores]
    assert a["experts_per_layer"] == [int(np.ceil(v / sum(inv) * 7 - 1e-9)) for v in inv]
    assert a["mode"] == "similarity" and a["budget"] == 7 and a["rounding"] == "ceil" and a["capture_site"] == "mlp_input"
    assert man["config"]["capture_site"] == "mlp_input"
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


def test_layermoe_g1_table_gives_table2_row_layer_by_layer():
    """LayerMoE's published G1 similarities -> our layer score and mapping (B = 70) -> Table 2's 84 experts."""
    from layermoe_g1 import NEW, OLD, pair_table

    from neuronmoe.allocation import load_allocation
    from neuronmoe.allocation.core import layermoe_allocate
    from neuronmoe.similarity.core import sim_from_pairs

    langs = OLD + NEW
    sim = sim_from_pairs(pair_table(), langs)
    table2 = list(load_allocation("llama-3.2-3b-el-layermoe").experts_per_layer)
    assert sum(table2) == 84 and len(table2) == 28
    scores = layer_scores(sim, langs, NEW)  # LayerMoE's score: mean(new-new mean, new-old mean)
    assert layermoe_allocate([float(s) for s in scores], 70) == table2
    # layer 0 by hand: new-new (0.0330, 0.0405, 0.0437), new-old the 9 others
    nn_mean = (0.0330 + 0.0405 + 0.0437) / 3
    no_mean = (0.0240 + 0.0383 + 0.0356 + 0.0300 + 0.0417 + 0.0247 + 0.0283 + 0.0400 + 0.0327) / 9
    assert scores[0] == pytest.approx((nn_mean + no_mean) / 2, abs=1e-12)
    # the all-pairs mean happens to give the same row here (the protocol's note), but other scores
    pairs = layer_scores(sim, langs, NEW, "pairs")
    assert layermoe_allocate([float(s) for s in pairs], 70) == table2
    assert not np.allclose(scores, pairs)


def test_layer_scores_differ_when_the_groups_are_unbalanced():
    """Three new languages, one old: 3 new-new pairs against 3 new-old; with 3 old: 3 against 9."""
    from neuronmoe.allocation.core import layermoe_allocate

    langs = ["en", "es", "zh", "el", "hu", "tr"]
    new = ["el", "hu", "tr"]
    sim = np.zeros((2, 6, 6))
    # layer 0: new languages alike (0.5) and far from the old ones (0.1); layer 1: all 0.3
    for i in range(6):
        for j in range(6):
            if i != j:
                both_new = langs[i] in new and langs[j] in new
                sim[0, i, j] = 0.5 if both_new else 0.1
                sim[1, i, j] = 0.3
    lm, pr = layer_scores(sim, langs, new), layer_scores(sim, langs, new, "pairs")
    assert lm[0] == pytest.approx((0.5 + 0.1) / 2) and pr[0] == pytest.approx((3 * 0.5 + 9 * 0.1) / 12)
    assert lm[1] == pytest.approx(0.3) and pr[1] == pytest.approx(0.3)
    assert layermoe_allocate([float(x) for x in lm], 10) != layermoe_allocate([float(x) for x in pr], 10)


def _g1_data(root):
    """Training documents of the G1 languages (train/ new, replay/ old) for the tiny byte model."""
    from sim_fixtures import TEXTS

    from neuronmoe.testing import byte_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    words = {"hu": "A folyó a régi malom mellett fut el.", "es": "El río pasa junto al viejo molino.",
             "zh": "河流经过旧磨坊流入山谷。"}
    for split, langs in (("train", ["el", "hu", "tr"]), ("replay", ["en", "es", "zh"])):
        d = root / "data" / split
        d.mkdir(parents=True, exist_ok=True)
        for lang in langs:
            texts = TEXTS.get(lang) or [words[lang]] * 4
            d.joinpath(f"{lang}.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
                                                  encoding="utf-8")
    (root / "data" / "manifest.json").write_text(json.dumps({"tokenizer_fingerprint": tokenizer_fingerprint(byte_tokenizer())}))


def test_similarity_cli_g1_setting_reads_training_documents(tmp_path, positive_model_dir, capsys):
    _g1_data(tmp_path)
    rc = main(["similarity", "--output-dir", str(tmp_path), "--model", str(positive_model_dir), "--device", "cpu",
               "--dtype", "float32", "--setting", "g1", "--max-tokens", "60", "--name", "layermoe-g1"])
    man = json.loads((tmp_path / "similarity" / "manifest.json").read_text())
    c = man["config"]
    assert (c["targets"], c["old_langs"], c["split"], c["include_bos"], c["layer_score"], c["setting"]) == (
        ["el", "hu", "tr"], ["en", "es", "zh"], "documents", True, "layermoe", "g1")
    assert c["budget"] == 70 and man["counts"]["tokens"] == {x: 60 for x in ["en", "es", "zh", "el", "hu", "tr"]}
    assert man["inputs"]["data"]["el"]["path"].endswith("train/el.jsonl")
    assert man["inputs"]["data"]["zh"]["path"].endswith("replay/zh.jsonl")
    z = np.load(tmp_path / "similarity" / "similarity.npz")
    langs = list(z["languages"])
    assert z["scores"] == pytest.approx(layer_scores(z["sim"], langs, ["el", "hu", "tr"]))
    if rc == 0:  # a random tiny model may give a non-positive layer; the measurement is what is checked here
        a = json.loads((tmp_path / "allocation" / "layermoe-g1.json").read_text())
        assert a["layer_score"] == "layermoe" and a["setting"] == "g1"
    # a G1 setting without an old language is refused before any work
    capsys.readouterr()
    assert main(["similarity", "--output-dir", str(tmp_path / "x"), "--model", str(positive_model_dir), "--device", "cpu",
                 "--setting", "g1", "--old-langs", "none"]) == 2
    assert "needs at least one old language" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_g1_reads_whole_documents_beyond_256_tokens(tmp_path, positive_model_dir):
    """LayerMoE tokenizes whole documents (up to 10,000 tokens) and takes each language's first tokens: the G1
    setting reads 400 tokens of one 420-byte document per language, where the general setting stops at 256."""
    from neuronmoe.similarity.settings import named_setting
    from neuronmoe.testing import byte_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    assert named_setting("g1")["max_length"] == 10000
    sentence = {"el": "Το ποτάμι περνά. ", "hu": "A folyó fut el. ", "tr": "Nehir geçiyor. ", "en": "The river runs. ",
                "es": "El río pasa. ", "zh": "河流经过。"}
    for split, langs in (("train", ["el", "hu", "tr"]), ("replay", ["en", "es", "zh"])):
        d = tmp_path / "data" / split
        d.mkdir(parents=True, exist_ok=True)
        for lang in langs:
            doc = (sentence[lang] * 60).encode("utf-8")[:420].decode("utf-8", "ignore")  # one document > 256 tokens
            d.joinpath(f"{lang}.jsonl").write_text(json.dumps({"text": doc}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"tokenizer_fingerprint": tokenizer_fingerprint(byte_tokenizer())}))
    base = ["similarity", "--model", str(positive_model_dir), "--device", "cpu", "--dtype", "float32", "--setting", "g1",
            "--max-tokens", "400"]
    main([*base, "--output-dir", str(tmp_path), "--name", "g1-long"])
    man = json.loads((tmp_path / "similarity" / "manifest.json").read_text())
    assert man["config"]["max_length"] == 10000 and man["config"]["batch_size"] == 1
    assert man["counts"]["tokens"] == {x: 400 for x in ["en", "es", "zh", "el", "hu", "tr"]}
    # the same documents cut at 256 tokens (the general setting) give at most 256 tokens per language
    (tmp_path / "o256").mkdir()
    import shutil

    shutil.copytree(tmp_path / "data", tmp_path / "o256" / "data")
    main([*base, "--output-dir", str(tmp_path / "o256"), "--max-length", "256", "--name", "g1-256"])
    cut = json.loads((tmp_path / "o256" / "similarity" / "manifest.json").read_text())["counts"]["tokens"]
    assert max(cut.values()) <= 256
