"""One line on stderr, never a traceback, for any error a command raises.

:class:`ErrorHandlingGroup` is the Typer group class of the ``interp`` app and of its sub-apps. An
exception that leaves a command is printed by :func:`describe` as one line, and the process exits with:

* 2 for the workbench's own errors (:class:`~interp.errors.InterpError`): ``error: <message>``;
* 2 for an :class:`OSError` (a missing or read-only path): ``error: <message>: <path>``;
* 1 for anything else, which is a bug: ``error: unexpected <Type>: <message> (run with --debug ...)``.

Typer's own exits (usage errors, ``--help``, ``typer.Exit``, ``typer.Abort``, Ctrl-C's exit 130)
pass through as Typer prints them. With ``--debug`` (:data:`interp.cli_options.DebugOption`, read from
``ctx.meta[DEBUG_KEY]``) the exception is re-raised, so Python prints the full traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from interp.errors import InterpError

DEBUG_KEY = "interp.debug"
"""The ``typer.Context.meta`` key (shared by every context of one invocation) that ``--debug`` sets."""

EXIT_ERROR = 2
EXIT_BUG = 1

_TYPER_EXITS = (TyperException, typer.Exit, typer.Abort)


def _os_message(error: OSError) -> str:
    """``strerror: path`` (and ``-> other path`` for a rename), or the error's text if it names no path."""
    text = str(error)
    if error.filename is None:
        return text
    reason = error.strerror or text
    paths = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
    return f"{reason}: {paths}"


def describe(error: Exception) -> tuple[str, int]:
    """The one line to print for ``error`` and the exit status to leave with."""
    if isinstance(error, InterpError):
        return f"error: {error}", EXIT_ERROR
    if isinstance(error, OSError):
        return f"error: {_os_message(error)}", EXIT_ERROR
    message = " ".join(str(error).split())
    detail = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return f"error: unexpected {detail} (run with --debug for the traceback; please report)", EXIT_BUG


class ErrorHandlingGroup(TyperGroup):
    """A Typer group whose commands' exceptions end the process with one line (see the module)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _TYPER_EXITS:
            raise
        except Exception as error:
            if ctx.meta.get(DEBUG_KEY):
                raise
            line, code = describe(error)
            typer.echo(line, err=True)
            raise typer.Exit(code) from error
