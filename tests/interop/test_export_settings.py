"""``neuronmoe export`` and ``neuronmoe model`` settings: required values, layers and precedence, and one-line
errors naming where a bad value came from; ``neuronmoe lm-eval`` keeps lm-eval's own argv."""
from __future__ import annotations

import pytest

from neuronmoe.cli import build_parser
from neuronmoe.errors import ConfigError
from neuronmoe.interop.settings import ExportSettings
from neuronmoe.models.settings import ModelSettings


def _export(argv, env=None):
    return ExportSettings.resolve(build_parser().parse_args(["export", *argv]), environ=env or {})


def _model(argv, env=None):
    return ModelSettings.resolve(build_parser().parse_args(["model", *argv]), environ=env or {})


def test_export_precedence_and_spellings(tmp_path):
    s = _export(["--out", "o"], {"PEFT_MODEL_PATH": "/a", "BASE_MODEL_PATH": "m"})
    assert (s.adapter, s.out, s.model, s.dtype, s.device, s.overwrite) == ("/a", "o", "m", "auto", "cpu", False)
    assert s.provenance()["adapter"] == "env PEFT_MODEL_PATH"
    user = tmp_path / "c.yaml"
    user.write_text("dtype: fp16\ndevice: cuda\n")
    s = _export(["--adapter", "/b", "--out", "o", "--config", str(user), "--dtype", "BF16", "--set", "device=cuda:1"],
                {"PEFT_MODEL_PATH": "/a"})
    assert (s.adapter, s.dtype, s.device) == ("/b", "bf16", "cuda:1")


@pytest.mark.parametrize("argv,env,message", [
    (["--out", "o"], {}, r"^--adapter: required: the NeuronMoE adapter folder \(or env PEFT_MODEL_PATH\)$"),
    (["--adapter", "a"], {}, r"^--out: required: the folder to write$"),
    (["--adapter", "a", "--out", "o", "--dtype", "int4"], {}, r"^--dtype: 'int4' is not one of auto, float32"),
    (["--adapter", "a", "--out", "o", "--set", "dtype=int8"], {}, r"^--set dtype: 'int8' is not one of"),
])
def test_export_bad_values_name_their_source(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        _export(argv, env)


def test_export_config_with_an_unknown_key(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("dtyp: bf16\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown setting 'dtyp' \(did you mean dtype"):
        _export(["--adapter", "a", "--out", "o", "--config", str(user)])


def test_model_settings(tmp_path):
    s = _model(["random", "llama-3.2-3b", "--out", "d", "--set", "seed=3"])
    assert (s.action, s.name, s.out, s.seed, s.dtype) == ("random", "llama-3.2-3b", "d", 3, "bfloat16")
    user = tmp_path / "c.yaml"
    user.write_text("dtype: float32\n")
    assert _model(["info", "--config", str(user)]).dtype == "float32"
    with pytest.raises(ConfigError, match=r"^ACTION: 'get' is not one of fetch, info, list, random"):
        _model(["get"])
    with pytest.raises(ConfigError, match=r"^model random: give NAME"):
        _model(["random"])
    with pytest.raises(ConfigError, match=r"^--dtype: 'int4' is not one of"):
        _model(["info", "--dtype", "int4"])
    user.write_text("sed: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown setting 'sed' \(did you mean seed"):
        _model(["info", "--config", str(user)])


def test_lm_eval_is_listed_and_takes_no_settings():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    p = sub.choices["lm-eval"]
    assert not any(a.option_strings for a in p._actions)  # every flag belongs to lm-eval's own parser
