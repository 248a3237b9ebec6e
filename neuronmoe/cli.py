"""``neuronmoe`` command line: one subcommand per stage.

Each stage module exposes ``register(subparsers)``, which adds its subcommand(s) with
``set_defaults(func=run)``; heavy imports happen inside ``run`` so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (module, what it adds). Order = order in --help = pipeline order.
STAGE_MODULES = [
    "neuronmoe.models.cli",  # model fetch / info
    "neuronmoe.data.cli",  # prepare-data
    "neuronmoe.neuron_analysis.cli",  # neurons
    "neuronmoe.similarity.cli",  # similarity (LayerMoE baseline)
    "neuronmoe.allocation.cli",  # allocate
    "neuronmoe.training.cli",  # train
    "neuronmoe.evaluation.cli",  # evaluate, report
    "neuronmoe.analysis.cli",  # analyze-experts, figures
    "neuronmoe.interop.cli",  # lm-eval (lm-eval's own CLI, method registered), export (standalone HF folder)
    "neuronmoe.pipeline",  # reproduce-paper (dry run) and pipeline helpers
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from neuronmoe import __version__

    parser = argparse.ArgumentParser(
        prog="neuronmoe",
        description="NeuronMoE: neuron-guided MoE expert allocation for multilingual LLM extension.",
    )
    parser.add_argument("--version", action="version", version=f"neuronmoe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in STAGE_MODULES:
        importlib.import_module(modname).register(sub)
    return parser


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
    except (CLIError, ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"neuronmoe {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


def print_args(args: argparse.Namespace) -> int:
    """``NEURONMOE_PRINT_ARGS=1``: the command's resolved arguments (flags, environment, defaults) as JSON, and
    what the command adds to them (``args.describe``, e.g. train's resolved configuration); runs nothing."""
    import json

    out = {k: v for k, v in vars(args).items() if not callable(v)}
    describe = getattr(args, "describe", None)
    if describe is not None:
        out["resolved"] = describe(args)
    print(json.dumps(out, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
