"""``neuronmoe prepare-data`` settings: every layer and its precedence, the published scripts' variables and
aliases, and one-line errors naming where a bad value came from."""
from __future__ import annotations

import pytest

from neuronmoe.cli import build_parser
from neuronmoe.data.settings import OUTPUT_KEYS, DataSettings
from neuronmoe.errors import ConfigError


def _resolve(argv, env=None):
    return DataSettings.resolve(build_parser().parse_args(["prepare-data", *argv]), environ=env or {})


def test_defaults_are_the_shipped_yaml():
    s = _resolve([])
    assert (s.new_langs, s.old_langs, s.neg_langs) == (["el"], ["en"], ["tr", "hu", "de", "es", "fr", "ja", "zh"])
    assert (s.num_samples, s.max_tokens, s.hf_max_tokens, s.udhr, s.seed) == (500, None, 2_000_000_000, True, 42)
    assert s.provenance()["num_samples"] == "neuronmoe/configs/data.yaml"
    assert s.languages == ["el", "en", "tr", "hu", "de", "es", "fr", "ja", "zh"]


def test_precedence_yaml_config_env_flag_set(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("num_samples: 40\nseed: 5\nreplay_docs: 9\n")
    env = {"NUM_SENTENCES": "70", "DATA_SEED": "8"}
    s = _resolve(["--config", str(user), "--num-sentences", "80", "--set", "seed=6"], env)
    assert (s.num_samples, s.seed, s.replay_docs) == (80, 6, 9)
    src = s.provenance()
    assert (src["num_samples"], src["seed"], src["replay_docs"]) == ("--num-sentences", "--set seed", str(user))
    s = _resolve(["--config", str(user)], env)
    assert (s.num_samples, s.seed) == (70, 8) and s.provenance()["num_samples"] == "env NUM_SENTENCES"


def test_data_config_variable_names_the_config_file(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("replay_docs: 11\n")
    b.write_text("replay_docs: 12\n")
    assert _resolve([], {"DATA_CONFIG": str(a)}).replay_docs == 11
    assert _resolve(["--config", str(b)], {"DATA_CONFIG": str(a)}).replay_docs == 12  # the flag wins


def test_old_flag_spellings_token_counts_and_switches(caplog):
    s = _resolve(["--num-samples", "7", "--max-tokens", "2e9", "--no-udhr", "--force"])
    assert (s.num_samples, s.max_tokens, s.udhr, s.force) == (7, 2_000_000_000, False, True)
    assert _resolve(["--max-tokens", "all"]).max_tokens is None
    assert _resolve([], {"MAX_TOKENS": "5e8"}).max_tokens == 500_000_000
    s = _resolve([], {"NO_UDHR": "1", "FORCE": "1", "SEED": "3"})
    assert (s.udhr, s.force, s.seed) == (False, True, 3)
    assert "SEED is deprecated for `neuronmoe prepare-data`: use DATA_SEED" in caplog.text
    assert _resolve([], {"NO_UDHR": "0"}).udhr is True


def test_languages_variable_gives_the_extra_analysis_languages():
    s = _resolve([], {"LANGUAGES": "en,el,tr,ja", "NEW_LANGS": "el"})
    assert s.neg_langs == ["tr", "ja"] and s.provenance()["neg_langs"] == "env LANGUAGES"
    assert _resolve([], {"LANGUAGES": "en,el,tr", "NEG_LANGS": "de"}).neg_langs == ["de"]  # NEG_LANGS wins
    assert _resolve(["--neg-langs", "fr"], {"LANGUAGES": "en,el,tr"}).neg_langs == ["fr"]  # and the flag
    s = _resolve(["--new-langs", "tr", "--old-langs", "en,de"], {"LANGUAGES": "en,de,el,tr,hu"})
    assert s.neg_langs == ["el", "hu"]


def test_source_may_be_a_mapping_and_hf_datasets_is_data_not_a_setting(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("source: {el: 'jsonl:/x', '*': bundled}\nhf_datasets: {my/set: {config: null}}\n")
    s = _resolve(["--config", str(user), "--set", "source.en=txt:/y"])
    assert s.source == {"el": "jsonl:/x", "*": "bundled", "en": "txt:/y"}
    assert _resolve(["--source", "hf:uonlp/CulturaX"]).source == "hf:uonlp/CulturaX"


@pytest.mark.parametrize("argv,env,message", [
    (["--heldout-fraction", "1.5"], {}, r"^--heldout-fraction: 1\.5 is out of range \[0, 1\)$"),
    ([], {"HELDOUT_FRACTION": "2"}, r"^env HELDOUT_FRACTION: 2\.0 is out of range \[0, 1\)$"),
    (["--set", "max_tokens=0"], {}, r"^--set max_tokens: 0 is out of range \[1, inf\)$"),
    (["--max-tokens", "lots"], {}, r"^--max-tokens: not a token count: 'lots'$"),
    (["--num-sentences", "0"], {}, r"^--num-sentences: 0 is out of range \[1, inf\)$"),
    ([], {"NEW_LANGS": "xx"}, r"^env NEW_LANGS: unknown language code 'xx'"),
    (["--new-langs", "xx"], {}, r"^--new-langs \(NEW_LANGS\): unknown language code 'xx'"),
    (["--new-langs", "el", "--old-langs", "el"], {}, r"^--old-langs: el cannot be both a new and an old language"),
    (["--set", "batch_docs=0"], {}, r"^--set batch_docs: 0 is out of range \[1, inf\)$"),
    (["--set", "force=true"], {}, r"^--set force: unknown setting 'force'"),
])
def test_bad_values_name_their_source(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        _resolve(argv, env)


def test_config_file_with_an_unknown_key_names_the_file(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("num_sample: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown setting 'num_sample' \(did you mean num_samples"):
        _resolve(["--config", str(user)])
    with pytest.raises(ConfigError, match="missing.yaml"):
        _resolve(["--config", str(tmp_path / "missing.yaml")])


def test_output_config_holds_what_decides_the_files():
    s = _resolve(["--num-proc", "4"])
    cfg = s.output_config()
    assert tuple(cfg) == OUTPUT_KEYS and "num_proc" not in cfg and "force" not in cfg
    assert cfg == _resolve(["--num-proc", "1"]).output_config()  # the same files for any number of processes


def test_print_args_shows_the_resolved_settings(monkeypatch, capsys):
    import json

    from neuronmoe.cli import main

    for k in ("NEW_LANGS", "OLD_LANGS", "NEG_LANGS", "LANGUAGES", "DATA_SEED", "SEED", "DATA_CONFIG", "NUM_SENTENCES"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NEURONMOE_PRINT_ARGS", "1")
    monkeypatch.setenv("NEW_LANGS", "hu")
    assert main(["prepare-data", "--num-samples", "9"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["new_langs"] == ["hu"] and out["num_samples"] == 9
    assert out["settings_sources"]["new_langs"] == "env NEW_LANGS" and out["settings_sources"]["num_samples"] == "--num-sentences"
