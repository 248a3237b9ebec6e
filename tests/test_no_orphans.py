"""No orphan in either direction (issue 27): every flag of every subcommand, every variable of every script and
every flag the documentation gives a command come from the stages' settings specs, and every spec's flag and
variable reaches a parser, a script or the variable table."""
from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from neuronmoe.cli import build_parser, commands

ROOT = Path(__file__).resolve().parents[1]
#: flags every subcommand has from the framework (neuronmoe.settings.Settings.add_arguments) or from torchrun
FRAMEWORK = {"-h", "--help", "--config", "--set", "--local_rank", "--local-rank"}
#: variables a script reads that configure the shell or the launcher, not a stage
SHELL_VARS = {"BASH_SOURCE", "HOME", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "MASTER_ADDR", "MASTER_PORT", "NNODES",
              "NODE_RANK", "PYTHON", "TOKENIZERS_PARALLELISM", "VIRTUAL_ENV"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _spec_flags(settings: type) -> dict[str, str]:
    """flag -> field name, for every flag and alias the settings class declares."""
    out = {}
    for f, m, _ in settings.fields():
        flag = settings.flag_of(f, m)
        for x in ([flag] if flag else []) + list(m.flag_aliases):
            out[x] = f.name
    return out


#: subcommands with a settings dataclass (``lm-eval`` hands every argument to lm-eval's own parser)
STAGE_COMMANDS = sorted(n for n, c in commands().items() if dataclasses.is_dataclass(c.settings))


@pytest.mark.parametrize("name", STAGE_COMMANDS)
def test_every_flag_of_a_subcommand_comes_from_its_settings(name):
    cmd, parser = commands()[name], _subparsers()[name]
    field_names = {f.name for f, _, _ in cmd.settings.fields()}
    spec = _spec_flags(cmd.settings)
    orphans = [opt for a in parser._actions for opt in a.option_strings
               if opt not in spec and opt not in FRAMEWORK and a.dest not in field_names]
    assert not orphans, f"`neuronmoe {name}`: flags without a settings field: {orphans}"
    missing = [flag for flag in spec if flag not in parser._option_string_actions]
    assert not missing, f"`neuronmoe {name}`: settings flags the parser lacks: {missing}"


def test_every_variable_of_a_spec_is_in_the_table_and_every_table_variable_is_read():
    from neuronmoe.envvars import VARS

    table = {v.name for v in VARS} | {a.name for v in VARS for a in v.aliases}
    spec_vars = {x for n in STAGE_COMMANDS for _, m, _ in commands()[n].settings.fields() for x in (m.env, *m.env_aliases) if x}
    assert spec_vars <= table, sorted(spec_vars - table)
    script_vars = _script_variables()
    unread = sorted({v.name for v in VARS} - spec_vars - script_vars - _python_reads())
    assert not unread, f"variables in the table that nothing reads: {unread}"


def _script_variables() -> set[str]:
    text = "".join(p.read_text() for p in (ROOT / "scripts").glob("*.sh"))
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))


def _python_reads() -> set[str]:
    """Variables the package reads directly (os.environ), outside the settings specs."""
    text = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "neuronmoe").rglob("*.py"))
    direct = set(re.findall(r"""(?:environ(?:\.get)?\(?\[?|\)\.get\()["']([A-Z][A-Z0-9_]*)["']""", text))
    return direct | {c.settings.CONFIG_ENV for c in commands().values() if getattr(c.settings, "CONFIG_ENV", None)}


def test_every_variable_a_script_reads_is_ours_or_the_shells():
    from neuronmoe.envvars import VARS

    ours = {v.name for v in VARS} | {a.name for v in VARS for a in v.aliases}
    unknown = sorted(v for v in _script_variables() - ours - SHELL_VARS if not v.startswith("NEURONMOE_"))
    assert not unknown, f"scripts read variables that are neither in the table nor the shell's: {unknown}"


#: a command line in a code block: ``[VAR=x ...] [python -m | torchrun ... -m | accelerate launch ... -m] neuronmoe SUB``
COMMAND_LINE = re.compile(r"^\s*(?:\$ )?(?:[A-Z_][A-Z0-9_]*=\S* )*(?:python -m |(?:torchrun|accelerate launch)\b.*?-m )?"
                          r"neuronmoe ([a-z][\w-]*)(.*)")


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file, subcommand, argv) of every `neuronmoe <sub> ...` line in README.md and docs/*.md code blocks."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        in_code = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_code = not in_code
                continue
            m = COMMAND_LINE.match(line) if in_code else None
            if not m or m.group(1).startswith(("-", "$")) or m.group(1) == "lm-eval":
                continue
            try:
                argv = shlex.split(m.group(2).split(" #", 1)[0])
            except ValueError:
                continue
            out.append((path.name, m.group(1), argv))
    return out


def test_every_flag_the_documentation_gives_a_command_exists():
    subs = _subparsers()
    bad = []
    for doc, sub, argv in _documented_commands():
        if sub not in subs:
            bad.append(f"{doc}: no subcommand {sub!r}")
            continue
        known = subs[sub]._option_string_actions
        bad += [f"{doc}: neuronmoe {sub} {a}" for a in argv if a.startswith("--") and a.split("=")[0] not in known]
    assert len(_documented_commands()) > 20
    assert not bad, "documented flags that the command does not have:\n" + "\n".join(bad)
