"""The typed settings framework: parser, layers and their precedence, validation messages, argv round trip."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from neuronmoe.errors import ConfigError
from neuronmoe.settings import Settings, parse_list, setting


def _toy(tmp_path, yaml_text="size: 4\nrate: 0.5\nlangs: [en, el]\n"):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml_text)

    @dataclass(kw_only=True)
    class Toy(Settings):
        COMMAND = "toy"
        YAML = str(path)

        size: int = setting(env="TOY_SIZE", env_aliases=("OLD_SIZE",), range=(1, 100), help="a size")
        rate: float = setting(env="TOY_RATE", range=(0, 1), lo_open=True, help="a rate", paper="Table 7")
        langs: list[str] = setting(env="TOY_LANGS", help="languages")
        mode: str = setting("a", choices=("a", "b"), help="a mode")
        extra: dict = setting(default_factory=dict, flag=None, help="a mapping")
        name: str | None = setting(None, name_like=True, yaml=False, help="a run name")
        force: bool = setting(False, switch=True, yaml=False, help="a switch")

        def check(self) -> None:
            if self.mode == "b" and self.size > 10:
                self.fail("size", "must be at most 10 in mode b")

    return Toy


def _parse(cls, argv):
    p = argparse.ArgumentParser()
    cls.add_arguments(p)
    return p.parse_args(argv)


def test_defaults_come_from_the_yaml(tmp_path):
    s = _toy(tmp_path).resolve(environ={})
    assert (s.size, s.rate, s.langs, s.mode, s.extra, s.force) == (4, 0.5, ["en", "el"], "a", {}, False)
    assert s.provenance()["size"].endswith("toy.yaml")


def test_precedence_yaml_config_env_flag_set(tmp_path):
    Toy = _toy(tmp_path)
    user = tmp_path / "user.yaml"
    user.write_text(f"inherit: {tmp_path / 'toy.yaml'}\nsize: 5\nrate: 0.25\nmode: b\n")
    env = {"TOY_SIZE": "6", "TOY_RATE": "0.75"}
    s = Toy.resolve(_parse(Toy, ["--config", str(user), "--size", "7", "--set", "size=8"]), environ=env)
    assert s.size == 8 and s.rate == 0.75 and s.mode == "b" and s.langs == ["en", "el"]
    src = s.provenance()
    assert src["size"] == "--set size" and src["rate"] == "env TOY_RATE" and src["mode"] == str(user)
    s = Toy.resolve(_parse(Toy, ["--size", "7"]), environ=env)
    assert s.size == 7 and s.source("size") == "--size"


def test_deprecated_variable_still_works(tmp_path, caplog):
    s = _toy(tmp_path).resolve(environ={"OLD_SIZE": "9"})
    assert s.size == 9 and s.source("size") == "env OLD_SIZE"
    assert "OLD_SIZE is deprecated" in caplog.text and "TOY_SIZE" in caplog.text


def test_empty_values_count_as_not_given_and_none_empties_a_list(tmp_path):
    Toy = _toy(tmp_path)
    assert Toy.resolve(_parse(Toy, ["--langs", ""]), environ={"TOY_LANGS": ""}).langs == ["en", "el"]
    assert Toy.resolve(_parse(Toy, ["--langs", "none"]), environ={}).langs == []
    assert Toy.resolve(environ={"TOY_LANGS": "none"}).langs == []
    assert parse_list("en, el el") == ["en", "el"]


@pytest.mark.parametrize("argv,env,message", [
    (["--size", "0"], {}, r"^--size: 0 is out of range \[1, 100\]$"),
    (["--size", "x"], {}, r"^--size: expected a whole number, got 'x'$"),
    (["--rate", "fast"], {}, r"^--rate: expected a number, got 'fast'$"),
    (["--size", "2.5"], {}, r"^--size: expected a whole number, got '2.5'$"),
    ([], {"TOY_SIZE": "-3"}, r"^env TOY_SIZE: -3 is out of range \[1, 100\]$"),
    (["--rate", "inf"], {}, r"^--rate: inf is not a finite number$"),
    (["--rate", "nan"], {}, r"^--rate: nan is not a finite number$"),
    (["--rate", "0"], {}, r"^--rate: 0.0 is out of range \(0, 1\]$"),
    (["--mode", "c"], {}, r"^--mode: 'c' is not one of a, b$"),
    (["--set", "sise=3"], {}, r"^--set sise: unknown setting 'sise' \(did you mean size\?\)"),
    (["--set", "name=x"], {}, r"^--set name: unknown setting 'name'"),
    (["--set", "oops"], {}, r"^--set 'oops': expected KEY=VALUE$"),
    (["--name", "../x"], {}, r"^--name '\.\./x': contains a path separator"),
    (["--name", ".."], {}, r"^--name '\.\.': is not a name"),
    (["--mode", "b", "--size", "11"], {}, r"^--size: must be at most 10 in mode b$"),
])
def test_bad_values_give_one_line_naming_the_source(tmp_path, argv, env, message):
    Toy = _toy(tmp_path)
    with pytest.raises(ConfigError, match=message):
        Toy.resolve(_parse(Toy, argv), environ=env)


def test_bad_yaml_value_names_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"toy\.yaml: size: expected an integer, got True"):
        _toy(tmp_path, "size: true\nrate: 0.5\nlangs: [en]\n").resolve(environ={})
    with pytest.raises(ConfigError, match=r"no value for langs"):
        _toy(tmp_path, "size: 1\nrate: 0.5\n").resolve(environ={})


def test_inherit_cycle_is_an_error(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"inherit: {b}\n")
    b.write_text(f"inherit: {a}\n")
    with pytest.raises(ConfigError, match="inherit cycle"):
        _toy(tmp_path).resolve(config_file=str(a), environ={})


def test_mappings_merge_across_layers(tmp_path):
    Toy = _toy(tmp_path, "size: 4\nrate: 0.5\nlangs: [en]\nextra: {a: 1, b: {c: 2}}\n")
    s = Toy.resolve(_parse(Toy, ["--set", "extra.b.d=3", "--set", "extra.a=5"]), environ={})
    assert s.extra == {"a": 5, "b": {"c": 2, "d": 3}}


def test_to_argv_round_trips_what_was_given(tmp_path):
    Toy = _toy(tmp_path)
    s = Toy.resolve(environ={}, size=9, langs=[], force=True, extra={"k": 1})
    argv = s.to_argv()
    assert argv == ["--size", "9", "--langs", "none", "--force", "--set", 'extra={"k": 1}']
    again = Toy.resolve(_parse(Toy, argv), environ={"TOY_SIZE": "3"})
    assert again.to_dict() == s.to_dict()


def test_replace_validates_again(tmp_path):
    s = _toy(tmp_path).resolve(environ={})
    assert s.replace(size=5).size == 5
    with pytest.raises(ConfigError, match="out of range"):
        s.replace(size=500)


def test_every_flag_has_a_help_line_and_the_default(tmp_path):
    Toy = _toy(tmp_path)
    p = argparse.ArgumentParser()
    Toy.add_arguments(p)
    helps = {a.dest: a.help for a in p._actions if a.dest not in ("help",)}
    assert all(helps.values())
    assert "env TOY_SIZE; default 4" in helps["size"] and "paper: Table 7" in helps["rate"]
