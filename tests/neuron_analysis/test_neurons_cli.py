"""The stage end to end on a tiny model: contract outputs, skip when complete, LAPE, bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neuronmoe.cli import main
from neuronmoe.neuron_analysis.analysis import run_neuron_analysis


def _cli(tiny_model_dir, out, *extra):
    return main(["neurons", "--model", str(tiny_model_dir), "--output-dir", str(out), "--languages", "en,el,tr",
                 "--dtype", "float32", "--device", "cpu", "--batch-size", "4", "--top-k", "30", "--no-progress", *extra])


def test_cli_writes_contract_outputs_and_skips_when_complete(tiny_model_dir, out_dir, capsys):
    assert _cli(tiny_model_dir, out_dir) == 0
    nd = out_dir / "neurons"
    units = np.load(nd / "units.npz", allow_pickle=False)
    assert set(units.files) == {"layer", "module_id", "index", "module_names"}
    U = len(units["layer"])
    assert U == 3 * 256 and list(units["module_names"])[4] == "gate_proj"
    ap = np.load(nd / "ap.npy", allow_pickle=False)
    assert ap.shape == (U, 3) and ap.dtype == np.float32 and 0 <= ap.min() and ap.max() <= 1
    per_layer = {}
    for lang in ("en", "el", "tr"):
        lines = (nd / f"selected_{lang}.csv").read_text().splitlines()
        assert lines[0] == "layer,module,index,ap"
        rows = [ln.split(",") for ln in lines[1:]]
        assert 0 < len(rows) <= 30
        aps = [float(r[3]) for r in rows]
        assert min(aps) > 0.5 and aps == sorted(aps, reverse=True)
        # the AP written is the AP of that (layer, module, index) unit in ap.npy
        names = list(units["module_names"])
        for r in rows[:5]:
            u = np.flatnonzero((units["layer"] == int(r[0])) & (units["module_id"] == names.index(r[1])) & (units["index"] == int(r[2])))
            assert len(u) == 1 and abs(ap[u[0], ["en", "el", "tr"].index(lang)] - float(r[3])) < 1e-5
        per_layer[lang] = np.bincount([int(r[0]) for r in rows], minlength=3).tolist()
    counts = json.loads((nd / "counts.json").read_text())
    assert counts["languages"] == ["en", "el", "tr"] and counts["num_layers"] == 3
    assert counts["per_layer"] == per_layer
    assert sum(sum(v) for v in counts["per_module"]["el"].values()) == sum(per_layer["el"])
    csv = (nd / "counts_per_layer.csv").read_text().splitlines()
    assert csv[0] == "layer,en,el,tr" and csv[1] == "0," + ",".join(str(per_layer[x][0]) for x in ("en", "el", "tr"))
    assert len((nd / "counts_per_layer_module.csv").read_text().splitlines()) == 1 + 3 * 7
    man = json.loads((nd / "manifest.json").read_text())
    assert {"model", "languages", "metric", "top_k", "ap_threshold", "pool", "include_bos", "modules"} <= set(man["config"])
    assert man["config"]["ap_threshold"] == 0.5 and man["counts"]["samples"] == {"en": 6, "el": 6, "tr": 6}
    assert "ap.npy" in man["files"] and (out_dir / "figures" / "neurons_per_layer.png").exists()
    assert (out_dir / "figures" / "neurons_per_layer.pdf").exists()
    capsys.readouterr()
    mtime = (nd / "ap.npy").stat().st_mtime_ns
    assert _cli(tiny_model_dir, out_dir) == 0
    assert "up to date" in capsys.readouterr().out and (nd / "ap.npy").stat().st_mtime_ns == mtime
    # another threshold: recomputed from the stored activations, no threshold keeps top_k everywhere
    assert _cli(tiny_model_dir, out_dir, "--ap-threshold", "0") == 0
    for lang in ("en", "el", "tr"):
        assert len((nd / f"selected_{lang}.csv").read_text().splitlines()) == 31


def test_lape_metric_gives_the_same_outputs(tiny_model_dir, out_dir, make_cfg):
    res = run_neuron_analysis(make_cfg(out_dir, metric="lape", ap_threshold=0.0, top_k=10))
    nd = out_dir / "neurons"
    units = np.load(nd / "units.npz", allow_pickle=False)
    assert list(units["module_names"]) == ["act_fn"] and len(units["layer"]) == 3 * 64
    ap = np.load(nd / "ap.npy")
    lape = np.load(nd / "lape.npz", allow_pickle=False)
    assert ap.shape == (192, 3) and lape["prob"].shape == (192, 3)
    assert ((ap > 0) <= (lape["prob"] > float(lape["bar"]))).all()
    assert json.loads((nd / "manifest.json").read_text())["config"]["metric"] == "lape"
    assert res["per_layer"].sum() == sum(len(s) for s in res["selected"]) > 0
    assert (nd / "selected_el.csv").read_text().startswith("layer,module,index,ap\n")


def test_modules_restriction(tiny_model_dir, out_dir, make_cfg):
    run_neuron_analysis(make_cfg(out_dir, modules=["down_proj", "q_proj"], ap_threshold=0.0))
    units = np.load(out_dir / "neurons" / "units.npz", allow_pickle=False)
    assert list(units["module_names"]) == ["q_proj", "down_proj"] and len(units["layer"]) == 3 * 64


def test_tokenizer_mismatch_is_an_error(tiny_model_dir, tmp_path, tiny_tok, samples_writer, make_cfg, capsys):
    samples_writer(tmp_path / "data", tiny_tok, fingerprint="0123456789abcdef")
    with pytest.raises(ValueError, match="another tokenizer"):
        run_neuron_analysis(make_cfg(tmp_path))
    assert _cli(tiny_model_dir, tmp_path) == 2
    assert "another tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "neurons").exists()


@pytest.mark.parametrize("case,match", [
    ("missing_lang", "el.jsonl: no such data file"),
    ("empty_lang", "tr.jsonl: no texts"),
    ("bad_json", "expected a JSON object with a 'text' field"),
    ("too_long", "longer than --max-length 3"),
    ("unknown_lang", "unknown language code 'xx'"),
    ("one_lang", "at least two languages"),
    ("bad_module", "unknown module"),
    ("lape_modules", "LAPE always uses"),
])
def test_bad_inputs_fail_before_writing(case, match, tmp_path, tiny_tok, samples_writer, make_cfg):
    d = tmp_path / "data"
    samples_writer(d, tiny_tok)
    kw = {}
    if case == "missing_lang":
        (d / "samples" / "el.jsonl").unlink()
    elif case == "empty_lang":
        (d / "samples" / "tr.jsonl").write_text("\n")
    elif case == "bad_json":
        (d / "samples" / "en.jsonl").write_text('{"txt": "x"}\n')
    elif case == "too_long":
        kw["max_length"] = 3
    elif case == "unknown_lang":
        kw["languages"] = ["en", "xx"]
    elif case == "one_lang":
        kw["languages"] = ["en"]
    elif case == "bad_module":
        kw["modules"] = ["gate"]
    elif case == "lape_modules":
        kw.update(metric="lape", modules=["gate_proj"])
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        run_neuron_analysis(make_cfg(tmp_path, **kw))
    assert not (tmp_path / "neurons").exists()


def _resolve(argv):
    from neuronmoe.cli import build_parser
    from neuronmoe.neuron_analysis.settings import NeuronSettings

    return NeuronSettings.resolve(build_parser().parse_args(["neurons", *argv]))


def test_config_precedence_yaml_env_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("TOP_K", "77")
    monkeypatch.setenv("LANGUAGES", "en el")
    monkeypatch.setenv("INCLUDE_BOS", "false")
    user = tmp_path / "c.yaml"
    user.write_text("top_k: 5\nap_threshold: 0.25\n")
    cfg = _resolve(["--config", str(user), "--ap-threshold", "0", "--set", "pool=max"])
    assert cfg.top_k == 77 and cfg.languages == ["en", "el"] and cfg.include_bos is False
    assert cfg.ap_threshold == 0.0 and cfg.pool == "max" and cfg.dtype == "fast"
    assert cfg.provenance()["top_k"] == "env TOP_K" and cfg.provenance()["pool"] == "--set pool"


def test_neurons_config_names_the_config_file(monkeypatch, tmp_path):
    user = tmp_path / "n.yaml"
    user.write_text("top_k: 5\n")
    monkeypatch.setenv("NEURONS_CONFIG", str(user))
    cfg = _resolve([])
    assert cfg.top_k == 5 and cfg.provenance()["top_k"] == str(user)
    assert _resolve(["--top-k", "7"]).top_k == 7


def test_unknown_yaml_field_is_named_with_its_file(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("topk: 5\n")
    with pytest.raises(ValueError, match=r"c\.yaml: unknown setting 'topk' \(did you mean top_k\?\)"):
        _resolve(["--config", str(user)])


def test_bad_values_name_their_source(monkeypatch):
    from neuronmoe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--top-k: 0 is out of range \[1, inf\)$"):
        _resolve(["--top-k", "0"])
    with pytest.raises(ConfigError, match=r"^--set ap_threshold: nan is not a finite number$"):
        _resolve(["--set", "ap_threshold=nan"])
    monkeypatch.setenv("NEURONS_BATCH_SIZE", "eight")
    with pytest.raises(ConfigError, match=r"^NEURONS_BATCH_SIZE='eight': expected a whole number, got 'eight'$"):
        _resolve([])
