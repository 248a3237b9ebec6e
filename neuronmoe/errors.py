"""The errors a user can cause and fix, in one hierarchy.

Every check in the package raises a subclass of :class:`UserError`; ``neuronmoe <command>`` prints those as
one line (``neuronmoe <command>: error: ...``, exit status 2), and likewise the operating system's own
failures (a missing file, a full disk, a folder without permission: :class:`OSError` with a file name).
Anything else is a bug: it keeps its traceback, followed by a line asking for a bug report.

The classes also derive from the built-in exception a caller would expect (``ValueError`` for a bad value,
``FileNotFoundError`` for a missing input, ...), so ``except ValueError`` around a library call keeps working;
but a plain ``ValueError`` or ``KeyError`` raised by a programming error is *not* a user error.

Message style: ``<what>: <problem> (<details>); <what to do>``, one line, naming the flag, field or file.
This module imports nothing of the package: every layer may use it.
"""
from __future__ import annotations

#: where a bug is reported (printed under an unexpected traceback)
BUG_REPORT = "this is a bug in neuronmoe, not in your input: please report it with the traceback above"


class UserError(Exception):
    """A failure the user caused and can fix: printed as one line, exit status 2."""


class ConfigError(UserError, ValueError):
    """A bad setting: a flag, an environment variable, a YAML field or a ``--set`` value."""


class InputError(UserError, ValueError):
    """A bad input file or folder: wrong shape, changed since its stage wrote it, made for another model."""


class MissingInputError(UserError, FileNotFoundError):
    """An input a stage needs does not exist (an earlier stage has not run, a wrong path)."""


class StateError(UserError, RuntimeError):
    """The outputs are in a state the command cannot continue from (a folder in use, a failed stage)."""


class NetworkError(UserError, RuntimeError):
    """A hub or registry that must be reached cannot be (offline, gated, missing)."""


def is_user_error(e: BaseException) -> bool:
    """True for the failures printed as one line: :class:`UserError`, and operating-system errors (a full disk,
    permission denied, a missing file or folder)."""
    return isinstance(e, (UserError, OSError))


def error_line(e: BaseException) -> str:
    """The one-line message of a user error; an ``OSError`` raised by the system (``open``, ``mkdir``) as
    ``<file>: <reason>``. Multi-line messages are folded into one line."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        text = f"{e.filename}: {e.strerror}" + (f" -> {e.filename2}" if e.filename2 else "")
    else:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__
