"""``neuronmoe analyze-experts`` and ``neuronmoe figures`` settings: layers and precedence (the paper's defaults
in configs/analysis.yaml), the one-language target, and one-line errors naming where a bad value came from."""
from __future__ import annotations

import pytest

from neuronmoe.analysis.settings import AnalysisSettings, FiguresSettings
from neuronmoe.cli import build_parser
from neuronmoe.errors import ConfigError


def _resolve(argv, env=None, command="analyze-experts", cls=AnalysisSettings):
    return cls.resolve(build_parser().parse_args([command, *argv]), environ=env or {})


def test_defaults_are_the_paper_s():
    s = _resolve([])
    assert (s.threshold, s.no_token, s.dense_layers, s.batch_size, s.max_length, s.limit) == (0.9, "exclude", True, 8, 256, 0)
    assert (s.run, s.adapter, s.languages, s.target) == ("neuronmoe-s1", None, None, None)
    assert s.provenance()["threshold"] == "neuronmoe/configs/analysis.yaml"


def test_precedence_yaml_config_env_flag_set(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("threshold: 0.8\nlimit: 5\n")
    env = {"ANALYSIS_AP_THRESHOLD": "0.7", "ANALYSIS_LIMIT": "6"}
    s = _resolve(["--config", str(user), "--threshold", "0.6", "--set", "limit=7"], env)
    assert (s.threshold, s.limit) == (0.6, 7)
    s = _resolve(["--config", str(user)], env)
    assert (s.threshold, s.limit) == (0.7, 6) and s.provenance()["threshold"] == "env ANALYSIS_AP_THRESHOLD"
    assert _resolve(["--config", str(user)]).threshold == 0.8


def test_target_is_one_language_and_switches_go_both_ways(caplog):
    assert _resolve([], {"NEW_LANGS": "el"}).target == "el"
    assert _resolve(["--target", "tr"], {"NEW_LANGS": "el,tr"}).target == "tr"  # the flag wins: no error
    assert _resolve([], {"TARGET_LANG": "hu"}).target == "hu" and "TARGET_LANG is deprecated" in caplog.text
    assert _resolve(["--no-dense-layers"]).dense_layers is False
    assert _resolve([], {"ANALYSIS_DENSE_LAYERS": "0"}).dense_layers is False
    assert _resolve(["--dense-layers"], {"ANALYSIS_DENSE_LAYERS": "0"}).dense_layers is True
    assert _resolve(["--adapter", "none"]).adapter == "none"  # the dense base, not "unset"
    assert _resolve(["--languages", "en,el"]).languages == ["en", "el"]


@pytest.mark.parametrize("argv,env,message", [
    (["--threshold", "2"], {}, r"^--threshold: 2\.0 is out of range \(0, 1\]$"),
    (["--limit", "-1"], {}, r"^--limit: -1 is out of range \[0, inf\)$"),
    ([], {"ANALYSIS_BATCH_SIZE": "0"}, r"^env ANALYSIS_BATCH_SIZE: 0 is out of range \[1, inf\)$"),
    (["--no-token", "skip"], {}, r"^--no-token: 'skip' is not one of exclude, bottom, zero$"),
    ([], {"NEW_LANGS": "el,tr"}, r"^env NEW_LANGS: give one language, not 2 \(NEW_LANGS names several: pass --target\)$"),
    (["--run", "../x"], {}, r"^--run '\.\./x': contains a path separator"),
    (["--set", "max_length=0"], {}, r"^--set max_length: 0 is out of range \[1, inf\)$"),
])
def test_bad_values_name_their_source(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        _resolve(argv, env)


def test_config_file_with_an_unknown_key_names_the_file(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("treshold: 0.5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown setting 'treshold' \(did you mean threshold"):
        _resolve(["--config", str(user)])


def test_figures_settings(tmp_path):
    s = _resolve([], {"FIGURES_DIR": "/f", "NEW_LANGS": "el", "OUTPUT_DIR": "/o"}, "figures", FiguresSettings)
    assert (s.figures_dir, s.target, s.output_dir) == ("/f", "el", "/o")
    user = tmp_path / "c.yaml"
    user.write_text("target: hu\n")
    assert _resolve(["--config", str(user)], {}, "figures", FiguresSettings).target == "hu"
    assert _resolve(["--config", str(user), "--set", "target=tr"], {}, "figures", FiguresSettings).target == "tr"
    with pytest.raises(ConfigError, match=r"^--target: give one language, not 2"):
        _resolve(["--target", "el,tr"], {}, "figures", FiguresSettings)
    user.write_text("figure_dir: x\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown setting 'figure_dir'"):
        _resolve(["--config", str(user)], {}, "figures", FiguresSettings)
