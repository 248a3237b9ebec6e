"""The variable table: one meaning per name, old spellings resolved per command, the README table."""
from __future__ import annotations

import re
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


def test_every_cli_env_default_is_in_the_table():
    """Each env("NAME") of a CLI names a variable of the table (no unlisted spelling)."""
    used = set()
    for f in (ROOT / "neuronmoe").rglob("*.py"):
        used |= set(re.findall(r'\benv\("([A-Z0-9_]+)"', f.read_text(encoding="utf-8")))
    from neuronmoe.training.settings import ENV_KEYS

    used |= {var for var, _ in ENV_KEYS.values()}
    assert used and used <= {v.name for v in VARS}, sorted(used - {v.name for v in VARS})


def test_readme_lists_every_variable():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- envvars:start -->", "<!-- envvars:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table(), "README table out of date: python -m neuronmoe.envvars prints it"
