"""``neuronmoe similarity`` settings: layers and precedence, the named setting (``--setting g1``), the source
rule of the published scripts, and one-line errors naming where a bad value came from."""
from __future__ import annotations

import pytest

from neuronmoe.cli import build_parser
from neuronmoe.errors import ConfigError
from neuronmoe.similarity.settings import SimilaritySettings


def _resolve(argv, env=None):
    return SimilaritySettings.resolve(build_parser().parse_args(["similarity", *argv]), environ=env or {})


def test_defaults_are_layermoe_s():
    s = _resolve([])
    assert (s.source, s.targets, s.old_langs, s.old, s.languages) == ("en", ["el"], None, ["en"], ["en", "el"])
    assert (s.split, s.layer_score, s.include_bos, s.capture_site, s.allocation_name) == (
        "samples", "layermoe", False, "mlp_input", "layermoe")
    assert (s.tokens_per_language, s.tokens_per_language_cpu, s.budget, s.budget_per_layer) == (100000, 1024, None, 2.5)


def test_precedence_yaml_config_env_flag_set(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("batch_size: 4\nmax_length: 64\n")
    env = {"SIMILARITY_BATCH_SIZE": "6", "SIMILARITY_MAX_LENGTH": "128"}
    s = _resolve(["--config", str(user), "--batch-size", "5", "--set", "max_length=32"], env)
    assert (s.batch_size, s.max_length) == (5, 32)
    assert s.provenance()["batch_size"] == "--batch-size" and s.provenance()["max_length"] == "--set max_length"
    s = _resolve(["--config", str(user)], env)
    assert (s.batch_size, s.max_length) == (6, 128)
    assert _resolve(["--config", str(user)]).batch_size == 4


def test_named_setting_sits_over_the_yaml_files_and_under_variables_and_flags(tmp_path):
    s = _resolve(["--setting", "g1"])
    assert (s.targets, s.old_langs, s.split, s.include_bos, s.budget) == (["el", "hu", "tr"], ["en", "es", "zh"],
                                                                          "documents", True, 70)
    assert s.provenance()["targets"] == "neuronmoe/configs/similarity.yaml: settings.g1"
    user = tmp_path / "c.yaml"
    user.write_text("split: samples\nbatch_size: 2\n")
    s = _resolve(["--setting", "g1", "--config", str(user), "--targets", "el"], {"BUDGET": "60"})
    assert (s.split, s.batch_size, s.targets, s.budget) == ("documents", 1, ["el"], 60.0)  # g1 runs one document per pass
    with pytest.raises(ConfigError, match=r"^--setting 'g2': not a setting of similarity\.yaml \(have g1\)$"):
        _resolve(["--setting", "g2"])


def test_source_is_the_first_old_language_unless_given():
    assert _resolve([], {"OLD_LANGS": "de,en"}).source == "de"
    assert _resolve([], {"OLD_LANGS": "de,en"}).provenance()["source"] == "env OLD_LANGS"
    assert _resolve([], {"OLD_LANGS": "de,en", "SOURCE_LANG": "en"}).source == "en"
    assert _resolve(["--source", "en"], {"OLD_LANGS": "de,en"}).source == "en"
    assert _resolve(["--old-langs", "de,en"]).source == "en"  # the flag measures them; the source stays the YAML's


def test_old_langs_none_means_no_old_language():
    s = _resolve(["--old-langs", "none", "--layer-score", "pairs", "--targets", "el,tr"])
    assert s.old_langs == [] and s.old == [] and s.languages == ["el", "tr"]
    with pytest.raises(ConfigError, match=r"^--old-langs: LayerMoE's layer score needs at least one old language"):
        _resolve(["--old-langs", "none"])


def test_deprecated_variables_still_work(caplog):
    s = _resolve([], {"BATCH_SIZE": "3", "TARGET_LANGS": "tr"})
    assert s.batch_size == 3 and s.targets == ["tr"]
    assert "BATCH_SIZE is deprecated for `neuronmoe similarity`: use SIMILARITY_BATCH_SIZE" in caplog.text


@pytest.mark.parametrize("argv,env,message", [
    ([], {"SIMILARITY_TOKENS": "0"}, r"^env SIMILARITY_TOKENS: 0 is out of range \[1, inf\)$"),
    (["--budget", "0"], {}, r"^--budget: 0\.0 is out of range \(0, inf\)$"),
    (["--set", "capture_site=mlp_out"], {}, r"^--set capture_site: 'mlp_out' is not one of mlp_input"),
    (["--split", "test"], {}, r"^--split: 'test' is not one of samples, train, heldout, replay, documents"),
    (["--targets", "xx"], {}, r"^--targets: unknown language code 'xx'"),
    (["--targets", "en"], {}, r"^--targets: en cannot be both new and old$"),
    (["--name", "a/b"], {}, r"^--name 'a/b': contains a path separator"),
    ([], {"SIMILARITY_BATCH_SIZE": "x"}, r"^SIMILARITY_BATCH_SIZE='x': expected a whole number, got 'x'$"),
])
def test_bad_values_name_their_source(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        _resolve(argv, env)


def test_config_file_with_an_unknown_key_names_the_file(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("layerscore: pairs\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown setting 'layerscore' \(did you mean layer_score"):
        _resolve(["--config", str(user)])
