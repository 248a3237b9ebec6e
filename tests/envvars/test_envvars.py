"""The variable table: one meaning per name, old spellings resolved per command, the README table."""
from __future__ import annotations

from pathlib import Path

from neuronmoe import envvars
from neuronmoe.envvars import VARS, get, lookup, markdown_table, report

ROOT = Path(__file__).resolve().parents[2]


def test_old_names_resolve_only_where_they_were_read():
    env = {"TARGET_LANGS": "tr", "SEED": "3", "BATCH_SIZE": "2"}
    assert lookup("NEW_LANGS", env, "train") == ("tr", "TARGET_LANGS")
    assert lookup("NEW_LANGS", env, "pipeline") == (None, None)  # the pipeline read TARGET_LANG, never TARGET_LANGS
    assert get("NEW_LANGS", "el", "pipeline", env) == "el"
    assert lookup("NEW_LANGS", dict(env, NEW_LANGS="hu"), "train") == ("hu", "NEW_LANGS")  # canonical wins
    assert [get(v, command=c, environ=env) for v, c in (("DATA_SEED", "prepare-data"), ("TRAIN_SEED", "train"),
                                                         ("EVAL_SEED", "evaluate"))] == ["3", "3", "3"]
    assert get("TRAIN_BATCH_SIZE", environ={"BATCH_SIZE": ""}, command="train") is None  # empty = unset


def test_one_meaning_per_name():
    """No name is canonical twice; an old name is an alias of at most one variable per command."""
    envvars._check_registry()
    names = [v.name for v in VARS]
    assert len(names) == len(set(names))
    for generic in ("BATCH_SIZE", "SEED", "MAX_LENGTH", "TOP_K", "TOPK", "TARGET_LANG", "TARGET_LANGS", "PAPER_TARGETS"):
        assert generic not in names, generic  # stage-specific or canonical names replace them


def test_report_names_deprecated_and_ignored_variables():
    lines = report("neurons", {"BATCH_SIZE": "4", "PEFT_MODEL_PATH": "/a", "LANGUAGES": "en,el", "HOME": "/root"})
    assert lines == ["BATCH_SIZE is deprecated, use NEURONS_BATCH_SIZE (neuron analysis: sentences per forward pass)",
                     "PEFT_MODEL_PATH is set but `neuronmoe neurons` does not read it; it has no effect on this run"]
    lines = report("train", {"NPROC": "2", "TOP_K": "5"}, script="run_stage1.sh")
    assert lines == ["TOP_K is set but scripts/run_stage1.sh does not read it (an old name of NEURONS_TOP_K); "
                     "it has no effect on this run"]


def test_the_table_comes_from_the_settings_specs():
    """Every variable a command's settings spec reads is in the table with the spec's flag and old names, and every
    reading the table names for a command is its spec's (or a rule written with a parenthesis): no orphan either way."""
    import dataclasses

    from neuronmoe.cli import commands

    by_name = {v.name: v for v in VARS}
    seen = set()
    for name, cmd in commands().items():
        if not dataclasses.is_dataclass(cmd.settings):
            continue
        for field_name, meta, flag in cmd.settings.env_fields():
            v = by_name[meta.env]
            assert v.reads[name].startswith(flag or f"--set {field_name}"), (meta.env, name, v.reads[name])
            for old in meta.env_aliases:
                assert lookup(meta.env, {old: "x"}, name) == ("x", old), (meta.env, old, name)
            seen.add((meta.env, name))
        if cmd.settings.CONFIG_ENV:
            seen.add((cmd.settings.CONFIG_ENV, name))
    for v in VARS:
        for c, flag in v.reads.items():
            assert (v.name, c) in seen or "(" in flag or c.startswith("scripts/") or c not in commands(), (v.name, c, flag)
    assert by_name["PEFT_MODEL_PATH"].reads == {"evaluate": "--adapter", "export": "--adapter"}
    assert by_name["OLD_LANGS"].reads["train"] == "--replay-languages (stage 2)"  # a note after the spec's flag


def test_a_row_that_contradicts_a_spec_or_an_unlisted_variable_is_refused():
    import pytest

    from neuronmoe.envvars import Var, _build

    with pytest.raises(AssertionError, match="without a row"):
        _build([v for v in envvars._ROWS if v.name != "LEARNING_RATE"])
    bad = [Var(v.name, {**v.reads, "train": "--lr"}, v.default, v.help, v.aliases, v.everywhere) if v.name == "LEARNING_RATE"
           else v for v in envvars._ROWS]
    with pytest.raises(AssertionError, match="reads it as --learning-rate"):
        _build(bad)
    bad = [Var(v.name, {**v.reads, "evaluate": "--lr"}, v.default, v.help, v.aliases, v.everywhere) if v.name == "LEARNING_RATE"
           else v for v in envvars._ROWS]
    with pytest.raises(AssertionError, match="its settings spec does not"):
        _build(bad)


def test_readme_lists_every_variable():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- envvars:start -->", "<!-- envvars:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table(), "README table out of date: python -m neuronmoe.envvars prints it"
