"""`neuronmoe allocate`'s typed settings: sources and precedence, cross-field rules, names and paths."""
from __future__ import annotations

import json

import pytest

from neuronmoe.allocation.settings import AllocateSettings
from neuronmoe.errors import ConfigError


def _resolve(environ=None, **kw):
    return AllocateSettings.resolve(environ=environ or {}, **kw)


def test_defaults_are_the_papers():
    s = _resolve()
    assert (s.mode, s.source_lang, s.targets, s.e_min, s.e_max, s.rounding) == ("pair", "en", ["el"], 1, 6, "floor")
    assert (s.bootstrap, s.sample_sizes, s.grid_top_k, s.grid_ap_thresholds) == (0, None, [500, 1000, 2000], [0.3, 0.5, 0.7])
    assert not s.stability_requested


def test_precedence_yaml_config_env_flag_set(tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("e_max: 5\nrounding: round\n")
    env = {"E_MAX": "4", "ROUNDING": "floor"}
    s = AllocateSettings.resolve({"e_max": "3"}, environ=env, config_file=str(cfg), sets=["e_min=2"])
    assert (s.e_max, s.rounding, s.e_min) == (3, "floor", 2)
    where = s.provenance()
    assert (where["e_max"], where["rounding"], where["e_min"]) == ("--e-max", "env ROUNDING", "--set e_min")
    assert where["mode"] == "neuronmoe/configs/allocation.yaml"


def test_source_is_the_first_old_language_unless_given():
    assert _resolve({"OLD_LANGS": "hu,en"}).source_lang == "hu"
    assert _resolve({"OLD_LANGS": "hu,en", "SOURCE_LANG": "en", "NEW_LANGS": "el"}).source_lang == "en"
    assert _resolve({"OLD_LANGS": "de"}, source_lang="tr").source_lang == "tr"


def test_deprecated_target_variable_still_works(caplog):
    assert _resolve({"TARGET_LANGS": "tr,hu"}).targets == ["tr", "hu"]
    assert "TARGET_LANGS is deprecated" in caplog.text


def test_scores_csv_selects_its_mode_unless_another_is_given():
    assert _resolve(scores_csv="s.csv").mode == "scores-csv"
    with pytest.raises(ConfigError, match="--scores-csv: give either --scores-csv or --mode multi"):
        AllocateSettings.resolve({"mode": "multi", "scores_csv": "s.csv"}, environ={})
    with pytest.raises(ConfigError, match="give either --scores-csv or --mode pair"):
        _resolve({"MODE": "pair", "SCORES_CSV": "s.csv"})
    with pytest.raises(ConfigError, match="--mode: scores-csv is what --scores-csv FILE selects"):
        AllocateSettings.resolve({"mode": "scores-csv"}, environ={})


@pytest.mark.parametrize("flags,match", [
    ({"name": "../../x"}, r"--name '\.\./\.\./x': contains a path separator"),
    ({"name": "/tmp/abs"}, "--name '/tmp/abs': contains a path separator"),
    ({"name": ".hidden"}, "starts with a dot"),
    ({"out": "alloc.txt"}, "--out: 'alloc.txt' is not a .json file path"),
    ({"e_min": "0"}, r"--e-min: must be an integer >= 1"),
    ({"e_min": "3", "e_max": "2"}, r"--e-max: must be an integer >= --e-min \(3\)"),
    ({"targets": "en"}, "--targets: the source language 'en' cannot also be a target"),
    ({"source_lang": "xx"}, "xx"),
    ({"bootstrap": "-2"}, r"--bootstrap: -2 is out of range"),
    ({"bootstrap": "10", "mode": "similarity"}, "--bootstrap: stability is measured for allocations from neuron results"),
    ({"sample_sizes": "50,100"}, "--sample-sizes: needs --bootstrap N"),
    ({"sample_sizes": "50,x", "bootstrap": "5"}, "--sample-sizes"),
    ({"grid_ap_thresholds": "0.5,1.0", "sensitivity": True}, "--grid-ap-thresholds: every AP threshold must lie in"),
])
def test_bad_values_are_one_line_config_errors_naming_their_flag(flags, match):
    with pytest.raises(ConfigError, match=match):
        AllocateSettings.resolve(flags, environ={})


def test_out_may_not_be_a_folder(tmp_path):
    d = tmp_path / "x.json"
    d.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        AllocateSettings.resolve({"out": str(d)}, environ={})


def test_a_name_from_the_environment_is_checked_and_named_so():
    with pytest.raises(ConfigError, match="env ALLOCATION_NAME '../x'"):
        _resolve({"ALLOCATION_NAME": "../x"})


def test_an_old_yaml_key_is_named_with_a_suggestion(tmp_path):
    cfg = tmp_path / "old.yaml"
    cfg.write_text("source: en\n")
    with pytest.raises(ConfigError, match="unknown setting 'source'.*source_lang"):
        AllocateSettings.resolve({}, environ={}, config_file=str(cfg))


def test_sample_sizes_and_grids_are_sorted_numbers():
    s = AllocateSettings.resolve({"bootstrap": "5", "sample_sizes": "200,50,100,50"}, environ={},
                                 sets=["grid_top_k=[2000, 500]"])
    assert s.sample_sizes == [50, 100, 200] and s.grid_top_k == [500, 2000]


def test_argv_reproduces_the_settings():
    s = AllocateSettings.resolve({"bootstrap": "20", "sample_sizes": "50,100", "name": "mine", "targets": "tr"}, environ={})
    argv = s.to_argv()
    from neuronmoe.cli import build_parser

    again = AllocateSettings.resolve(build_parser().parse_args(["allocate", *argv]), environ={})
    assert again.to_dict() == s.to_dict()


def test_print_args_shows_the_resolved_settings(monkeypatch, capsys):
    from neuronmoe.cli import main

    monkeypatch.setenv("NEURONMOE_PRINT_ARGS", "1")
    monkeypatch.setenv("E_MAX", "5")
    assert main(["allocate", "--bootstrap", "7", "--targets", "tr"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["bootstrap"], d["e_max"], d["targets"], d["source_lang"]) == (7, 5, ["tr"], "en")
    assert d["settings_sources"]["e_max"] == "env E_MAX" and d["settings_sources"]["bootstrap"] == "--bootstrap"


def test_every_flag_has_a_help_line():
    from neuronmoe.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    p = sub.choices["allocate"]
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
