"""The paper plan as stages of the pipeline's runner (``neuronmoe reproduce-paper --run``).

:func:`paper_stages` turns the paper plan's commands (the very list ``--print-commands`` prints) into
:class:`~neuronmoe.pipeline.plan.Stage` objects: a name, the arguments, the file that marks the stage complete
(:meth:`neuronmoe.layout.Layout.marker`) and the stages whose outputs it reads. :func:`neuronmoe.pipeline.run.run_stages`
then runs them as it runs the miniature pipeline: a finished stage whose inputs did not change is skipped, a
changed input reruns what reads it, a killed training run resumes from its checkpoint, a failed stage is one line.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Sequence

from neuronmoe.layout import Layout
from neuronmoe.pipeline.plan import Stage

#: flags the runner decides itself (it appends ``--resume`` or ``--overwrite`` to training and evaluation runs)
RUNNER_FLAGS = ("--resume", "--overwrite")


def _value(argv: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), or None."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def split_launch(cmd: Sequence[str]) -> tuple[list[str] | None, list[str]]:
    """``(launcher, arguments after neuronmoe)``: ``torchrun ... -m neuronmoe train ...`` keeps its launcher; a
    plain ``neuronmoe ...`` command runs as ``python -m neuronmoe`` (launcher None)."""
    cmd = list(cmd)
    if cmd and cmd[0] == "neuronmoe":
        return None, cmd[1:]
    if "neuronmoe" in cmd:
        i = cmd.index("neuronmoe")
        return cmd[: i + 1], cmd[i + 1:]
    raise ValueError(f"not a neuronmoe command: {shlex.join(cmd)}")


def _describe(argv: list[str], lay: Layout) -> tuple[str, Path, str]:
    """``(stage name, completion marker, kind)`` of one command of the plan."""
    sub = argv[0]
    if sub == "prepare-data":
        return "data", lay.marker("data"), ""
    if sub in ("neurons", "similarity", "figures"):
        return sub, lay.marker(sub), ""
    if sub == "analyze-experts":
        return f"analyze-experts-{_value(argv, '--run')}", lay.marker("analysis"), ""
    if sub == "allocate":
        name = str(_value(argv, "--name"))
        return f"allocate-{name}", lay.marker("allocation", name), ""
    if sub == "allocation-gate":
        return "allocation-gate", lay.allocation_gate(), ""
    if sub == "train":
        run = str(_value(argv, "--run-name"))
        return f"train-{run}", lay.marker("train", run), "train"
    if sub == "evaluate":
        run = str(_value(argv, "--run-name"))
        return f"eval-{run}", lay.marker("eval", run), "eval"
    if sub == "report":
        return "report", lay.eval / "table.md", ""
    if sub == "reproduce-paper" and "--report" in argv:  # a named experiment's report.md
        return "experiment-report", lay.report, ""
    raise ValueError(f"the paper plan has a command the runner does not know: neuronmoe {shlex.join(argv)}")


def _deps(argv: list[str], earlier: list[Stage], writers: dict[str, str]) -> list[str]:
    """The earlier stages whose outputs this command reads (``writers``: allocation name -> the stage writing it)."""
    sub, names = argv[0], [s.name for s in earlier]
    have = set(names)
    if sub == "prepare-data":
        return []
    if sub in ("neurons", "similarity"):
        return [n for n in ("data",) if n in have]
    if sub == "allocate":
        return [n for n in ("neurons", "similarity") if n in have]
    if sub == "allocation-gate":
        return [n for n in names if n.startswith("allocate-") or n == "similarity"]
    if sub in ("train", "evaluate", "analyze-experts"):
        return _run_deps(argv, names, writers)
    return names  # figures and report read everything before them


def _run_deps(argv: list[str], names: list[str], writers: dict[str, str]) -> list[str]:
    """A training run reads the data, the allocation gate's decision (or its allocation), and for stage 2 the
    stage-1 adapter; an evaluation or expert analysis reads the data and the run it scores."""
    have = set(names)
    out = ["data"] if "data" in have else []
    sub = argv[0]
    if sub == "train":
        gate = "allocation-gate" if "allocation-gate" in have else None
        out += [n for n in (gate, writers.get(str(_value(argv, "--allocation")))) if n and n in have]
    adapter = _value(argv, "--init-adapter") or _value(argv, "--adapter")
    run = _value(argv, "--run") if sub == "analyze-experts" else None
    if adapter:
        run = Path(adapter).parent.name if Path(adapter).name == "adapter" else Path(adapter).name
    if run and f"train-{run}" in have:
        out.append(f"train-{run}")
    return list(dict.fromkeys(out))


def plan_output_dir(commands: Sequence[str | Sequence[str]]) -> str:
    """The output folder of a plan: its first command's ``--output-dir``."""
    first = commands[0] if commands else ""
    argv = split_launch(shlex.split(first) if isinstance(first, str) else list(first))[1]
    out = _value(argv, "--output-dir")
    if out is None:
        raise ValueError("the paper plan's first command has no --output-dir")
    return out


def paper_stages(commands: Sequence[str | Sequence[str]], output_dir: str | Path) -> list[Stage]:
    """The stages of a paper plan's commands (strings as ``--print-commands`` prints them, or argv lists).

    Markers are relative to ``output_dir``; names are unique (a second command of the same name is an error:
    two stages must never share a marker)."""
    lay = Layout(output_dir)
    stages: list[Stage] = []
    writers: dict[str, str] = {}
    for c in commands:
        launch, argv = split_launch(shlex.split(c) if isinstance(c, str) else list(c))
        argv = [a for a in argv if a not in RUNNER_FLAGS]
        name, marker, kind = _describe(argv, lay)
        if any(s.name == name for s in stages):
            raise ValueError(f"the paper plan has two stages named {name!r}; each stage needs its own output")
        stages.append(Stage(name, argv, lay.relative(marker), _deps(argv, stages, writers), kind=kind, launch=launch))
        if argv[0] in ("allocate", "similarity"):  # both write allocation/<--name>.json
            writers[_value(argv, "--name") or argv[0]] = name
    return stages
