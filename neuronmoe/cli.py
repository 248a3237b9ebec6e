"""``neuronmoe`` command line: one subcommand per stage.

A stage declares its subcommand(s) as :class:`Command` objects in its light ``settings`` module (``COMMANDS``):
the settings dataclass (:mod:`neuronmoe.settings`) gives every flag, and ``run`` names the stage function that
takes the resolved settings (imported on use, so ``--help`` stays fast). Errors: :mod:`neuronmoe.errors` (user
errors and the operating system's are one line; anything else, a plain ``ValueError`` or ``KeyError`` included, is
a bug and keeps its traceback).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from neuronmoe.errors import BUG_REPORT, UserError, error_line, is_user_error
from neuronmoe.settings import Command  # noqa: F401  (re-exported: the stages' subcommands)

# (module, what it adds). Order = order in --help = pipeline order.
STAGE_MODULES = [
    "neuronmoe.models.settings",  # model fetch / info / list / random
    "neuronmoe.data.settings",  # prepare-data
    "neuronmoe.neuron_analysis.settings",  # neurons
    "neuronmoe.similarity.settings",  # similarity (LayerMoE baseline)
    "neuronmoe.allocation.settings",  # allocate
    "neuronmoe.pipeline.gate_settings",  # allocation-gate (paper run: computed allocations vs the paper's)
    "neuronmoe.training.settings",  # train
    "neuronmoe.evaluation.settings",  # evaluate, report
    "neuronmoe.analysis.settings",  # analyze-experts, figures
    "neuronmoe.interop.settings",  # lm-eval (lm-eval's own CLI, method registered), export (standalone HF folder)
    "neuronmoe.pipeline.settings",  # pipeline (the miniature reproduction), reproduce-paper (the paper-scale plan)
]


#: a user-facing error: printed as one line, exit status 2 (the name older modules use)
CLIError = UserError


def build_parser() -> argparse.ArgumentParser:
    from neuronmoe import __version__

    parser = argparse.ArgumentParser(
        prog="neuronmoe",
        description="NeuronMoE: neuron-guided MoE expert allocation for multilingual LLM extension.",
    )
    parser.add_argument("--version", action="version", version=f"neuronmoe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in commands().values():
        cmd.register(sub)
    return parser


def commands() -> dict[str, Command]:
    """Every subcommand declared as a :class:`Command`, by name."""
    out: dict[str, Command] = {}
    for modname in STAGE_MODULES:
        for cmd in getattr(importlib.import_module(modname), "COMMANDS", []):
            out[cmd.name] = cmd
    return out


def settings_of(command: str) -> type:
    """The settings class of subcommand ``command`` (``train`` -> ``TrainSettings``)."""
    try:
        return commands()[command].settings
    except KeyError:
        raise LookupError(f"no subcommand {command!r} with a settings class") from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[1:] if argv[:1] in (["-v"], ["--verbose"]) else argv
    if rest[:1] == ["lm-eval"]:  # every argument after it belongs to lm-eval's own parser
        from neuronmoe.interop.lm_eval_cli import run as run_lm_eval

        return run_lm_eval(rest[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from neuronmoe.envvars import print_args_requested, report_at_start

    if getattr(args, "report_env", True):
        report_at_start(args.command)
    try:
        if print_args_requested():
            return print_args(args)
        rc = args.func(args)
    except Exception as e:
        if not expected(e):
            print(f"neuronmoe {args.command}: {BUG_REPORT}", file=sys.stderr)
            raise
        if args.verbose:
            raise
        print(f"neuronmoe {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)


#: what the CLI prints as one line: user errors (:mod:`neuronmoe.errors`) and the operating system's (a full disk, a
#: missing file). A plain ``ValueError`` or ``KeyError`` is a bug: it keeps its traceback.
EXPECTED_ERRORS = (UserError, OSError)


def expected(e: BaseException) -> bool:
    """True for a failure the user can fix (printed as one line); False for a bug (traceback kept)."""
    return is_user_error(e)


def print_args(args: argparse.Namespace) -> int:
    """``NEURONMOE_PRINT_ARGS=1``: the command's resolved settings (flags, environment, YAML, defaults) as JSON
    (with ``settings_sources``: where each came from), or for an older command its arguments and what it adds to
    them (``args.describe``); runs nothing."""
    import json

    describe = getattr(args, "describe", None)
    if isinstance(getattr(describe, "__self__", None), Command):
        d = describe(args)
        out = {**d["settings"], "settings_sources": d["sources"]}
    else:
        out = {k: v for k, v in vars(args).items() if not callable(v)}
        if describe is not None:
            out["resolved"] = describe(args)
    print(json.dumps(out, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
