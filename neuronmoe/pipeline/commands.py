"""Stage commands rendered from the stages' own settings specs.

The pipeline and the paper plan never write a flag by hand: :func:`argv` resolves the subcommand's settings class
(:func:`neuronmoe.cli.settings_of`) with the given fields, as the stage itself will (types, choices, ranges and
cross-field rules checked here, before anything runs), and renders them with :meth:`Settings.to_argv`, in the order
given. The environment is left out: a stage reads its own variables when it runs.
"""
from __future__ import annotations

from typing import Any


def argv(command: str, **fields: Any) -> list[str]:
    """``[command, *flags]`` for the settings ``fields`` (field names of the command's settings class; a value of
    None is left out: the stage's default)."""
    from neuronmoe.cli import settings_of

    given = {k: v for k, v in fields.items() if v is not None}
    s = settings_of(command).resolve(environ={}, **given)
    return [command, *s.to_argv(list(given))]
